//! The parts of the document that come from ferry's wire format (docs/wire-format.md): the
//! CloudEvents binary-mode headers of a message and the AMQP bindings.

use serde_json::{Value, json};

/// The AMQP bindings' version this document follows.
pub(crate) const AMQP_BINDING_VERSION: &str = "0.3.0";

/// The headers schema of event `name` at `version`: the CloudEvents attributes as `ce-`
/// headers, their values strings.
pub(crate) fn cloud_events_headers(name: &str, version: u32) -> Value {
    json!({
        "type": "object",
        "description": "CloudEvents 1.0 attributes in binary content mode (RabbitMQ binding): \
                        `ce-` headers with string values.",
        "properties": {
            "ce-specversion": { "type": "string", "const": "1.0" },
            "ce-id": { "type": "string", "minLength": 1, "description": "The event id (UUID v7 when ferry makes it)." },
            "ce-type": { "type": "string", "const": name },
            "ce-source": { "type": "string", "minLength": 1 },
            "ce-time": { "type": "string", "format": "date-time" },
            "ce-eventversion": { "type": "string", "const": version.to_string(), "description": "The schema version; \"1\" when absent." },
            "ce-correlationid": { "type": "string" },
            "ce-causationid": { "type": "string" },
            "ce-traceparent": { "type": "string" },
            "ce-subject": { "type": "string" }
        },
        "required": ["ce-specversion", "ce-id", "ce-type", "ce-source", "ce-time"]
    })
}

/// The AMQP message binding of event `name`: its `type` property.
pub(crate) fn message_binding(name: &str) -> Value {
    json!({ "amqp": { "messageType": name, "bindingVersion": AMQP_BINDING_VERSION } })
}

/// The channel binding of a routing key on the events exchange (a durable topic exchange).
pub(crate) fn routing_key_binding(exchange: &str) -> Value {
    json!({ "amqp": {
        "is": "routingKey",
        "exchange": { "name": exchange, "type": "topic", "durable": true, "autoDelete": false, "vhost": "/" },
        "bindingVersion": AMQP_BINDING_VERSION
    }})
}

/// The channel binding of a consumer's queue (durable).
pub(crate) fn queue_binding(queue: &str) -> Value {
    json!({ "amqp": {
        "is": "queue",
        "queue": { "name": queue, "durable": true, "exclusive": false, "autoDelete": false, "vhost": "/" },
        "bindingVersion": AMQP_BINDING_VERSION
    }})
}

/// The operation binding of a publish: persistent, mandatory (unroutable is an error).
pub(crate) fn send_binding() -> Value {
    json!({ "amqp": { "deliveryMode": 2, "mandatory": true, "bindingVersion": AMQP_BINDING_VERSION } })
}

/// The operation binding of a consumer: manual ack unless auto-ack.
pub(crate) fn receive_binding(ack: bool) -> Value {
    json!({ "amqp": { "ack": ack, "bindingVersion": AMQP_BINDING_VERSION } })
}
