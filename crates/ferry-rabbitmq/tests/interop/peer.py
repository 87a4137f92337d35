"""An independent CloudEvents peer for ferry's interop test (driven by tests/interop.rs).

    peer.py read  --url URL --exchange X --bind PATTERN [--timeout S]
        Binds a temporary queue, prints {"ready": true} once bound, reads one message, parses it
        with cloudevents.core.bindings.rabbitmq.from_binary and prints what it got as JSON.

    peer.py write --url URL --exchange X --type T
        Publishes two events of type T (confirmed, mandatory): one made with
        cloudevents.core.bindings.rabbitmq.to_binary, one with
        cloudevents.core.bindings.amqp.to_binary; prints what it sent as JSON.

    peer.py poison --url URL --exchange X --type T
        Publishes a poison corpus with pika's own header encoding (ints, decimals, booleans,
        dicts, lists, bytes, None, datetimes), each message followed by a valid event of type
        T; prints the cases as JSON: [{"name", "expect"}], where "expect" is the fault kind
        the message must be dead-lettered with, or "handled:<orderId>".

Standard output carries only the JSON; errors go to standard error with exit status 1.
"""

import argparse
import json
import sys
import time
import uuid
from datetime import datetime, timezone
from decimal import Decimal

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


def poison(args):
    connection = pika.BlockingConnection(pika.URLParameters(args.url))
    channel = connection.channel()
    channel.confirm_delivery()

    def binary(order_id, body=None, **headers):
        base = {
            "ce-specversion": "1.0",
            "ce-id": order_id,
            "ce-type": args.type,
            "ce-source": "/python/poison",
            "ce-time": "2024-05-01T12:00:00Z",
        }
        for name, value in headers.items():
            name = "ce-" + name
            if value is DROP:
                base.pop(name, None)
            else:
                base[name] = value
        if body is None:
            body = json.dumps({"orderId": order_id, "totalAmount": 1.5}).encode()
        return base, "application/json", body

    def structured(event):
        return {}, "application/cloudevents+json", json.dumps(event).encode()

    event = {
        "specversion": "1.0",
        "id": "py-s",
        "type": args.type,
        "source": "/python/poison",
        "data": {"orderId": "py-a-3", "totalAmount": 1},
    }
    cases = [
        ("malformed-json", binary("py-1", b'{"orderId": "py-1", oops'), "decode"),
        ("truncated-body", binary("py-2", b'{"orderId": "py-2", "tot'), "decode"),
        ("invalid-utf8", binary("py-3", b'{"orderId": "\xff\xfe"}'), "decode"),
        ("empty-body", binary("py-4", b""), "decode"),
        ("huge-body", binary("py-5", b'{"pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'), "too-large"),
        ("ce-time-as-a-dict", binary("py-6", time={"seconds": 1}), "decode"),
        ("ce-time-as-a-bool", binary("py-7", time=True), "decode"),
        ("ce-time-as-a-decimal", binary("py-8", time=Decimal("1.5")), "decode"),
        ("ce-type-as-a-list", binary("py-9", type=[args.type]), "decode"),
        ("ce-id-as-bytes-not-utf8", binary("py-10", id=b"\xff\x00"), "decode"),
        ("ce-id-none", binary("py-11", id=None), "missing-id"),
        ("ce-id-missing", binary("py-12", id=DROP), "missing-id"),
        ("ce-specversion-missing", binary("py-13", specversion=DROP), "decode"),
        ("ce-specversion-0.3", binary("py-14", specversion="0.3"), "decode"),
        ("future-eventversion", binary("py-15", eventversion="2"), "unsupported-version"),
        ("future-eventversion-int", binary("py-16", eventversion=9), "unsupported-version"),
        ("unknown-type", binary("py-17", type="orders.order.shipped"), "unknown-type"),
        ("structured-specversion-0.3", structured({**event, "specversion": "0.3"}), "decode"),
        (
            "structured-specversion-missing",
            structured({k: v for k, v in event.items() if k != "specversion"}),
            "decode",
        ),
        ("structured-not-an-object", structured([event]), "decode"),
        # Odd but valid: integers stand for strings, datetimes are AMQP timestamps.
        ("ce-id-as-an-int", binary("py-a-1", id=424242), "handled:py-a-1"),
        (
            "ce-time-as-a-datetime",
            binary("py-a-2", time=datetime(2024, 5, 1, 12, tzinfo=timezone.utc)),
            "handled:py-a-2",
        ),
        ("structured-mode", structured(event), "handled:py-a-3"),
    ]
    out = []
    for i, (name, (headers, content_type, body), expect) in enumerate(cases):
        headers = dict(headers, **{"test-case": name})
        channel.basic_publish(
            exchange=args.exchange,
            routing_key=args.type,
            body=body,
            properties=pika.BasicProperties(
                headers=headers, content_type=content_type, delivery_mode=2
            ),
            mandatory=True,
        )
        valid_headers, _, valid_body = binary(f"py-valid-{i}")
        channel.basic_publish(
            exchange=args.exchange,
            routing_key=args.type,
            body=valid_body,
            properties=pika.BasicProperties(
                headers=dict(valid_headers, **{"test-case": "valid"}),
                content_type="application/json",
                delivery_mode=2,
            ),
            mandatory=True,
        )
        out.append({"name": name, "expect": expect})
    print(json.dumps(out), flush=True)
    connection.close()


DROP = object()


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
    p = sub.add_parser("poison")
    p.add_argument("--url", required=True)
    p.add_argument("--exchange", required=True)
    p.add_argument("--type", required=True)
    args = parser.parse_args()
    try:
        if args.command == "read":
            read(args)
        elif args.command == "write":
            write(args)
        else:
            poison(args)
    except SystemExit:
        raise
    except Exception as e:  # one line on stderr, exit 1
        print(f"peer.py {args.command}: {type(e).__name__}: {e}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
