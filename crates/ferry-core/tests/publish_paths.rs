//! Every way to publish on the in-memory bus (the `Publisher` methods, `PublisherExt`, through
//! an `Arc`, the outbox relay) goes through the one publish path: exactly one `ferry.publish`
//! span per call and `ferry_published_total` raised by the messages the broker took.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use ferry_core::{
    OutboxRelay, OutgoingMessage, PublishError, PublishOptions, Publisher, PublisherExt,
    memory::{MemoryBus, MemoryOutbox},
    telemetry::metric,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use serde::{Deserialize, Serialize};
use tracing::{
    Subscriber,
    field::{Field, Visit},
    span::{Attributes, Id, Record},
};
use tracing_subscriber::{Layer, layer::Context, layer::SubscriberExt, registry::LookupSpan};

#[derive(Debug, Clone, Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[serde(rename_all = "camelCase")]
#[event(name = "orders.order.created")]
struct OrderCreated {
    order_id: u32,
}

const EXCHANGE: &str = "myapp.events";

#[derive(Debug, Clone, Default)]
struct CapturedSpan {
    name: String,
    parent: Option<String>,
    fields: BTreeMap<String, String>,
}

/// Records every span with its fields and its parent's name, in creation order.
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

/// This test's spans and metrics: a subscriber and a recorder for the test's thread only
/// (the tests run on current-thread runtimes, so the relay and the bus record here too).
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

    /// The `ferry.publish` spans opened since the last call.
    fn publish_spans(&self) -> Vec<CapturedSpan> {
        let mut spans = self.capture.0.lock().unwrap();
        let taken = std::mem::take(&mut *spans);
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
    let span = watch.one_publish(1);
    assert_eq!(
        field(&span, "otel.name"),
        Some("publish myapp.events:orders.order.created")
    );
    assert_eq!(field(&span, "otel.kind"), Some("client"));
    assert_eq!(field(&span, "messaging.operation.type"), Some("send"));
    assert_eq!(field(&span, "messaging.message.id"), Some(id.as_str()));
    assert_eq!(field(&span, "error.type"), None);
}

#[tokio::test]
async fn publisher_publish_messages_records_one_batch_span_and_counts_each() {
    let watch = Watch::new();
    let bus = bus();
    let results = bus
        .publish_messages(vec![message(1), message(2), message(3)])
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let span = watch.one_publish(3);
    assert_eq!(field(&span, "messaging.batch.message_count"), Some("3"));
    assert_eq!(
        field(&span, "messaging.destination.name"),
        Some("myapp.events:orders.order.created")
    );
}

#[tokio::test]
async fn publisher_ext_publish_records_one_span_and_counts_it() {
    let watch = Watch::new();
    let bus = bus();
    let id = bus.publish(&OrderCreated { order_id: 1 }).await.unwrap();
    let span = watch.one_publish(1);
    assert_eq!(field(&span, "messaging.message.id"), Some(id.as_str()));
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
    let span = watch.one_publish(1);
    assert_eq!(field(&span, "messaging.message.id"), Some(id.as_str()));
    assert_eq!(
        field(&span, "messaging.rabbitmq.destination.routing_key"),
        Some("orders.order.placed")
    );
    assert_eq!(
        field(&span, "messaging.message.conversation_id"),
        Some("c-1")
    );
}

#[tokio::test]
async fn a_publisher_behind_an_arc_records_one_span_and_counts_it() {
    let watch = Watch::new();
    let bus: Arc<MemoryBus> = Arc::new(bus());
    bus.publish_message(message(1)).await.unwrap();
    watch.one_publish(1);
    bus.publish(&OrderCreated { order_id: 2 }).await.unwrap();
    watch.one_publish(1);
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
    let span = watch.one_publish(2);
    assert_eq!(span.parent.as_deref(), Some("ferry.relay.batch"));
    assert_eq!(field(&span, "messaging.batch.message_count"), Some("2"));

    // A batch of one row: the message's own span.
    let id = outbox.add(&OrderCreated { order_id: 9 }).unwrap();
    assert_eq!(relay.run_once().await.unwrap().published, 1);
    let span = watch.one_publish(1);
    assert_eq!(field(&span, "messaging.message.id"), Some(id.as_str()));
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
    let span = watch.one_publish(0);
    assert_eq!(field(&span, "error.type"), Some("unroutable"));
    assert_eq!(field(&span, "otel.status_code"), Some("error"));

    // A batch where some fail: the span says how many, the counter counts the others.
    bus.bind(EXCHANGE, "orders.order.created", "publish-paths")
        .unwrap();
    let unroutable = OutgoingMessage::new("orders.order.lost", message(2).message);
    let results = bus
        .publish_messages(vec![message(1), unroutable, message(3)])
        .await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 2);
    let span = watch.one_publish(2);
    assert_eq!(field(&span, "error.type"), Some("unroutable"));
    assert!(
        field(&span, "otel.status_description").is_some_and(|d| d.starts_with("1 of 3")),
        "{span:?}"
    );
}
