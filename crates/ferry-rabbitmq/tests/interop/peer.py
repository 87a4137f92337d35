"""An independent CloudEvents peer for ferry's interop test (driven by tests/interop.rs).

    peer.py read  --url URL --exchange X --bind PATTERN [--timeout S]
        Binds a temporary queue, prints {"ready": true} once bound, reads one message, parses it
        with cloudevents.core.bindings.rabbitmq.from_binary and prints what it got as JSON.

    peer.py write --url URL --exchange X --type T
        Publishes two events of type T (confirmed, mandatory): one made with
        cloudevents.core.bindings.rabbitmq.to_binary, one with
        cloudevents.core.bindings.amqp.to_binary; prints what it sent as JSON.

Standard output carries only the JSON; errors go to standard error with exit status 1.
"""

import argparse
import json
import sys
import time
import uuid
from datetime import datetime, timezone

import pika
from cloudevents.core.bindings import amqp, rabbitmq
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent


def plain(value):
    """Attribute values as JSON: datetimes in RFC 3339 with microseconds, UTC."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


def read(args):
    connection = pika.BlockingConnection(pika.URLParameters(args.url))
    channel = connection.channel()
    declared = channel.queue_declare(queue="", exclusive=True, auto_delete=True)
    queue = declared.method.queue
    channel.queue_bind(queue=queue, exchange=args.exchange, routing_key=args.bind)
    print(json.dumps({"ready": True, "queue": queue}), flush=True)
    deadline = time.monotonic() + args.timeout
    while True:
        method, properties, body = channel.basic_get(queue=queue, auto_ack=True)
        if method is not None:
            break
        if time.monotonic() > deadline:
            raise SystemExit("no message arrived in time")
        time.sleep(0.05)
    headers = {}
    for name, value in (properties.headers or {}).items():
        headers[name] = value.decode("utf-8") if isinstance(value, bytes) else value
    message = rabbitmq.RabbitMQMessage(
        headers=headers, content_type=properties.content_type, body=body
    )
    event = rabbitmq.from_binary(message, JSONFormat(), CloudEvent)
    out = {
        "attributes": {k: plain(v) for k, v in event.get_attributes().items()},
        "data": event.get_data(),
        "routing_key": method.routing_key,
        "properties": {
            "content_type": properties.content_type,
            "message_id": properties.message_id,
            "type": properties.type,
            "app_id": properties.app_id,
            "timestamp": properties.timestamp,
            "delivery_mode": properties.delivery_mode,
            "correlation_id": properties.correlation_id,
        },
    }
    print(json.dumps(out), flush=True)
    connection.close()


def write(args):
    connection = pika.BlockingConnection(pika.URLParameters(args.url))
    channel = connection.channel()
    channel.confirm_delivery()
    sent = []

    # The RabbitMQ binding: ce- headers, strings.
    event = CloudEvent(
        attributes={
            "type": args.type,
            "source": "/python/rabbitmq-binding",
            "id": f"py-rabbitmq-{uuid.uuid4()}",
            "time": datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc),
            "datacontenttype": "application/json",
            "subject": "order/py-1",
            "correlationid": "corr-py-1",
            "causationid": "cause-py-1",
            "eventversion": "1",
        },
        data={"orderId": "py-1", "totalAmount": 12.5},
    )
    message = rabbitmq.to_binary(event, JSONFormat())
    channel.basic_publish(
        exchange=args.exchange,
        routing_key=args.type,
        body=message.body,
        properties=pika.BasicProperties(
            headers=message.headers, content_type=message.content_type, delivery_mode=2
        ),
        mandatory=True,
    )
    sent.append(
        {
            "binding": "rabbitmq",
            "attributes": {k: plain(v) for k, v in event.get_attributes().items()},
            "data": event.get_data(),
        }
    )

    # The AMQP binding: cloudEvents_ application properties, the time as an integer of
    # milliseconds since the epoch.
    event = CloudEvent(
        attributes={
            "type": args.type,
            "source": "/python/amqp-binding",
            "id": f"py-amqp-{uuid.uuid4()}",
            "time": datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=timezone.utc),
            "datacontenttype": "application/json",
            "subject": "order/py-2",
            "correlationid": "corr-py-2",
            "causationid": "cause-py-2",
        },
        data={"orderId": "py-2", "totalAmount": 7.25},
    )
    message = amqp.to_binary(event, JSONFormat())
    channel.basic_publish(
        exchange=args.exchange,
        routing_key=args.type,
        body=message.application_data,
        properties=pika.BasicProperties(
            headers=message.application_properties,
            content_type=message.properties.get("content-type"),
            delivery_mode=2,
        ),
        mandatory=True,
    )
    sent.append(
        {
            "binding": "amqp",
            "attributes": {k: plain(v) for k, v in event.get_attributes().items()},
            "data": event.get_data(),
            "headers": {k: v for k, v in message.application_properties.items()},
        }
    )
    print(json.dumps(sent), flush=True)
    connection.close()


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("read")
    r.add_argument("--url", required=True)
    r.add_argument("--exchange", required=True)
    r.add_argument("--bind", required=True)
    r.add_argument("--timeout", type=float, default=20.0)
    w = sub.add_parser("write")
    w.add_argument("--url", required=True)
    w.add_argument("--exchange", required=True)
    w.add_argument("--type", required=True)
    args = parser.parse_args()
    try:
        if args.command == "read":
            read(args)
        else:
            write(args)
    except SystemExit:
        raise
    except Exception as e:  # one line on stderr, exit 1
        print(f"peer.py {args.command}: {type(e).__name__}: {e}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
