//! Every way to publish on the in-memory bus (the `Publisher` methods, `PublisherExt`, through
//! an `Arc`, the outbox relay) goes through the one publish path: exactly one `ferry.publish`
//! span per call and `ferry_published_total` raised by the messages the broker took.

use std::sync::Arc;

use ferry_core::{
    OutboxRelay, OutgoingMessage, PublishError, PublishOptions, Publisher, PublisherExt,
    memory::{MemoryBus, MemoryOutbox},
    telemetry::metric,
};
use ferry_testkit::watch::{CapturedSpan, Watch};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[serde(rename_all = "camelCase")]
#[event(name = "orders.order.created")]
struct OrderCreated {
    order_id: u32,
}

const EXCHANGE: &str = "myapp.events";

/// Exactly one `ferry.publish` span and `published` counted since the last check.
fn one_publish(watch: &Watch, published: u64) -> CapturedSpan {
    let span = watch.one_span("ferry.publish");
    assert_eq!(
        watch.counter(metric::PUBLISHED_TOTAL),
        published,
        "ferry_published_total"
    );
    span
}

/// A bus with a queue bound to the orders' routing keys.
fn bus() -> MemoryBus {
    let bus = MemoryBus::new(EXCHANGE);
    bus.bind(EXCHANGE, "orders.#", "publish-paths").unwrap();
    bus
}

fn message(order_id: u32) -> OutgoingMessage {
    PublishOptions::default()
        .message_for(&OrderCreated { order_id }, None)
        .unwrap()
}

#[tokio::test]
async fn publisher_publish_message_records_one_span_and_counts_it() {
    let watch = Watch::new();
    let bus = bus();
    let m = message(1);
    let id = m.id().to_owned();
    bus.publish_message(m).await.unwrap();
    let span = one_publish(&watch, 1);
    assert_eq!(
        span.field("otel.name"),
        Some("publish myapp.events:orders.order.created")
    );
    assert_eq!(span.field("otel.kind"), Some("client"));
    assert_eq!(span.field("messaging.operation.type"), Some("send"));
    assert_eq!(span.field("messaging.message.id"), Some(id.as_str()));
    assert_eq!(span.field("error.type"), None);
}

#[tokio::test]
async fn publisher_publish_messages_records_one_batch_span_and_counts_each() {
    let watch = Watch::new();
    let bus = bus();
    let results = bus
        .publish_messages(vec![message(1), message(2), message(3)])
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let span = one_publish(&watch, 3);
    assert_eq!(span.field("messaging.batch.message_count"), Some("3"));
    assert_eq!(
        span.field("messaging.destination.name"),
        Some("myapp.events:orders.order.created")
    );
}

#[tokio::test]
async fn publisher_ext_publish_records_one_span_and_counts_it() {
    let watch = Watch::new();
    let bus = bus();
    let id = bus.publish(&OrderCreated { order_id: 1 }).await.unwrap();
    let span = one_publish(&watch, 1);
    assert_eq!(span.field("messaging.message.id"), Some(id.as_str()));
}

#[tokio::test]
async fn publisher_ext_publish_with_records_one_span_and_counts_it() {
    let watch = Watch::new();
    let bus = bus();
    let id = bus
        .publish_with(
            &OrderCreated { order_id: 1 },
            PublishOptions {
                routing_key: Some("orders.order.placed".into()),
                correlation_id: Some("c-1".into()),
                ..PublishOptions::default()
            },
        )
        .await
        .unwrap();
    let span = one_publish(&watch, 1);
    assert_eq!(span.field("messaging.message.id"), Some(id.as_str()));
    assert_eq!(
        span.field("messaging.rabbitmq.destination.routing_key"),
        Some("orders.order.placed")
    );
    assert_eq!(span.field("messaging.message.conversation_id"), Some("c-1"));
}

#[tokio::test]
async fn a_publisher_behind_an_arc_records_one_span_and_counts_it() {
    let watch = Watch::new();
    let bus: Arc<MemoryBus> = Arc::new(bus());
    bus.publish_message(message(1)).await.unwrap();
    one_publish(&watch, 1);
    bus.publish(&OrderCreated { order_id: 2 }).await.unwrap();
    one_publish(&watch, 1);
}

#[tokio::test]
async fn the_relay_records_one_publish_span_per_batch_and_counts_each_row() {
    let watch = Watch::new();
    let bus = bus();
    let outbox = MemoryOutbox::new();
    let ids: Vec<String> = (0..2)
        .map(|order_id| outbox.add(&OrderCreated { order_id }).unwrap())
        .collect();
    let relay = OutboxRelay::new(outbox.clone(), bus.clone());
    let batch = relay.run_once().await.unwrap();
    assert_eq!(batch.published, 2);
    let span = one_publish(&watch, 2);
    assert_eq!(span.parent.as_deref(), Some("ferry.relay.batch"));
    assert_eq!(span.field("messaging.batch.message_count"), Some("2"));

    // A batch of one row: the message's own span.
    let id = outbox.add(&OrderCreated { order_id: 9 }).unwrap();
    assert_eq!(relay.run_once().await.unwrap().published, 1);
    let span = one_publish(&watch, 1);
    assert_eq!(span.field("messaging.message.id"), Some(id.as_str()));
    assert!(!ids.contains(&id));
}

#[tokio::test]
async fn a_failed_publish_marks_its_span_and_counts_nothing() {
    let watch = Watch::new();
    let bus = MemoryBus::new(EXCHANGE);
    let err = bus
        .publish(&OrderCreated { order_id: 1 })
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::Unroutable { .. }), "{err}");
    let span = one_publish(&watch, 0);
    assert_eq!(span.field("error.type"), Some("unroutable"));
    assert_eq!(span.field("otel.status_code"), Some("error"));

    // A batch where some fail: the span says how many, the counter counts the others.
    bus.bind(EXCHANGE, "orders.order.created", "publish-paths")
        .unwrap();
    let unroutable = OutgoingMessage::new("orders.order.lost", message(2).message);
    let results = bus
        .publish_messages(vec![message(1), unroutable, message(3)])
        .await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 2);
    let span = one_publish(&watch, 2);
    assert_eq!(span.field("error.type"), Some("unroutable"));
    assert!(
        span.field("otel.status_description")
            .is_some_and(|d| d.starts_with("1 of 3")),
        "{span:?}"
    );
}
