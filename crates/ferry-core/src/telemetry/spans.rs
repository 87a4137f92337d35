//! The spans ferry opens, with the OpenTelemetry messaging attribute names (the table is in
//! the module docs of [`telemetry`](super)).

use tracing::{Span, field::Empty};

use crate::{Decision, Delivery, Envelope, OutgoingMessage, codec::attributes};

use super::propagation::{link_traceparent, traceparent_of};

/// `messaging.system`: ferry speaks RabbitMQ's model (exchanges, routing keys, queues), also
/// on the in-memory bus.
pub const MESSAGING_SYSTEM: &str = "rabbitmq";

/// `messaging.destination.name` of a publish: `{exchange}:{routing key}`, only the non-empty
/// one when the other is empty, `amq.default` when both are.
///
/// ```
/// use ferry_core::telemetry::publish_destination;
/// assert_eq!(publish_destination("ferry.events", "orders.order.created"), "ferry.events:orders.order.created");
/// assert_eq!(publish_destination("", "q.retry.1000"), "q.retry.1000");
/// assert_eq!(publish_destination("", ""), "amq.default");
/// ```
pub fn publish_destination(exchange: &str, routing_key: &str) -> String {
    match (exchange.is_empty(), routing_key.is_empty()) {
        (false, false) => format!("{exchange}:{routing_key}"),
        (false, true) => exchange.to_owned(),
        (true, false) => routing_key.to_owned(),
        (true, true) => "amq.default".to_owned(),
    }
}

/// `messaging.destination.name` of a consumer: `{exchange}:{routing key}:{queue}`, empty parts
/// left out, and the queue left out when it equals the routing key.
///
/// ```
/// use ferry_core::telemetry::consume_destination;
/// assert_eq!(
///     consume_destination("ferry.events", "orders.order.created", "inventory.order-created"),
///     "ferry.events:orders.order.created:inventory.order-created"
/// );
/// assert_eq!(consume_destination("", "q", "q"), "q");
/// ```
pub fn consume_destination(exchange: &str, routing_key: &str, queue: &str) -> String {
    let queue = if queue == routing_key { "" } else { queue };
    [exchange, routing_key, queue]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(":")
}

/// The span a transport opens around publishing one message (and waiting for its confirm).
///
/// `exchange` is the exchange the message goes to (`""` for the default exchange); a missing
/// correlation id is left out. Record a failure with [`record_error`]. Prefer
/// [`publish_span_for`] when you hold the [`OutgoingMessage`]: it also links the span to the
/// message's creation context.
///
/// ```
/// use tracing::Instrument;
/// # async fn send() {}
/// # async fn demo() {
/// let span = ferry_core::telemetry::publish_span("ferry.events", "orders.order.created", "0190-…", Some("c-1"));
/// send().instrument(span).await;
/// # }
/// ```
pub fn publish_span(
    exchange: &str,
    routing_key: &str,
    message_id: &str,
    correlation_id: Option<&str>,
) -> Span {
    let destination = publish_destination(exchange, routing_key);
    let span = tracing::info_span!(
        "ferry.publish",
        otel.name = %format_args!("publish {destination}"),
        otel.kind = "client",
        otel.status_code = Empty,
        otel.status_description = Empty,
        error.type = Empty,
        messaging.system = MESSAGING_SYSTEM,
        messaging.operation.type = "send",
        messaging.operation.name = "publish",
        messaging.destination.name = %destination,
        messaging.rabbitmq.destination.routing_key = routing_key,
        messaging.message.id = message_id,
        messaging.message.conversation_id = Empty,
        messaging.message.body.size = Empty,
    );
    if let Some(correlation_id) = correlation_id {
        span.record("messaging.message.conversation_id", correlation_id);
    }
    span
}

/// [`publish_span`] for a message: its routing key, id, correlation id and body size, and a
/// link to the creation context in its traceparent. `exchange` is where it goes:
/// `message.exchange`, or the publisher's configured exchange when that is `None`.
///
/// ```
/// use ferry_core::{OutgoingMessage, WireMessage, telemetry};
/// let message = OutgoingMessage::new("orders.order.created", WireMessage::default());
/// let exchange = message.exchange.as_deref().unwrap_or("ferry.events");
/// let span = telemetry::publish_span_for(exchange, &message);
/// ```
pub fn publish_span_for(exchange: &str, message: &OutgoingMessage) -> Span {
    let wire = &message.message;
    let correlation_id = wire.properties.correlation_id.as_deref().or_else(|| {
        wire.header_str(&format!(
            "{}{}",
            attributes::PREFIX,
            attributes::CORRELATIONID
        ))
    });
    let span = publish_span(exchange, &message.routing_key, message.id(), correlation_id);
    span.record("messaging.message.body.size", wire.body.len());
    link_traceparent(&span, traceparent_of(wire));
    span
}

/// The `ferry.publish` span of a batch of messages published at once (the outbox relay's):
/// `messaging.batch.message_count`, the destination when every message shares it (the
/// exchange alone when only that is shared), and a link to each message's creation context.
/// `exchange` is where messages that name none go.
///
/// ```
/// use ferry_core::{OutgoingMessage, WireMessage, telemetry};
/// let messages = vec![
///     OutgoingMessage::new("orders.order.created", WireMessage::default()),
///     OutgoingMessage::new("orders.order.cancelled", WireMessage::default()),
/// ];
/// let span = telemetry::publish_batch_span("ferry.events", &messages);
/// ```
pub fn publish_batch_span(exchange: &str, messages: &[OutgoingMessage]) -> Span {
    fn exchange_of<'a>(m: &'a OutgoingMessage, default: &'a str) -> &'a str {
        m.exchange.as_deref().unwrap_or(default)
    }
    let first = messages.first();
    let first_exchange = first.map_or(exchange, |m| exchange_of(m, exchange));
    let one_exchange = messages
        .iter()
        .all(|m| exchange_of(m, exchange) == first_exchange);
    let routing_key = first.map_or("", |m| m.routing_key.as_str());
    let one_routing_key = messages.iter().all(|m| m.routing_key == routing_key);
    let destination = match (one_exchange, one_routing_key) {
        (true, true) => Some(publish_destination(first_exchange, routing_key)),
        (true, false) if !first_exchange.is_empty() => Some(first_exchange.to_owned()),
        _ => None,
    };
    let span = tracing::info_span!(
        "ferry.publish",
        otel.name = %destination.as_deref().map_or_else(|| "publish".to_owned(), |d| format!("publish {d}")),
        otel.kind = "client",
        otel.status_code = Empty,
        otel.status_description = Empty,
        error.type = Empty,
        messaging.system = MESSAGING_SYSTEM,
        messaging.operation.type = "send",
        messaging.operation.name = "publish",
        messaging.destination.name = Empty,
        messaging.rabbitmq.destination.routing_key = Empty,
        messaging.batch.message_count = messages.len(),
    );
    if let Some(destination) = &destination {
        span.record("messaging.destination.name", destination.as_str());
    }
    if one_routing_key {
        span.record("messaging.rabbitmq.destination.routing_key", routing_key);
    }
    for message in messages {
        link_traceparent(&span, traceparent_of(&message.message));
    }
    span
}

/// Marks `span` (one of ferry's spans, or any span declaring `error.type`,
/// `otel.status_code` and `otel.status_description`) as failed: `error.type` is a short class
/// such as a fault kind (`handler`, `decode`) or a transport's error name.
pub fn record_error(span: &Span, error_type: &str, description: &str) {
    span.record("error.type", error_type);
    span.record("otel.status_code", "error");
    span.record("otel.status_description", description);
}

/// The `create` span: the creation context of a message being built.
#[cfg_attr(not(feature = "opentelemetry"), allow(dead_code))]
pub(crate) fn create_span(
    routing_key: &str,
    message_id: &str,
    correlation_id: Option<&str>,
) -> Span {
    let destination = publish_destination("", routing_key);
    let span = tracing::info_span!(
        "ferry.create",
        otel.name = %format_args!("create {destination}"),
        otel.kind = "producer",
        messaging.system = MESSAGING_SYSTEM,
        messaging.operation.type = "create",
        messaging.operation.name = "create",
        messaging.destination.name = %destination,
        messaging.rabbitmq.destination.routing_key = routing_key,
        messaging.message.id = message_id,
        messaging.message.conversation_id = Empty,
    );
    if let Some(correlation_id) = correlation_id {
        span.record("messaging.message.conversation_id", correlation_id);
    }
    span
}

/// The `process` span of one delivery; envelope fields are recorded once it is decoded.
pub(crate) fn consume_span(queue: &str, delivery: &Delivery, attempt: u32) -> Span {
    let routing_key = delivery.original_routing_key();
    let destination = consume_destination(delivery.original_exchange(), routing_key, queue);
    let span = tracing::info_span!(
        "ferry.consume",
        otel.name = %format_args!("process {destination}"),
        otel.kind = "consumer",
        otel.status_code = Empty,
        otel.status_description = Empty,
        error.type = Empty,
        messaging.system = MESSAGING_SYSTEM,
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = %destination,
        messaging.rabbitmq.destination.routing_key = routing_key,
        messaging.message.id = Empty,
        messaging.message.conversation_id = Empty,
        messaging.message.body.size = delivery.message.body.len(),
        ferry.queue = queue,
        ferry.event_type = Empty,
        ferry.attempt = attempt,
        ferry.redelivered = delivery.redelivered,
        ferry.outcome = Empty,
    );
    if let Some(id) = delivery.message.properties.message_id.as_deref() {
        span.record("messaging.message.id", id);
    }
    span
}

/// Records what decoding learnt on the `process` span.
pub(crate) fn record_envelope(span: &Span, envelope: &Envelope) {
    span.record("messaging.message.id", envelope.id.as_str());
    span.record("ferry.event_type", envelope.event_type.as_str());
    if let Some(correlation_id) = envelope.correlation_id.as_deref() {
        span.record("messaging.message.conversation_id", correlation_id);
    }
}

/// Records the decision on the `process` span; a retry or a dead letter marks it failed.
pub(crate) fn record_decision(span: &Span, decision: &Decision) {
    span.record("ferry.outcome", decision.outcome());
    match decision {
        Decision::Retry { error, .. } => record_error(span, "transient", error),
        Decision::DeadLetter(fault) => record_error(span, fault.kind.as_str(), &fault.message),
        Decision::Ack | Decision::Duplicate => {}
    }
}

/// The span of one handler call, a child of the `process` span.
pub(crate) fn handle_span(event_type: &str, attempt: u32) -> Span {
    tracing::info_span!(
        "ferry.handle",
        otel.name = %format_args!("handle {event_type}"),
        otel.kind = "internal",
        otel.status_code = Empty,
        otel.status_description = Empty,
        error.type = Empty,
        ferry.event_type = event_type,
        ferry.attempt = attempt,
    )
}

/// The span of one relay batch: the publish (its `ferry.publish` span a child) and the
/// marks that follow it.
pub(crate) fn relay_batch_span(claimed: usize) -> Span {
    tracing::info_span!(
        "ferry.relay.batch",
        otel.name = "relay",
        otel.kind = "internal",
        otel.status_code = Empty,
        otel.status_description = Empty,
        error.type = Empty,
        ferry.claimed = claimed,
        ferry.published = Empty,
        ferry.failed = Empty,
        ferry.released = Empty,
    )
}
