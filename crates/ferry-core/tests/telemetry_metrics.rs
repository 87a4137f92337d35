//! The metrics the consumer pipeline and the outbox relay record, with their names and labels,
//! seen by `metrics-util`'s debugging recorder.

use std::{
    collections::BTreeMap,
    sync::{Arc, OnceLock},
    time::Duration,
};

use ferry_core::{
    CancellationToken, Envelope, HandlerError, MessageContext, OutboxRelay, OutboxStore,
    OutgoingMessage, PublishOptions, Publisher, PublisherExt, RelayOptions, RetryPolicy, codec,
    memory::{MemoryBus, MemoryInbox, MemoryOutbox},
    telemetry::{self, metric},
};
use metrics::Unit;
use metrics_util::{
    MetricKind,
    debugging::{DebugValue, DebuggingRecorder, Snapshotter},
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[serde(rename_all = "camelCase")]
#[event(name = "orders.order.created")]
struct OrderCreated {
    order_id: u32,
}

/// The recorder is global and a snapshot resets what it read, so the tests take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Takes this test's turn, with the recorder installed.
async fn turn() -> tokio::sync::MutexGuard<'static, ()> {
    let guard = SERIAL.lock().await;
    snapshotter();
    guard
}

fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("no other recorder in this test binary");
        snapshotter
    })
}

type Labels = Vec<(String, String)>;

/// What the recorder saw, summed over snapshots.
#[derive(Default)]
struct Seen {
    counters: BTreeMap<(String, Labels), u64>,
    gauges: BTreeMap<(String, Labels), f64>,
    histograms: BTreeMap<(String, Labels), Vec<f64>>,
    described: BTreeMap<String, (Option<Unit>, String)>,
}

impl Seen {
    fn take(&mut self) {
        for (key, unit, description, value) in snapshotter().snapshot().into_vec() {
            let name = key.key().name().to_owned();
            let mut labels: Labels = key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            if let Some(description) = description {
                self.described
                    .insert(name.clone(), (unit, description.to_string()));
            }
            match (key.kind(), value) {
                (MetricKind::Counter, DebugValue::Counter(n)) => {
                    *self.counters.entry((name, labels)).or_default() += n;
                }
                (MetricKind::Gauge, DebugValue::Gauge(v)) => {
                    self.gauges.insert((name, labels), v.into_inner());
                }
                (MetricKind::Histogram, DebugValue::Histogram(vs)) => {
                    self.histograms
                        .entry((name, labels))
                        .or_default()
                        .extend(vs.into_iter().map(|v| v.into_inner()));
                }
                (kind, value) => panic!("{kind:?} with {value:?}"),
            }
        }
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.counters
            .get(&(name.to_owned(), labels_of(labels)))
            .copied()
            .unwrap_or(0)
    }

    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.gauges
            .get(&(name.to_owned(), labels_of(labels)))
            .copied()
    }

    fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.histograms
            .get(&(name.to_owned(), labels_of(labels)))
            .cloned()
            .unwrap_or_default()
    }
}

fn labels_of(labels: &[(&str, &str)]) -> Labels {
    let mut labels: Labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.sort();
    labels
}

/// Takes snapshots until `done` holds (at most 10 s).
async fn wait_until(seen: &mut Seen, what: &str, done: impl Fn(&Seen) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        seen.take();
        if done(seen) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; counters: {:?}",
            seen.counters
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A message for the bus, with the id given.
fn order_message(order_id: u32, id: &str) -> OutgoingMessage {
    PublishOptions {
        id: Some(id.to_owned()),
        ..PublishOptions::default()
    }
    .message_for(&OrderCreated { order_id }, None)
    .unwrap()
}

#[tokio::test]
async fn the_pipeline_counts_outcomes_retries_dead_letters_and_duplicates() {
    let _turn = turn().await;
    let mut seen = Seen::default();
    seen.take();
    let queue = format!("metrics.{}", uuid::Uuid::new_v4().simple());
    let q = queue.as_str();
    let bus = MemoryBus::new("myapp.events");
    // Somewhere for the dead letters to go: one that cannot be delivered is requeued, and
    // would be processed (and counted) again.
    bus.bind("myapp.dlx", "#", "myapp.dlq").unwrap();
    let failed_once = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let consumer = bus
        .consumer(q)
        .bind("orders.order.created")
        .dead_letter("myapp.dlx")
        .retry(RetryPolicy::fixed(3, Duration::from_millis(10)))
        .skip_processed(Arc::new(MemoryInbox::new()))
        .handle::<OrderCreated>(move |event: OrderCreated, _ctx: MessageContext| {
            let failed_once = failed_once.clone();
            async move {
                match event.order_id {
                    2 if !failed_once.swap(true, std::sync::atomic::Ordering::SeqCst) => {
                        Err(HandlerError::transient("database busy"))
                    }
                    3 => Err(HandlerError::permanent("no such product")),
                    _ => Ok(()),
                }
            }
        })
        .start()
        .await
        .unwrap();

    bus.publish_message(order_message(1, "m-1")).await.unwrap(); // ack
    bus.publish_message(order_message(2, "m-2")).await.unwrap(); // retry, then ack
    bus.publish_message(order_message(3, "m-3")).await.unwrap(); // dead letter (handler)
    let unknown = codec::encode_data(&Envelope::new("orders.order.unknown"), "{}".into());
    bus.publish_message(OutgoingMessage::new("orders.order.created", unknown))
        .await
        .unwrap(); // dead letter (unknown-type)
    wait_until(&mut seen, "two acks", |s| {
        s.counter(metric::CONSUMED_TOTAL, &[("queue", q), ("outcome", "ack")]) == 2
    })
    .await;
    bus.publish_message(order_message(1, "m-1")).await.unwrap(); // duplicate
    wait_until(&mut seen, "a duplicate", |s| {
        s.counter(
            metric::CONSUMED_TOTAL,
            &[("queue", q), ("outcome", "duplicate")],
        ) == 1
    })
    .await;
    consumer.shutdown().await;
    seen.take();

    let consumed = |outcome| {
        seen.counter(
            metric::CONSUMED_TOTAL,
            &[("queue", q), ("outcome", outcome)],
        )
    };
    assert_eq!(consumed("ack"), 2);
    assert_eq!(consumed("retry"), 1);
    assert_eq!(consumed("dead_letter"), 2);
    assert_eq!(consumed("duplicate"), 1);
    assert_eq!(seen.counter(metric::RETRIES_TOTAL, &[("queue", q)]), 1);
    assert_eq!(
        seen.counter(
            metric::DEAD_LETTERED_TOTAL,
            &[("kind", "handler"), ("queue", q)]
        ),
        1
    );
    assert_eq!(
        seen.counter(
            metric::DEAD_LETTERED_TOTAL,
            &[("kind", "unknown-type"), ("queue", q)]
        ),
        1
    );
    // Handler calls: order 1, order 2 twice, order 3 (not the unknown type, not the duplicate).
    let durations = seen.histogram(metric::HANDLER_DURATION_SECONDS, &[("queue", q)]);
    assert_eq!(durations.len(), 4, "{durations:?}");
    assert!(durations.iter().all(|d| *d >= 0.0));
    // Lag: every delivery that reached its handler, the retry's included.
    let lags = seen.histogram(metric::CONSUME_LAG_SECONDS, &[("queue", q)]);
    assert_eq!(lags.len(), 4, "{lags:?}");
    assert!(lags.iter().all(|l| *l >= 0.0));
    // The retry came back after its delay, so its lag is at least that.
    assert!(lags.iter().any(|l| *l >= 0.01), "{lags:?}");
    // The five messages published; the retry and dead-letter copies the bus made are not
    // published events.
    assert_eq!(seen.counter(metric::PUBLISHED_TOTAL, &[]), 5);
}

#[tokio::test]
async fn the_relay_counts_published_events_and_samples_the_outbox() {
    let _turn = turn().await;
    telemetry::describe_metrics();
    let mut seen = Seen::default();
    seen.take();
    let bus = MemoryBus::new("myapp.events");
    bus.bind("myapp.events", "orders.#", "metrics.relay")
        .unwrap();
    let outbox = MemoryOutbox::new();
    for order_id in 0..3 {
        outbox.add(&OrderCreated { order_id }).unwrap();
    }
    let shutdown = CancellationToken::new();
    let relay = tokio::spawn(
        OutboxRelay::new(outbox.clone(), bus.clone())
            .with_options(RelayOptions {
                poll_interval: Duration::from_millis(10),
                ..RelayOptions::default()
            })
            .run(shutdown.clone()),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while outbox.pending_count() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relay did not publish"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    relay.await.unwrap().unwrap();
    bus.publish(&OrderCreated { order_id: 9 }).await.unwrap();
    seen.take();

    assert_eq!(seen.counter(metric::PUBLISHED_TOTAL, &[]), 4);
    let batches = seen.histogram(metric::RELAY_BATCH_DURATION_SECONDS, &[]);
    assert!(!batches.is_empty());
    // The relay sampled the outbox before its first batch: three rows pending.
    assert_eq!(seen.gauge(metric::OUTBOX_PENDING, &[]), Some(3.0));
    assert!(
        seen.gauge(metric::OUTBOX_OLDEST_PENDING_AGE_SECONDS, &[])
            .is_some()
    );

    // An explicit sample after the relay: nothing pending.
    telemetry::record_outbox_stats(&outbox.stats().await.unwrap());
    seen.take();
    assert_eq!(seen.gauge(metric::OUTBOX_PENDING, &[]), Some(0.0));
    assert_eq!(
        seen.gauge(metric::OUTBOX_OLDEST_PENDING_AGE_SECONDS, &[]),
        Some(0.0)
    );
    assert_eq!(
        seen.described.get(metric::PUBLISHED_TOTAL),
        Some(&(
            Some(Unit::Count),
            "Events published and confirmed by the broker (outbox relay and direct publishes)."
                .to_owned()
        ))
    );
    assert_eq!(
        seen.described
            .get(metric::RELAY_BATCH_DURATION_SECONDS)
            .and_then(|(unit, _)| *unit),
        Some(Unit::Seconds)
    );
}

#[tokio::test]
async fn queue_depth_is_a_gauge_per_queue_and_every_metric_is_described() {
    let _turn = turn().await;
    telemetry::describe_metrics();
    let mut seen = Seen::default();
    seen.take();
    telemetry::record_queue_depth("inventory.order-created", 42);
    telemetry::record_queue_depth("orders.stock-reserved", 0);
    telemetry::record_queue_consumers("inventory.order-created", 2);
    seen.take();
    assert_eq!(
        seen.gauge(
            metric::QUEUE_CONSUMERS,
            &[("queue", "inventory.order-created")]
        ),
        Some(2.0)
    );
    assert_eq!(
        seen.gauge(
            metric::QUEUE_MESSAGES_READY,
            &[("queue", "inventory.order-created")]
        ),
        Some(42.0)
    );
    assert_eq!(
        seen.gauge(
            metric::QUEUE_MESSAGES_READY,
            &[("queue", "orders.stock-reserved")]
        ),
        Some(0.0)
    );
    let (unit, description) = &seen.described[metric::QUEUE_MESSAGES_READY];
    assert_eq!(*unit, Some(Unit::Count));
    assert!(description.contains("ready"));

    // Touch every metric, as the kind it is, so the snapshot carries its description.
    use metric::*;
    let kinds = [
        (PUBLISHED_TOTAL, MetricKind::Counter),
        (CONSUMED_TOTAL, MetricKind::Counter),
        (HANDLER_DURATION_SECONDS, MetricKind::Histogram),
        (RETRIES_TOTAL, MetricKind::Counter),
        (DEAD_LETTERED_TOTAL, MetricKind::Counter),
        (OUTBOX_PENDING, MetricKind::Gauge),
        (OUTBOX_OLDEST_PENDING_AGE_SECONDS, MetricKind::Gauge),
        (RELAY_BATCH_DURATION_SECONDS, MetricKind::Histogram),
        (QUEUE_MESSAGES_READY, MetricKind::Gauge),
        (CONSUME_LAG_SECONDS, MetricKind::Histogram),
        (QUEUE_CONSUMERS, MetricKind::Gauge),
    ];
    assert_eq!(kinds.map(|(name, _)| name), ALL);
    for (name, kind) in kinds {
        match kind {
            MetricKind::Counter => metrics::counter!(name).absolute(0),
            MetricKind::Gauge => metrics::gauge!(name).set(0.0),
            MetricKind::Histogram => metrics::histogram!(name).record(0.0),
        }
    }
    seen.take();
    for (name, kind) in kinds {
        let (unit, description) = seen
            .described
            .get(name)
            .unwrap_or_else(|| panic!("`{name}` is not described as a {kind:?}"));
        let expected = if name.ends_with("_seconds") {
            Unit::Seconds
        } else {
            Unit::Count
        };
        assert_eq!(*unit, Some(expected), "{name}");
        assert!(!description.is_empty());
        assert!(name.starts_with("ferry_"));
    }
}
