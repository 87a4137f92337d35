//! The store suite's support: an event type, and a publisher that records
//! what it is given (and fails on demand).
// `&mut *tx` is sqlx's idiom for the transaction's connection, as the docs show it.
#![allow(dead_code, clippy::explicit_auto_deref)]

use std::{
    collections::HashSet,
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use ferry_core::{
    CancellationToken, IntegrationEvent, OutboxRelay, OutboxStore, OutgoingMessage, PublishBatch,
    PublishError, PublishTransport, Publisher, RelayOptions,
};

use super::*;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

/// The event the tests add.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemAdded {
    pub n: u64,
    pub partition: Option<String>,
}

impl IntegrationEvent for ItemAdded {
    const NAME: &'static str = "tests.item.added";
}

impl ItemAdded {
    pub fn new(n: u64) -> Self {
        Self { n, partition: None }
    }
}

/// Reads the `n` of a message's body.
pub fn n_of(message: &OutgoingMessage) -> u64 {
    let event: ItemAdded = serde_json::from_slice(&message.message.body).unwrap();
    event.n
}

/// Adds `count` events, `per_tx` to a transaction; returns their ids in order.
pub async fn add_many<B: Backend>(
    pool: &Pool<B>,
    outbox: &Outbox<B>,
    count: u64,
    per_tx: u64,
    partition: impl Fn(u64) -> Option<String>,
) -> Vec<String> {
    let mut ids = Vec::with_capacity(count as usize);
    let mut n = 0;
    while n < count {
        let mut tx = begin::<B>(pool).await.unwrap();
        for _ in 0..per_tx.min(count - n) {
            let partition_key = partition(n);
            let event = ItemAdded {
                n,
                partition: partition_key.clone(),
            };
            let options = ferry_core::PublishOptions {
                partition_key,
                ..Default::default()
            };
            ids.push(outbox.add_with(&mut *tx, &event, options).await.unwrap());
            n += 1;
        }
        tx.commit().await.unwrap();
    }
    ids
}

#[derive(Debug, Default)]
struct Recorder {
    published: Mutex<Vec<OutgoingMessage>>,
    unavailable: Mutex<bool>,
    unroutable: Mutex<HashSet<String>>,
    delay: Mutex<Duration>,
    calls: AtomicUsize,
}

/// A publisher that records messages in the order it confirms them, and fails on demand:
/// all messages `Unavailable` (the broker is down), or `Unroutable` for some routing keys.
#[derive(Debug, Clone, Default)]
pub struct RecordingPublisher {
    inner: Arc<Recorder>,
}

impl RecordingPublisher {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn published(&self) -> Vec<OutgoingMessage> {
        self.inner.published.lock().unwrap().clone()
    }
    pub fn count(&self) -> usize {
        self.inner.published.lock().unwrap().len()
    }
    pub fn ids(&self) -> Vec<String> {
        self.published().iter().map(|m| m.id().to_owned()).collect()
    }
    /// Publish calls so far (successful or not).
    pub fn calls(&self) -> usize {
        self.inner.calls.load(Ordering::SeqCst)
    }
    pub fn set_unavailable(&self, down: bool) {
        *self.inner.unavailable.lock().unwrap() = down;
    }
    pub fn set_unroutable(&self, routing_key: &str, unroutable: bool) {
        let mut keys = self.inner.unroutable.lock().unwrap();
        if unroutable {
            keys.insert(routing_key.to_owned());
        } else {
            keys.remove(routing_key);
        }
    }
    pub fn set_delay(&self, delay: Duration) {
        *self.inner.delay.lock().unwrap() = delay;
    }
}

#[async_trait]
impl PublishTransport for RecordingPublisher {
    async fn send(&self, batch: PublishBatch) -> Vec<Result<(), PublishError>> {
        let mut results = Vec::with_capacity(batch.len());
        for message in batch.into_messages() {
            results.push(self.send_one(message).await);
        }
        results
    }
}

impl RecordingPublisher {
    async fn send_one(&self, message: OutgoingMessage) -> Result<(), PublishError> {
        self.inner.calls.fetch_add(1, Ordering::SeqCst);
        let delay = *self.inner.delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if *self.inner.unavailable.lock().unwrap() {
            return Err(PublishError::Unavailable("connection refused".into()));
        }
        if self
            .inner
            .unroutable
            .lock()
            .unwrap()
            .contains(&message.routing_key)
        {
            return Err(PublishError::Unroutable {
                exchange: "tests".into(),
                routing_key: message.routing_key.clone(),
            });
        }
        self.inner.published.lock().unwrap().push(message);
        Ok(())
    }
}

/// Relay options for tests: short pauses.
pub fn fast_relay() -> RelayOptions {
    RelayOptions {
        batch_size: 100,
        lease: Duration::from_secs(30),
        poll_interval: Duration::from_millis(200),
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        stats_interval: Duration::from_secs(5),
        ..RelayOptions::default()
    }
}

/// A relay running in the background until the token is cancelled.
pub struct RunningRelay {
    pub stop: CancellationToken,
    pub task: JoinHandle<Result<(), ferry_core::RelayError>>,
}

impl RunningRelay {
    pub fn spawn<S, P>(store: S, publisher: P, options: RelayOptions) -> RunningRelay
    where
        S: OutboxStore + 'static,
        P: Publisher + 'static,
    {
        let stop = CancellationToken::new();
        let relay = OutboxRelay::new(store, publisher).with_options(options);
        let task = tokio::spawn(relay.run(stop.clone()));
        RunningRelay { stop, task }
    }

    pub async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// Polls `check` every 20 ms until it holds; panics after `limit` (a liveness bound, not a
/// speed check: the limits are generous).
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return;
        }
        if started.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The status and attempts of a row.
pub async fn status_of<B: Backend>(pool: &Pool<B>, id: &str) -> (String, i64) {
    B::status_of(pool, id).await
}

/// The single integer a query returns.
pub async fn count<B: Backend>(pool: &Pool<B>, sql: &str, args: Vec<Arg>) -> i64 {
    B::ints(pool, sql, args).await.unwrap()[0]
}

/// A RabbitMQ connection on an exchange of its own (`ferry-test-…`), with short timeouts.
pub async fn broker(exchange: &str) -> ferry_rabbitmq::RabbitMq {
    broker_at(&crate::amqp::url(), exchange).await
}

/// A RabbitMQ connection through `url` (e.g. a [`crate::TcpProxy`]).
pub async fn broker_at(url: &str, exchange: &str) -> ferry_rabbitmq::RabbitMq {
    let options = ferry_rabbitmq::RabbitMqOptions::new(url)
        .with_exchange(exchange)
        .with_connection_name("ferry-store-tests")
        .with_confirm_timeout(Duration::from_secs(5))
        .with_publish_reconnect_wait(Duration::from_millis(200))
        .with_reconnect_backoff(Duration::from_millis(50), Duration::from_millis(300));
    ferry_rabbitmq::RabbitMq::connect(options).await.unwrap()
}

/// Receives until `count` messages came or `quiet` passes without one; returns their ids
/// (`message_id`) in arrival order.
pub async fn receive_ids(
    subscription: &mut ferry_rabbitmq::Subscription,
    count: usize,
    quiet: Duration,
) -> Vec<String> {
    receive(subscription, count, quiet)
        .await
        .into_iter()
        .map(|m| m.properties.message_id.unwrap_or_default())
        .collect()
}

/// Receives until `count` messages came or `quiet` passes without one.
pub async fn receive(
    subscription: &mut ferry_rabbitmq::Subscription,
    count: usize,
    quiet: Duration,
) -> Vec<ferry_core::WireMessage> {
    let mut got = Vec::new();
    while got.len() < count {
        match tokio::time::timeout(quiet, subscription.next()).await {
            Ok(Some(Ok(received))) => got.push(received.message),
            Ok(Some(Err(e))) => panic!("receiving failed: {e}"),
            Ok(None) | Err(_) => break,
        }
    }
    got
}

/// A publisher that counts the batches it is given, then hands them on.
#[derive(Debug, Clone)]
pub struct Counting<P> {
    pub inner: P,
    batches: Arc<AtomicUsize>,
}

impl<P> Counting<P> {
    pub fn new(inner: P) -> Self {
        Self {
            inner,
            batches: Arc::default(),
        }
    }
    pub fn batches(&self) -> usize {
        self.batches.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl<P: PublishTransport> PublishTransport for Counting<P> {
    fn source(&self) -> Option<&str> {
        self.inner.source()
    }

    fn exchange(&self) -> Option<&str> {
        self.inner.exchange()
    }

    async fn send(&self, batch: PublishBatch) -> Vec<Result<(), PublishError>> {
        self.batches.fetch_add(1, Ordering::SeqCst);
        self.inner.send(batch).await
    }
}
