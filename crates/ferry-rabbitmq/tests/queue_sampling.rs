//! The transport samples the queue of each running consumer into
//! `ferry_queue_messages_ready{queue}` and `ferry_queue_consumers{queue}` at the configured
//! interval, for every library user (no demo, no code of the application's), and stops with the
//! consumer.

mod common;

use std::{sync::Arc, time::Duration};

use common::{Env, OrderCreated, order};
use ferry_core::{HandlerError, MessageContext, telemetry::metric};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tokio::sync::{Semaphore, mpsc};

/// A recorder for this test's thread only (a current-thread runtime: the consumer and its
/// sampling run here too).
struct Gauges {
    snapshotter: Snapshotter,
    _guard: metrics::LocalRecorderGuard<'static>,
}

impl Gauges {
    fn new() -> Self {
        let recorder: &'static DebuggingRecorder = Box::leak(Box::new(DebuggingRecorder::new()));
        let snapshotter = recorder.snapshotter();
        let guard = metrics::set_default_local_recorder(recorder);
        Self {
            snapshotter,
            _guard: guard,
        }
    }

    /// The gauge `name{queue}` set since the last snapshot (the debugging recorder hands a
    /// gauge's value out once, then reads 0 until it is set again); `None` if it never was.
    fn get(&self, name: &str, queue: &str) -> Option<f64> {
        self.snapshot(queue).remove(name)
    }

    /// Every gauge of `queue` in one snapshot.
    fn snapshot(&self, queue: &str) -> std::collections::HashMap<String, f64> {
        self.snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, ..)| {
                key.key()
                    .labels()
                    .any(|l| l.key() == "queue" && l.value() == queue)
            })
            .filter_map(|(key, _, _, value)| match value {
                DebugValue::Gauge(v) => Some((key.key().name().to_owned(), v.into_inner())),
                _ => None,
            })
            .collect()
    }

    /// Waits (at most 10 s) for a sample of `queue` that saw `ready` messages and one
    /// consumer. A sample sets both gauges at once, so a snapshot with the consumer gauge at 1
    /// holds a sample's depth, not a reset 0.
    async fn wait_for_sample(&self, queue: &str, ready: f64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let seen = self.snapshot(queue);
            let (got_ready, consumers) = (
                seen.get(metric::QUEUE_MESSAGES_READY).copied(),
                seen.get(metric::QUEUE_CONSUMERS).copied(),
            );
            if consumers == Some(1.0) && got_ready == Some(ready) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no sample of {queue} with {ready} ready and one consumer (last: {got_ready:?} \
                 ready, {consumers:?} consumers)"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

const INTERVAL: Duration = Duration::from_millis(100);

#[tokio::test]
async fn a_running_consumer_samples_its_queue_depth_and_consumers_until_it_stops() {
    let env = Env::with_options("queue-sampling", |o| {
        o.with_queue_sample_interval(Some(INTERVAL))
    })
    .await;
    let gauges = Gauges::new();
    let queue = env.queue("queue-sampling");
    let (dlx, dead_letters, _dead) = env.dead_letters().await;
    // The handler holds the first message until told, so the rest wait on the queue (one at a
    // time: prefetch 1).
    let release = Arc::new(Semaphore::new(0));
    let (started, mut started_rx) = mpsc::unbounded_channel();
    let handler_release = Arc::clone(&release);
    let consumer = env
        .bus
        .consumer(queue.clone())
        .bind("orders.#")
        .prefetch(1)
        .dead_letter(dlx)
        .handle::<OrderCreated>(move |event: OrderCreated, _ctx: MessageContext| {
            let release = Arc::clone(&handler_release);
            let started = started.clone();
            async move {
                started.send(event.order_id).ok();
                release
                    .acquire()
                    .await
                    .map_err(|_| HandlerError::transient("closed"))?
                    .forget();
                Ok::<(), HandlerError>(())
            }
        })
        .start()
        .await
        .unwrap();
    gauges.wait_for_sample(&queue, 0.0).await;

    for n in 0..5 {
        env.bus.publish(&order(n)).await.unwrap();
    }
    // One message is with the handler; four are ready.
    common::recv_n(&mut started_rx, 1, Duration::from_secs(10)).await;
    gauges.wait_for_sample(&queue, 4.0).await;

    // Let every message through: the queue empties.
    release.add_permits(5);
    let handled = common::recv_n(&mut started_rx, 4, Duration::from_secs(10)).await;
    assert_eq!(handled.len(), 4);
    gauges.wait_for_sample(&queue, 0.0).await;

    // Stopped: no consumer samples the queue any more, so messages that now wait on it do
    // not show.
    consumer.shutdown().await;
    gauges.snapshot(&queue);
    for n in 5..8 {
        env.bus.publish(&order(n)).await.unwrap();
    }
    let (ready, consumers) = env.bus.queue_counts(&queue).await.unwrap();
    assert_eq!((ready, consumers), (3, 0));
    tokio::time::sleep(INTERVAL * 5).await;
    let seen = gauges.snapshot(&queue);
    assert_eq!(
        seen.get(metric::QUEUE_MESSAGES_READY),
        Some(&0.0),
        "the queue was sampled after its consumer stopped"
    );
    dead_letters.shutdown().await;
}

#[tokio::test]
async fn sampling_is_every_five_seconds_by_default_and_can_be_turned_off() {
    assert_eq!(
        ferry_rabbitmq::RabbitMqOptions::default().queue_sample_interval(),
        Some(ferry_rabbitmq::DEFAULT_QUEUE_SAMPLE_INTERVAL)
    );
    assert_eq!(
        ferry_rabbitmq::DEFAULT_QUEUE_SAMPLE_INTERVAL,
        Duration::from_secs(5)
    );
    let zero =
        ferry_rabbitmq::RabbitMqOptions::default().with_queue_sample_interval(Some(Duration::ZERO));
    assert!(ferry_rabbitmq::RabbitMq::connect(zero).await.is_err());

    let env = Env::with_options("queue-sampling", |o| o.with_queue_sample_interval(None)).await;
    let gauges = Gauges::new();
    let queue = env.queue("queue-sampling");
    let (dlx, dead_letters, _dead) = env.dead_letters().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let consumer = env
        .bus
        .consumer(queue.clone())
        .bind("orders.#")
        .dead_letter(dlx)
        .handle::<OrderCreated>(move |event: OrderCreated, _ctx: MessageContext| {
            let tx = tx.clone();
            async move {
                tx.send(event.order_id).ok();
                Ok::<(), HandlerError>(())
            }
        })
        .start()
        .await
        .unwrap();
    env.bus.publish(&order(1)).await.unwrap();
    common::recv_n(&mut rx, 1, Duration::from_secs(10)).await;
    consumer.shutdown().await;
    dead_letters.shutdown().await;
    assert_eq!(gauges.get(metric::QUEUE_MESSAGES_READY, &queue), None);
    assert_eq!(gauges.get(metric::QUEUE_CONSUMERS, &queue), None);
}
