//! Tracing, trace context propagation, metrics and the health check.
//!
//! - **Spans** ([below](self#spans)): ferry opens spans for creating, publishing, relaying,
//!   consuming and handling events, with the OpenTelemetry messaging attribute names
//!   (`messaging.system`, `messaging.destination.name`,
//!   `messaging.rabbitmq.destination.routing_key`, `messaging.message.id`,
//!   `messaging.message.conversation_id` (the correlation id), `messaging.operation.type`,
//!   `messaging.batch.message_count`, `otel.kind`, `otel.name`…). Every publish goes through
//!   one path (see [`crate::publisher`]) that opens its `ferry.publish` span and counts it;
//!   transports do not open publish spans of their own.
//! - **Trace context** (cargo feature `opentelemetry`): when an event is built for the outbox or
//!   a direct publish and a trace is active, its W3C `traceparent` is captured (from a short
//!   `create` span under the current span) and travels as the `ce-traceparent` extension; the
//!   consumer pipeline makes it the parent of the `process` span, so one trace runs from the
//!   request that created an order through every consumer it set off. This needs a
//!   `tracing-opentelemetry` layer in the application's subscriber. Without the feature,
//!   nothing is captured or restored, but a traceparent set by hand (or carried over by
//!   `caused_by`) still travels unchanged.
//! - **Metrics** ([`metric`]): counters, gauges and histograms through the `metrics` facade;
//!   [`describe_metrics`] describes them all; [`record_queue_depth`] and
//!   [`record_queue_consumers`] are for transports.
//! - **Health** ([`Health`], [`HealthSource`]).
//!
//! # Spans
//!
//! | span (`tracing` name) | `otel.name` | `otel.kind` | opened by |
//! |---|---|---|---|
//! | `ferry.create` | `create {routing key}` | producer | building an outgoing event, when a trace is active (the message's creation context) |
//! | `ferry.publish` | `publish {exchange}:{routing key}` | client | ferry's publish path, per publish call, whatever the entry point ([`Publisher`](crate::Publisher), [`PublisherExt`](crate::PublisherExt), the outbox relay): one message's ([`publish_span_for`]) or a batch's ([`publish_batch_span`]) |
//! | `ferry.relay.batch` | `relay` | internal | the outbox relay, per batch: its publish (a `ferry.publish` child) and its marks |
//! | `ferry.consume` | `process {exchange}:{routing key}:{queue}` | consumer | the consumer pipeline, per delivery; its parent is the message's creation context |
//! | `ferry.handle` | `handle {event type}` | internal | the consumer pipeline, per handler call (child of `ferry.consume`) |
//!
//! Destinations follow the RabbitMQ conventions: `{exchange}:{routing key}` for producers and
//! `{exchange}:{routing key}:{queue}` for consumers, empty parts left out, the queue left out
//! when it equals the routing key, and `amq.default` for the default exchange with no routing
//! key. Publish spans are `client` spans that link to the creation context carried in the
//! message, because ferry captures that context when the event is built (often long before an
//! outbox relay sends it); the `create` span is the producer end of the producer → consumer
//! relation. A batch publish (the relay's) is one span with `messaging.batch.message_count`
//! and a link to each message's creation context, as the messaging conventions describe batch
//! sends.

mod health;
pub mod metric;
mod propagation;
mod spans;

pub use health::{DEFAULT_MAX_RELAY_LAG, Health, HealthSource};
pub use metric::{
    describe_metrics, record_outbox_stats, record_queue_consumers, record_queue_depth,
};
pub use propagation::{
    TraceParent, current_traceparent, link_traceparent, set_parent_from_traceparent, traceparent_of,
};
pub use spans::{
    MESSAGING_SYSTEM, consume_destination, publish_batch_span, publish_destination, publish_span,
    publish_span_for, record_error,
};

pub(crate) use propagation::creation_traceparent;
pub(crate) use spans::{
    consume_span, handle_span, record_decision, record_envelope, relay_batch_span,
};
