//! The outbox relay: claims pending rows, publishes them with confirms, marks them.

mod batch;
mod in_flight;

use std::{
    pin::Pin,
    time::{Duration, Instant},
};

use std::sync::Arc;

use futures::future::OptionFuture;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::{ClaimedOutboxRow, OutboxError, OutboxStore, Publisher, telemetry::metric};
use in_flight::InFlight;

/// How the relay runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayOptions {
    /// Rows claimed and published per batch (default 500: a batch's claim and its marks are
    /// a round trip each to the database, whatever its size, so small batches spend more of
    /// their time there).
    pub batch_size: usize,
    /// How long a claim holds its rows at most (default 30 s); a relay that dies leaves them
    /// for another once it expires (sooner with a store whose claims end with the relay's
    /// connection, as PostgreSQL's do).
    pub lease: Duration,
    /// The fallback poll interval when no notification comes (default 1 s).
    pub poll_interval: Duration,
    /// The first pause after the broker or the database failed (default 100 ms); it doubles
    /// up to `max_backoff`.
    pub min_backoff: Duration,
    /// The longest pause (default 30 s).
    pub max_backoff: Duration,
    /// How often the relay samples the outbox for the `ferry_outbox_pending` and
    /// `ferry_outbox_oldest_pending_age_seconds` gauges (default 5 s).
    pub stats_interval: Duration,
    /// How often the relay deletes published rows past the store's retention
    /// ([`OutboxStore::remove_expired`]; default 10 min, the first time soon after it starts).
    pub cleanup_interval: Duration,
    /// Batches unconfirmed at once (default 2: while the broker confirms one batch, the next
    /// is sent). One more batch is claimed meanwhile, ready to go the moment one is confirmed,
    /// and confirmed batches are marked while the next ones publish, so the broker always has
    /// work. Each batch takes one of the publisher's confirm channels while it publishes, so
    /// more batches than channels only queue.
    pub batches_in_flight: usize,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            batch_size: 500,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            stats_interval: Duration::from_secs(5),
            cleanup_interval: Duration::from_secs(600),
            batches_in_flight: 2,
        }
    }
}

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayBatch {
    /// Rows claimed.
    pub claimed: usize,
    /// Rows published and marked.
    pub published: usize,
    /// Rows whose publish failed (attempts raised).
    pub failed: usize,
    /// Rows given back because the broker was unavailable.
    pub released: usize,
}

/// Why a relay batch failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The outbox store failed.
    #[error(transparent)]
    Store(#[from] OutboxError),
}

/// Moves events from an [`OutboxStore`] to a [`Publisher`]: the seed's `OutboxProcessor`,
/// woken by notifications rather than polling every 5 s, and safe with many instances.
///
/// ```no_run
/// # use ferry_core::{OutboxRelay, OutboxStore, Publisher, CancellationToken};
/// # async fn demo(store: impl OutboxStore + 'static, publisher: impl Publisher + 'static) {
/// let shutdown = CancellationToken::new();
/// let relay = tokio::spawn(OutboxRelay::new(store, publisher).run(shutdown.clone()));
/// // … on shutdown:
/// shutdown.cancel();
/// relay.await.ok();
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct OutboxRelay<S, P> {
    store: S,
    publisher: P,
    options: RelayOptions,
}

impl<S: OutboxStore, P: Publisher> OutboxRelay<S, P> {
    /// A relay with the default options.
    pub fn new(store: S, publisher: P) -> Self {
        Self {
            store,
            publisher,
            options: RelayOptions::default(),
        }
    }

    /// Sets the options.
    pub fn with_options(mut self, options: RelayOptions) -> Self {
        self.options = options;
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Claims one batch, publishes it and marks the rows.
    pub async fn run_once(&self) -> Result<RelayBatch, RelayError> {
        let started = Instant::now();
        let rows = self.claim().await?;
        self.relay_rows(rows, started, None).await
    }

    async fn claim(&self) -> Result<Vec<ClaimedOutboxRow>, OutboxError> {
        self.store
            .claim(self.options.batch_size, self.options.lease)
            .await
    }

    /// Publishes until no row is due (or the store fails); returns the rows published. Up to
    /// [`RelayOptions::batches_in_flight`] batches are unconfirmed at once, the next one
    /// claimed meanwhile. A failed batch stops the claims; the batches already in flight are
    /// finished before the error is returned.
    pub async fn drain(&self) -> Result<usize, RelayError> {
        let mut in_flight = InFlight::new(self.options);
        let mut claim = None;
        let mut total = 0;
        let mut exhausted = false;
        let mut failed: Option<RelayError> = None;
        loop {
            if claim.is_none() && failed.is_none() && !exhausted && in_flight.may_claim() {
                claim = Some(Box::pin(self.timed_claim()));
            }
            if claim.is_none() && in_flight.is_empty() {
                break;
            }
            tokio::select! {
                Some((claimed_at, rows)) = OptionFuture::from(claim.as_mut()) => {
                    claim = None;
                    match rows {
                        Ok(rows) if rows.is_empty() => exhausted = true,
                        Ok(rows) => {
                            let publishing = in_flight.publishing();
                            in_flight.start(self.relay_claimed(rows, claimed_at, publishing));
                        }
                        Err(e) => failed = Some(e.into()),
                    }
                }
                Some(result) = in_flight.next() => match result {
                    // A batch none of whose rows went out (the broker unavailable, every
                    // publish failing): what is left is not due now.
                    Ok(batch) if batch.published == 0 => exhausted = true,
                    Ok(batch) => total += batch.published,
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                },
            }
        }
        failed.map_or(Ok(total), Err)
    }

    /// Runs until `shutdown` is cancelled; the batches in flight are finished first.
    ///
    /// Up to [`RelayOptions::batches_in_flight`] batches are unconfirmed at once, one more is
    /// claimed meanwhile, and confirmed batches are marked while the next ones publish. When
    /// a claim finds nothing, the relay waits for the store's notification (or the poll
    /// interval) or for a batch to finish, then claims again. When the broker is unavailable
    /// or the store fails, the relay finishes the batches in flight and backs off.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), RelayError> {
        tracing::info!("outbox relay started");
        let mut backoff = self.options.min_backoff;
        // The first sample comes before the first claim (nothing is in flight yet), so the
        // gauges show the outbox as the relay found it; later ones run beside the batches.
        self.sample_stats().await;
        let mut last_stats = Instant::now();
        // The first retention pass comes a few seconds after the start, not with it.
        let mut last_cleanup = Instant::now()
            .checked_sub(
                self.options
                    .cleanup_interval
                    .saturating_sub(Duration::from_secs(5)),
            )
            .unwrap_or_else(Instant::now);
        let mut in_flight = InFlight::new(self.options);
        // Everything runs in this one task, so that the batches in flight keep going while
        // the relay claims, waits or samples: the claim and the housekeeping are futures
        // polled beside the batches in flight, never awaited on their own.
        let mut claim = None;
        let mut chores: Option<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = None;
        // The last claim found nothing: wait for news before claiming again. A finished batch
        // counts as news, since rows committed meanwhile may have notified no one (not every
        // store remembers a notification nobody waited for).
        let mut idle = false;
        let mut pause = false;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            if pause {
                // Let the claim in progress and the batches in flight finish (the claim's rows
                // go back at once), then back off.
                chores = None;
                self.settle(claim.take(), &mut in_flight, backoff).await;
                backoff = self.pause(&shutdown, backoff).await;
                pause = false;
                idle = false;
                continue;
            }
            if chores.is_none() {
                if last_stats.elapsed() >= self.options.stats_interval {
                    last_stats = Instant::now();
                    chores = Some(Box::pin(self.sample_stats()));
                } else if last_cleanup.elapsed() >= self.options.cleanup_interval {
                    last_cleanup = Instant::now();
                    chores = Some(Box::pin(self.remove_expired()));
                }
            }
            if claim.is_none() && !idle && in_flight.may_claim() {
                claim = Some(Box::pin(self.timed_claim()));
            }
            let wait_for_rows = idle && claim.is_none() && in_flight.may_claim();
            tokio::select! {
                _ = shutdown.cancelled() => {}
                Some((claimed_at, rows)) = OptionFuture::from(claim.as_mut()) => {
                    claim = None;
                    match rows {
                        Ok(rows) if rows.is_empty() => idle = true,
                        Ok(rows) => {
                            let publishing = in_flight.publishing();
                            in_flight.start(self.relay_claimed(rows, claimed_at, publishing));
                        }
                        Err(e) => {
                            tracing::error!(error = &e as &dyn std::error::Error, backoff_ms = backoff.as_millis() as u64, "outbox relay claim failed");
                            pause = true;
                        }
                    }
                }
                Some(result) = in_flight.next() => {
                    idle = false;
                    if self.log_outcome(result, backoff) {
                        pause = true;
                    } else {
                        backoff = self.options.min_backoff;
                    }
                }
                Some(()) = OptionFuture::from(chores.as_mut()) => chores = None,
                _ = self.store.wait_for_rows(self.options.poll_interval), if wait_for_rows => {
                    idle = false;
                }
            }
        }
        // Stopping: rows being claimed go back at once; the batches in flight are finished.
        drop(chores);
        self.settle(claim.take(), &mut in_flight, backoff).await;
        self.store.relay_stopped().await;
        tracing::info!("outbox relay stopped");
        Ok(())
    }

    /// Finishes the claim in progress (giving its rows back) and the batches in flight, all
    /// at once: a claim waiting for a database connection must not wait on batches that hold
    /// the connections but are not being polled.
    async fn settle<C, F>(
        &self,
        claim: Option<Pin<Box<C>>>,
        in_flight: &mut InFlight<F>,
        backoff: Duration,
    ) where
        C: Future<Output = (Instant, Result<Vec<ClaimedOutboxRow>, OutboxError>)>,
        F: Future<Output = in_flight::Finished>,
    {
        let claimed = async {
            if let Some(claim) = claim {
                if let (_, Ok(rows)) = claim.await {
                    self.give_back(rows).await;
                }
            }
        };
        tokio::join!(claimed, in_flight.finish(|r| self.log_outcome(r, backoff)));
    }

    /// Claims a batch; returns when the claim started (the rows' lease counts from then, at
    /// the latest) with the rows.
    async fn timed_claim(&self) -> (Instant, Result<Vec<ClaimedOutboxRow>, OutboxError>) {
        let started = Instant::now();
        (started, self.claim().await)
    }

    /// Gives claimed rows back at once (rather than when their lease expires).
    async fn give_back(&self, rows: Vec<ClaimedOutboxRow>) {
        if rows.is_empty() {
            return;
        }
        let ids: Vec<String> = rows.into_iter().map(|r| r.id).collect();
        if let Err(e) = self.store.release(&ids).await {
            tracing::warn!(
                error = &e as &dyn std::error::Error,
                rows = ids.len(),
                "could not give back claimed rows; they return when their lease expires"
            );
        }
    }

    /// Relays rows claimed by a claim that started at `claimed_at` (their lease counts from
    /// then, at the latest).
    fn relay_claimed(
        &self,
        rows: Vec<ClaimedOutboxRow>,
        claimed_at: Instant,
        publishing: Arc<Semaphore>,
    ) -> (Instant, impl Future<Output = in_flight::Finished> + '_) {
        (claimed_at, async move {
            (
                claimed_at,
                self.relay_rows(rows, claimed_at, Some(publishing)).await,
            )
        })
    }

    /// Logs a finished batch; returns whether the relay should pause (the broker unavailable,
    /// or the store failing).
    fn log_outcome(&self, result: Result<RelayBatch, RelayError>, backoff: Duration) -> bool {
        match result {
            Ok(batch) if batch.released > 0 => {
                tracing::warn!(
                    released = batch.released,
                    backoff_ms = backoff.as_millis() as u64,
                    "broker unavailable; outbox rows stay pending"
                );
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::error!(
                    error = &e as &dyn std::error::Error,
                    backoff_ms = backoff.as_millis() as u64,
                    "outbox relay batch failed"
                );
                true
            }
        }
    }

    /// Waits `backoff` (or until shutdown); returns the next, doubled, backoff.
    async fn pause(&self, shutdown: &CancellationToken, backoff: Duration) -> Duration {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(backoff) => {}
        }
        (backoff * 2).min(self.options.max_backoff)
    }

    async fn remove_expired(&self) {
        match self.store.remove_expired().await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "removed published outbox rows past retention"),
            Err(e) => {
                tracing::warn!(
                    error = &e as &dyn std::error::Error,
                    "could not remove published outbox rows past retention"
                )
            }
        }
    }

    async fn sample_stats(&self) {
        match self.store.stats().await {
            Ok(stats) => metric::record_outbox_stats(&stats),
            Err(e) => tracing::debug!(
                error = &e as &dyn std::error::Error,
                "could not sample outbox stats"
            ),
        }
    }
}
