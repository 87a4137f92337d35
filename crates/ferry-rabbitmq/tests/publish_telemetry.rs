//! Every way to publish on the RabbitMQ transport (the inherent `publish` and `publish_with`,
//! the `Publisher` methods, `PublisherExt`, the outbox relay) goes through the one publish
//! path: exactly one `ferry.publish` span per call, and `ferry_published_total` raised by the
//! messages the broker confirmed. Retry copies the transport makes are not published events.

mod common;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{Env, order};
use ferry_core::{
    HandlerError, MessageContext, OutboxRelay, PublishOptions, Publisher, PublisherExt,
    RetryPolicy, memory::MemoryOutbox, telemetry::metric,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tracing::{
    Subscriber,
    field::{Field, Visit},
    span::{Attributes, Id, Record},
};
use tracing_subscriber::{Layer, layer::Context, layer::SubscriberExt, registry::LookupSpan};

#[derive(Debug, Clone, Default)]
struct CapturedSpan {
    name: String,
    parent: Option<String>,
    fields: BTreeMap<String, String>,
}

/// Records every span with its fields and its parent's name.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<(u64, CapturedSpan)>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut span = CapturedSpan {
            name: attrs.metadata().name().to_owned(),
            parent: ctx
                .span(id)
                .and_then(|s| s.parent())
                .map(|p| p.name().to_owned()),
            ..CapturedSpan::default()
        };
        attrs.record(&mut Fields(&mut span.fields));
        self.0.lock().unwrap().push((id.into_u64(), span));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        let mut spans = self.0.lock().unwrap();
        if let Some((_, span)) = spans.iter_mut().rev().find(|(i, _)| *i == id.into_u64()) {
            values.record(&mut Fields(&mut span.fields));
        }
    }
}

/// This test's spans and metrics: a subscriber and a recorder for the test's thread only (a
/// current-thread runtime, so the relay and the consumers record here too).
struct Watch {
    capture: Capture,
    snapshotter: Snapshotter,
    _tracing: tracing::subscriber::DefaultGuard,
    _metrics: metrics::LocalRecorderGuard<'static>,
}

impl Watch {
    fn new() -> Self {
        let capture = Capture::default();
        let tracing =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
        let recorder: &'static DebuggingRecorder = Box::leak(Box::new(DebuggingRecorder::new()));
        let snapshotter = recorder.snapshotter();
        let metrics = metrics::set_default_local_recorder(recorder);
        Self {
            capture,
            snapshotter,
            _tracing: tracing,
            _metrics: metrics,
        }
    }

    /// Forgets what was recorded so far.
    fn reset(&self) {
        self.publish_spans();
        self.published();
    }

    /// The `ferry.publish` spans opened since the last call.
    fn publish_spans(&self) -> Vec<CapturedSpan> {
        let taken = std::mem::take(&mut *self.capture.0.lock().unwrap());
        taken
            .into_iter()
            .map(|(_, span)| span)
            .filter(|span| span.name == "ferry.publish")
            .collect()
    }

    /// `ferry_published_total` raised since the last call (a snapshot resets counters).
    fn published(&self) -> u64 {
        self.snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, ..)| key.key().name() == metric::PUBLISHED_TOTAL)
            .map(|(_, _, _, value)| match value {
                DebugValue::Counter(n) => n,
                other => panic!("{other:?}"),
            })
            .sum()
    }

    /// Exactly one `ferry.publish` span and `published` counted since the last check.
    fn one_publish(&self, published: u64) -> CapturedSpan {
        let mut spans = self.publish_spans();
        assert_eq!(spans.len(), 1, "one ferry.publish span: {spans:?}");
        assert_eq!(self.published(), published, "ferry_published_total");
        spans.remove(0)
    }
}

fn field<'a>(span: &'a CapturedSpan, name: &str) -> Option<&'a str> {
    span.fields.get(name).map(String::as_str)
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
    let span = watch.one_publish(1);
    assert_eq!(field(&span, "messaging.message.id"), Some(id.as_str()));
    assert_eq!(
        field(&span, "messaging.destination.name"),
        Some(format!("{}:orders.order.created", env.exchange).as_str())
    );
    assert_eq!(field(&span, "otel.kind"), Some("client"));
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
    let span = watch.one_publish(1);
    assert_eq!(field(&span, "messaging.message.id"), Some(id.as_str()));
    assert_eq!(
        field(&span, "messaging.rabbitmq.destination.routing_key"),
        Some("orders.order.placed")
    );
    assert_eq!(
        field(&span, "messaging.message.conversation_id"),
        Some("c-7")
    );
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
    watch.one_publish(1);

    let results = env
        .bus
        .publish_messages(vec![message(2), message(3), message(4)])
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let span = watch.one_publish(3);
    assert_eq!(field(&span, "messaging.batch.message_count"), Some("3"));

    PublisherExt::publish(&env.bus, &order(5)).await.unwrap();
    watch.one_publish(1);
    PublisherExt::publish_with(&env.bus, &order(6), PublishOptions::default())
        .await
        .unwrap();
    watch.one_publish(1);
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
    let span = watch.one_publish(3);
    assert_eq!(span.parent.as_deref(), Some("ferry.relay.batch"));
    assert_eq!(field(&span, "messaging.batch.message_count"), Some("3"));
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
    let span = watch.one_publish(0);
    assert_eq!(field(&span, "error.type"), Some("unroutable"));

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
    watch.reset();
    env.bus.publish(&order(2)).await.unwrap();
    let attempts = common::recv_n(&mut rx, 2, Duration::from_secs(10)).await;
    assert_eq!(attempts, vec![1, 2]);
    consumer.shutdown().await;
    dead_letters.shutdown().await;
    // The event's publish alone: the retry copy went out without a span or a count.
    watch.one_publish(1);
}
