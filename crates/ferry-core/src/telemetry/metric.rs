//! The metrics ferry records through the [`metrics`] facade, their names and labels.
//!
//! The application installs the exporter it wants (Prometheus, OpenTelemetry, StatsD…) and
//! calls [`describe_metrics`] once to give each metric its unit and help text.
//!
//! | name | kind | labels | recorded by |
//! |---|---|---|---|
//! | `ferry_published_total` | counter | | ferry's publish path, for every entry point (direct publishes, the outbox relay): messages the broker confirmed |
//! | `ferry_consumed_total` | counter | `queue`, `outcome` (`ack`, `duplicate`, `retry`, `dead_letter`) | the consumer pipeline, per delivery |
//! | `ferry_handler_duration_seconds` | histogram | `queue` | the consumer pipeline, per handler call |
//! | `ferry_retries_total` | counter | `queue` | the consumer pipeline, per delayed retry decided |
//! | `ferry_dead_lettered_total` | counter | `kind` (the fault kind), `queue` | the consumer pipeline, per dead letter decided |
//! | `ferry_outbox_pending` | gauge | | the outbox relay (sampled) or [`record_outbox_stats`] |
//! | `ferry_outbox_oldest_pending_age_seconds` | gauge | | the same |
//! | `ferry_relay_batch_duration_seconds` | histogram | | the outbox relay, per non-empty batch |
//! | `ferry_queue_messages_ready` | gauge | `queue` | transports, when they sample the queues their consumers read ([`record_queue_depth`]) |
//! | `ferry_queue_consumers` | gauge | `queue` | the same ([`record_queue_consumers`]) |
//! | `ferry_consume_lag_seconds` | histogram | `queue` | the consumer pipeline: event time to handler start |
//!
//! Transports do not count `ferry_published_total` themselves: the publish path every
//! [`Publisher`](crate::Publisher) call goes through does, so retry and dead-letter copies
//! (which transports send on their own) are not counted as published events.

use std::time::Duration;

use chrono::{DateTime, Utc};
use metrics::Unit;

use crate::{Decision, OutboxStats};

/// `ferry_published_total`: messages the broker confirmed (direct publishes and the outbox
/// relay).
pub const PUBLISHED_TOTAL: &str = "ferry_published_total";
/// `ferry_consumed_total{queue,outcome}`: deliveries the consumer pipeline decided on.
pub const CONSUMED_TOTAL: &str = "ferry_consumed_total";
/// `ferry_handler_duration_seconds{queue}`: how long handler calls took.
pub const HANDLER_DURATION_SECONDS: &str = "ferry_handler_duration_seconds";
/// `ferry_retries_total{queue}`: deliveries sent to a delayed retry.
pub const RETRIES_TOTAL: &str = "ferry_retries_total";
/// `ferry_dead_lettered_total{kind,queue}`: deliveries sent to the dead-letter exchange.
pub const DEAD_LETTERED_TOTAL: &str = "ferry_dead_lettered_total";
/// `ferry_outbox_pending`: outbox rows waiting to be published.
pub const OUTBOX_PENDING: &str = "ferry_outbox_pending";
/// `ferry_outbox_oldest_pending_age_seconds`: age of the oldest pending outbox row (the
/// relay's lag; 0 when none is pending).
pub const OUTBOX_OLDEST_PENDING_AGE_SECONDS: &str = "ferry_outbox_oldest_pending_age_seconds";
/// `ferry_relay_batch_duration_seconds`: how long an outbox relay batch took.
pub const RELAY_BATCH_DURATION_SECONDS: &str = "ferry_relay_batch_duration_seconds";
/// `ferry_queue_messages_ready{queue}`: messages ready in a queue, as last sampled.
pub const QUEUE_MESSAGES_READY: &str = "ferry_queue_messages_ready";
/// `ferry_consume_lag_seconds{queue}`: from the event's time to its handler's start.
pub const CONSUME_LAG_SECONDS: &str = "ferry_consume_lag_seconds";
/// `ferry_queue_consumers{queue}`: consumers of a queue, as last sampled.
pub const QUEUE_CONSUMERS: &str = "ferry_queue_consumers";

/// Every metric name above.
pub const ALL: [&str; 11] = [
    PUBLISHED_TOTAL,
    CONSUMED_TOTAL,
    HANDLER_DURATION_SECONDS,
    RETRIES_TOTAL,
    DEAD_LETTERED_TOTAL,
    OUTBOX_PENDING,
    OUTBOX_OLDEST_PENDING_AGE_SECONDS,
    RELAY_BATCH_DURATION_SECONDS,
    QUEUE_MESSAGES_READY,
    CONSUME_LAG_SECONDS,
    QUEUE_CONSUMERS,
];

/// The `queue` label.
pub const LABEL_QUEUE: &str = "queue";
/// The `outcome` label of `ferry_consumed_total` ([`Decision::outcome`]).
pub const LABEL_OUTCOME: &str = "outcome";
/// The `kind` label of `ferry_dead_lettered_total` (the fault kind, as in `ferry-fault-kind`).
pub const LABEL_KIND: &str = "kind";

/// Gives every ferry metric its unit and help text on the installed recorder. Call it once,
/// after installing the exporter.
///
/// ```
/// ferry_core::telemetry::describe_metrics();
/// ```
pub fn describe_metrics() {
    metrics::describe_counter!(
        PUBLISHED_TOTAL,
        Unit::Count,
        "Events published and confirmed by the broker (outbox relay and direct publishes)."
    );
    metrics::describe_counter!(
        CONSUMED_TOTAL,
        Unit::Count,
        "Deliveries handled by a consumer, by queue and outcome (ack, duplicate, retry, dead_letter)."
    );
    metrics::describe_histogram!(
        HANDLER_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of event handler calls, by queue."
    );
    metrics::describe_counter!(
        RETRIES_TOTAL,
        Unit::Count,
        "Deliveries that failed and were sent to a delayed retry, by queue."
    );
    metrics::describe_counter!(
        DEAD_LETTERED_TOTAL,
        Unit::Count,
        "Deliveries sent to the dead-letter exchange, by fault kind and queue."
    );
    metrics::describe_gauge!(
        OUTBOX_PENDING,
        Unit::Count,
        "Outbox rows waiting to be published."
    );
    metrics::describe_gauge!(
        OUTBOX_OLDEST_PENDING_AGE_SECONDS,
        Unit::Seconds,
        "Age of the oldest pending outbox row: how far the relay is behind (0 when none)."
    );
    metrics::describe_histogram!(
        RELAY_BATCH_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of an outbox relay batch: claim, publish with confirms, mark."
    );
    metrics::describe_gauge!(
        QUEUE_MESSAGES_READY,
        Unit::Count,
        "Messages ready for delivery in a queue, as last sampled by the transport."
    );
    metrics::describe_gauge!(
        QUEUE_CONSUMERS,
        Unit::Count,
        "Consumers of a queue, as last sampled by the transport."
    );
    metrics::describe_histogram!(
        CONSUME_LAG_SECONDS,
        Unit::Seconds,
        "Time from an event's creation to the start of its handler, by queue."
    );
}

/// Sets `ferry_queue_messages_ready{queue}`: transports call it when they sample a queue's
/// depth (for RabbitMQ, the message count of a passive queue declare).
///
/// ```
/// ferry_core::telemetry::record_queue_depth("inventory.order-created", 42);
/// ```
pub fn record_queue_depth(queue: &str, ready: u64) {
    metrics::gauge!(QUEUE_MESSAGES_READY, LABEL_QUEUE => queue.to_owned()).set(ready as f64);
}

/// Sets `ferry_queue_consumers{queue}`: transports call it with [`record_queue_depth`], from
/// the same sample.
///
/// ```
/// ferry_core::telemetry::record_queue_consumers("inventory.order-created", 2);
/// ```
pub fn record_queue_consumers(queue: &str, consumers: u64) {
    metrics::gauge!(QUEUE_CONSUMERS, LABEL_QUEUE => queue.to_owned()).set(consumers as f64);
}

/// Sets `ferry_outbox_pending` and `ferry_outbox_oldest_pending_age_seconds` from a sample of
/// the outbox (the relay does this every `stats_interval`).
pub fn record_outbox_stats(stats: &OutboxStats) {
    metrics::gauge!(OUTBOX_PENDING).set(stats.pending as f64);
    metrics::gauge!(OUTBOX_OLDEST_PENDING_AGE_SECONDS)
        .set(stats.oldest_pending_age_s.unwrap_or(0.0));
}

pub(crate) fn record_published(count: usize) {
    if count > 0 {
        metrics::counter!(PUBLISHED_TOTAL).increment(count as u64);
    }
}

pub(crate) fn record_relay_batch_duration(took: Duration) {
    metrics::histogram!(RELAY_BATCH_DURATION_SECONDS).record(took.as_secs_f64());
}

pub(crate) fn record_handler_duration(queue: &str, took: Duration) {
    metrics::histogram!(HANDLER_DURATION_SECONDS, LABEL_QUEUE => queue.to_owned())
        .record(took.as_secs_f64());
}

pub(crate) fn record_consume_lag(queue: &str, event_time: DateTime<Utc>) {
    let lag = (Utc::now() - event_time)
        .to_std()
        .map_or(0.0, |lag| lag.as_secs_f64());
    metrics::histogram!(CONSUME_LAG_SECONDS, LABEL_QUEUE => queue.to_owned()).record(lag);
}

pub(crate) fn record_decision(queue: &str, decision: &Decision) {
    metrics::counter!(
        CONSUMED_TOTAL,
        LABEL_QUEUE => queue.to_owned(),
        LABEL_OUTCOME => decision.outcome()
    )
    .increment(1);
    match decision {
        Decision::Retry { .. } => {
            metrics::counter!(RETRIES_TOTAL, LABEL_QUEUE => queue.to_owned()).increment(1);
        }
        Decision::DeadLetter(fault) => {
            metrics::counter!(
                DEAD_LETTERED_TOTAL,
                LABEL_KIND => fault.kind.as_str(),
                LABEL_QUEUE => queue.to_owned()
            )
            .increment(1);
        }
        Decision::Ack | Decision::Duplicate => {}
    }
}
