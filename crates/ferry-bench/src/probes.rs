//! Probes: ferry's [`OutboxStore`], [`PublishTransport`] and [`Inbox`] wrapped so each call is
//! timed, for the report to say where ferry's time goes. A probe adds two clock reads and three
//! atomic adds per call (per batch for the relay).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use ferry::{
    PublishError,
    plumbing::{
        ClaimedOutboxRow, Inbox, InboxError, OutboxError, OutboxFailure, OutboxStats, OutboxStore,
        PublishBatch, PublishTransport,
    },
};

use super::report::Breakdown;

/// Calls, time spent in them, and items they handled.
#[derive(Debug, Default)]
pub struct Clock {
    calls: AtomicU64,
    nanos: AtomicU64,
    items: AtomicU64,
}

impl Clock {
    fn add(&self, started: Instant, items: usize) {
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
        self.items.fetch_add(items as u64, Ordering::Relaxed);
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn items(&self) -> u64 {
        self.items.load(Ordering::Relaxed)
    }

    /// Mean time per call, in `unit`s.
    fn mean(&self, unit: Duration) -> f64 {
        let calls = self.calls();
        if calls == 0 {
            return 0.0;
        }
        let mean = self.nanos.load(Ordering::Relaxed) as f64 / calls as f64;
        (mean / unit.as_nanos() as f64 * 100.0).round() / 100.0
    }
}

/// Where the relay's time goes: claims, publishes and marks.
#[derive(Debug, Default)]
pub struct RelayProbe {
    claim: Clock,
    publish: Clock,
    mark: Clock,
}

impl RelayProbe {
    /// A new probe.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Batches, rows per batch, and ms per claim, publish and mark.
    pub fn breakdown(&self) -> Breakdown {
        let ms = Duration::from_millis(1);
        let batches = self.publish.calls();
        let rows = if batches == 0 {
            0.0
        } else {
            (self.publish.items() as f64 / batches as f64 * 10.0).round() / 10.0
        };
        Breakdown::from([
            ("batches", batches as f64),
            ("rows_per_batch", rows),
            ("claim_ms", self.claim.mean(ms)),
            ("publish_ms", self.publish.mean(ms)),
            ("mark_published_ms", self.mark.mean(ms)),
        ])
    }
}

/// An outbox store whose claims and marks are timed.
pub struct TimedStore<S> {
    inner: S,
    probe: Arc<RelayProbe>,
}

impl<S> TimedStore<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, probe: &Arc<RelayProbe>) -> Self {
        Self {
            inner,
            probe: Arc::clone(probe),
        }
    }
}

#[async_trait]
impl<S: OutboxStore> OutboxStore for TimedStore<S> {
    async fn claim(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedOutboxRow>, OutboxError> {
        let started = Instant::now();
        let rows = self.inner.claim(limit, lease).await?;
        if !rows.is_empty() {
            self.probe.claim.add(started, rows.len());
        }
        Ok(rows)
    }

    async fn mark_published(&self, ids: &[String]) -> Result<(), OutboxError> {
        let started = Instant::now();
        let marked = self.inner.mark_published(ids).await;
        self.probe.mark.add(started, ids.len());
        marked
    }

    async fn mark_failed(&self, failures: &[OutboxFailure]) -> Result<(), OutboxError> {
        self.inner.mark_failed(failures).await
    }

    async fn release(&self, ids: &[String]) -> Result<(), OutboxError> {
        self.inner.release(ids).await
    }

    async fn wait_for_rows(&self, timeout: Duration) {
        self.inner.wait_for_rows(timeout).await;
    }

    async fn stats(&self) -> Result<OutboxStats, OutboxError> {
        self.inner.stats().await
    }

    async fn remove_expired(&self) -> Result<u64, OutboxError> {
        self.inner.remove_expired().await
    }

    async fn relay_stopped(&self) {
        self.inner.relay_stopped().await;
    }
}

/// When each message was handed to the publisher and when its confirm came back.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// `publish_messages` was called with it (the relay had claimed it).
    pub handed: Instant,
    /// Its confirm came back.
    pub confirmed: Instant,
}

/// [`Sent`] times by message id.
pub type ConfirmTimes = Arc<Mutex<HashMap<String, Sent>>>;

/// A publisher whose batches are timed, and which can note when each message's confirm came
/// back.
pub struct TimedPublisher<P> {
    inner: P,
    probe: Arc<RelayProbe>,
    confirmed: Option<ConfirmTimes>,
}

impl<P> TimedPublisher<P> {
    /// Wraps `inner`.
    pub fn new(inner: P, probe: &Arc<RelayProbe>) -> Self {
        Self {
            inner,
            probe: Arc::clone(probe),
            confirmed: None,
        }
    }

    /// Notes each confirmed message's times in `confirmed` too.
    pub fn noting_confirms(self, confirmed: &ConfirmTimes) -> Self {
        Self {
            confirmed: Some(Arc::clone(confirmed)),
            ..self
        }
    }
}

/// A copy of the times noted so far.
pub fn confirm_times(confirmed: &ConfirmTimes) -> HashMap<String, Sent> {
    confirmed.lock().map(|c| c.clone()).unwrap_or_default()
}

#[async_trait]
impl<P: PublishTransport> PublishTransport for TimedPublisher<P> {
    fn source(&self) -> Option<&str> {
        self.inner.source()
    }

    fn exchange(&self) -> Option<&str> {
        self.inner.exchange()
    }

    async fn send(&self, batch: PublishBatch) -> Vec<Result<(), PublishError>> {
        let ids: Option<Vec<String>> = self
            .confirmed
            .as_ref()
            .map(|_| batch.messages().iter().map(|m| m.id().to_owned()).collect());
        let started = Instant::now();
        let n = batch.len();
        let results = self.inner.send(batch).await;
        self.probe.publish.add(started, n);
        if let (Some(ids), Some(confirmed)) = (ids, &self.confirmed) {
            let now = Instant::now();
            if let Ok(mut confirmed) = confirmed.lock() {
                for (id, result) in ids.into_iter().zip(&results) {
                    if result.is_ok() {
                        let sent = Sent {
                            handed: started,
                            confirmed: now,
                        };
                        confirmed.insert(id, sent);
                    }
                }
            }
        }
        results
    }
}

/// An inbox whose lookups and records are timed.
pub struct TimedInbox<I> {
    inner: I,
    lookup: Clock,
    record: Clock,
}

impl<I> TimedInbox<I> {
    /// Wraps `inner`.
    pub fn new(inner: I) -> Arc<Self> {
        Arc::new(Self {
            inner,
            lookup: Clock::default(),
            record: Clock::default(),
        })
    }

    /// µs per lookup and per record.
    pub fn breakdown(&self) -> Breakdown {
        let us = Duration::from_micros(1);
        Breakdown::from([
            ("lookups", self.lookup.calls() as f64),
            ("lookup_us", self.lookup.mean(us)),
            ("record_us", self.record.mean(us)),
        ])
    }
}

#[async_trait]
impl<I: Inbox> Inbox for TimedInbox<I> {
    async fn is_processed(&self, consumer: &str, message_id: &str) -> Result<bool, InboxError> {
        let started = Instant::now();
        let seen = self.inner.is_processed(consumer, message_id).await;
        self.lookup.add(started, 1);
        seen
    }

    async fn mark_processed(&self, consumer: &str, message_id: &str) -> Result<bool, InboxError> {
        let started = Instant::now();
        let marked = self.inner.mark_processed(consumer, message_id).await;
        self.record.add(started, 1);
        marked
    }
}
