//! Every way to publish on the RabbitMQ transport (the inherent `publish` and `publish_with`,
//! the `Publisher` methods, `PublisherExt`, the outbox relay) goes through the one publish
//! path: exactly one `ferry.publish` span per call, and `ferry_published_total` raised by the
//! messages the broker confirmed. Retry copies the transport makes are not published events.

mod common;

use std::time::Duration;

use common::{Env, order};
use ferry_core::{
    HandlerError, MessageContext, OutboxRelay, PublishOptions, Publisher, PublisherExt,
    RetryPolicy, memory::MemoryOutbox, telemetry::metric,
};
use ferry_testkit::watch::{CapturedSpan, Watch};

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

/// Forgets what was recorded so far.
fn reset(watch: &Watch) {
    watch.take_spans("ferry.publish");
    watch.counter(metric::PUBLISHED_TOTAL);
}

/// A connected bus on a fresh exchange, with a temporary queue bound to every routing key (so
/// publishes are routable).
async fn env() -> (Env, ferry_rabbitmq::Subscription) {
    let env = Env::new("publish-telemetry").await;
    let subscription = env.bus.subscribe(&["#"]).await.unwrap();
    (env, subscription)
}

#[tokio::test]
async fn the_inherent_publish_records_one_span_and_counts_it() {
    let (env, subscription) = env().await;
    let watch = Watch::new();
    let id = env.bus.publish(&order(1)).await.unwrap();
    let span = one_publish(&watch, 1);
    assert_eq!(span.field("messaging.message.id"), Some(id.as_str()));
    assert_eq!(
        span.field("messaging.destination.name"),
        Some(format!("{}:orders.order.created", env.exchange).as_str())
    );
    assert_eq!(span.field("otel.kind"), Some("client"));
    subscription.close().await;
}

#[tokio::test]
async fn the_inherent_publish_with_records_one_span_and_counts_it() {
    let (env, subscription) = env().await;
    let watch = Watch::new();
    let id = env
        .bus
        .publish_with(
            &order(1),
            PublishOptions {
                routing_key: Some("orders.order.placed".into()),
                correlation_id: Some("c-7".into()),
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
    assert_eq!(span.field("messaging.message.conversation_id"), Some("c-7"));
    subscription.close().await;
}

#[tokio::test]
async fn the_publisher_methods_record_one_span_per_call_and_count_each_message() {
    let (env, subscription) = env().await;
    let watch = Watch::new();
    let message = |n| {
        PublishOptions::default()
            .message_for(&order(n), None)
            .unwrap()
    };
    env.bus.publish_message(message(1)).await.unwrap();
    one_publish(&watch, 1);

    let results = env
        .bus
        .publish_messages(vec![message(2), message(3), message(4)])
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let span = one_publish(&watch, 3);
    assert_eq!(span.field("messaging.batch.message_count"), Some("3"));

    PublisherExt::publish(&env.bus, &order(5)).await.unwrap();
    one_publish(&watch, 1);
    PublisherExt::publish_with(&env.bus, &order(6), PublishOptions::default())
        .await
        .unwrap();
    one_publish(&watch, 1);
    subscription.close().await;
}

#[tokio::test]
async fn the_relay_records_one_publish_span_per_batch_and_counts_each_row() {
    let (env, subscription) = env().await;
    let watch = Watch::new();
    let outbox = MemoryOutbox::new();
    for n in 0..3 {
        outbox.add(&order(n)).unwrap();
    }
    let relay = OutboxRelay::new(outbox.clone(), env.bus.clone());
    assert_eq!(relay.run_once().await.unwrap().published, 3);
    let span = one_publish(&watch, 3);
    assert_eq!(span.parent.as_deref(), Some("ferry.relay.batch"));
    assert_eq!(span.field("messaging.batch.message_count"), Some("3"));
    subscription.close().await;
}

/// A failed publish is marked on its span and not counted; the retry copy a consumer sends is
/// the transport's own, not a published event.
#[tokio::test]
async fn failures_are_marked_and_retry_copies_are_not_counted() {
    let env = Env::new("publish-telemetry").await;
    let watch = Watch::new();
    let err = env.bus.publish(&order(1)).await.unwrap_err();
    assert!(
        matches!(err, ferry_core::PublishError::Unroutable { .. }),
        "{err}"
    );
    let span = one_publish(&watch, 0);
    assert_eq!(span.field("error.type"), Some("unroutable"));

    let queue = env.queue("publish-telemetry.retry");
    env.cleanup.retry_queues(&queue, &[50]);
    let (dlx, dead_letters, _dead) = env.dead_letters().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let consumer = env
        .bus
        .consumer(queue.clone())
        .bind("orders.#")
        .dead_letter(dlx)
        .retry(RetryPolicy::fixed(1, Duration::from_millis(50)))
        .handle::<common::OrderCreated>(move |_: common::OrderCreated, ctx: MessageContext| {
            let tx = tx.clone();
            async move {
                tx.send(ctx.attempt()).ok();
                if ctx.attempt() == 1 {
                    Err(HandlerError::transient("try again"))
                } else {
                    Ok(())
                }
            }
        })
        .start()
        .await
        .unwrap();
    reset(&watch);
    env.bus.publish(&order(2)).await.unwrap();
    let attempts = common::recv_n(&mut rx, 2, Duration::from_secs(10)).await;
    assert_eq!(attempts, vec![1, 2]);
    consumer.shutdown().await;
    dead_letters.shutdown().await;
    // The event's publish alone: the retry copy went out without a span or a count.
    one_publish(&watch, 1);
}
