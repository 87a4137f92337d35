//! The outbox relay: claims pending rows, publishes them with confirms, marks them.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    OutboxError, OutboxFailure, OutboxMessage, OutboxStore, Publisher,
    telemetry::{self, metric},
};

/// How the relay runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayOptions {
    /// Rows claimed and published per batch (default 500: a batch's claim and its marks are
    /// a round trip each to the database, whatever its size, so small batches spend more of
    /// their time there).
    pub batch_size: usize,
    /// How long a claim holds its rows (default 30 s); a relay that dies leaves them for
    /// another once it expires.
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
        self.relay_rows(rows, started).await
    }

    async fn claim(&self) -> Result<Vec<OutboxMessage>, OutboxError> {
        self.store
            .claim(self.options.batch_size, self.options.lease)
            .await
    }

    /// Relays `rows` and, at the same time, claims the next batch: the database works on the
    /// next claim while the broker confirms this batch. The rows claimed ahead are leased like
    /// any claim (from the returned instant); the store's claim rules (a partition's later rows
    /// wait for its earlier pending ones) hold whatever the timing.
    async fn relay_and_claim_ahead(
        &self,
        rows: Vec<OutboxMessage>,
    ) -> (
        Result<RelayBatch, RelayError>,
        Result<Vec<OutboxMessage>, OutboxError>,
        Instant,
    ) {
        let started = Instant::now();
        let (batch, ahead) = tokio::join!(self.relay_rows(rows, started), self.claim());
        (batch, ahead, started)
    }

    /// Whether rows claimed at `claimed_at` still have at least half their lease. Rows claimed
    /// ahead wait for the batch before them; if that batch was slow (a broker blocking
    /// publishes), their lease may be running out, and the next claim, made while they are
    /// being published, would take them again: they are given back and claimed afresh instead.
    fn lease_fresh(&self, claimed_at: Instant) -> bool {
        claimed_at.elapsed() < self.options.lease / 2
    }

    /// Rows claimed ahead at `claimed_at`, if their lease is still fresh; otherwise they are
    /// given back (see [`Self::lease_fresh`]) and `None` says to claim afresh.
    async fn fresh_or_give_back(
        &self,
        rows: Vec<OutboxMessage>,
        claimed_at: Instant,
    ) -> Option<Vec<OutboxMessage>> {
        if self.lease_fresh(claimed_at) {
            return Some(rows);
        }
        tracing::debug!(
            rows = rows.len(),
            "rows claimed ahead are past half their lease; claiming afresh"
        );
        self.give_back(rows).await;
        None
    }

    /// Gives rows claimed ahead back at once (rather than when their lease expires).
    async fn give_back(&self, rows: Vec<OutboxMessage>) {
        if rows.is_empty() {
            return;
        }
        let ids: Vec<String> = rows.into_iter().map(|r| r.id).collect();
        if let Err(e) = self.store.release(&ids).await {
            tracing::warn!(error = %e, rows = ids.len(), "could not give back rows claimed ahead; they return when their lease expires");
        }
    }

    /// Publishes claimed rows and marks them.
    async fn relay_rows(
        &self,
        rows: Vec<OutboxMessage>,
        started: Instant,
    ) -> Result<RelayBatch, RelayError> {
        let mut batch = RelayBatch {
            claimed: rows.len(),
            ..RelayBatch::default()
        };
        if rows.is_empty() {
            return Ok(batch);
        }
        let span = {
            let messages: Vec<_> = rows.iter().map(|r| &r.message).collect();
            telemetry::relay_batch_span(&messages)
        };
        async {
            let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
            let messages = rows.into_iter().map(|r| r.message).collect();
            let results = self.publisher.publish_messages(messages).await;
            let mut published = Vec::with_capacity(ids.len());
            let mut failures = Vec::new();
            let mut released = Vec::new();
            for (id, result) in ids.into_iter().zip(results) {
                match result {
                    Ok(()) => published.push(id),
                    Err(e) if e.is_unavailable() => released.push(id),
                    Err(e) => {
                        tracing::warn!(id = %id, error = %e, "outbox row failed to publish");
                        failures.push(OutboxFailure {
                            id,
                            error: e.to_string(),
                        });
                    }
                }
            }
            if !published.is_empty() {
                self.mark_published(&published, started).await?;
                metric::record_published(published.len());
            }
            if !failures.is_empty() {
                self.store.mark_failed(&failures).await?;
            }
            if !released.is_empty() {
                self.store.release(&released).await?;
            }
            batch.published = published.len();
            batch.failed = failures.len();
            batch.released = released.len();
            metric::record_relay_batch_duration(started.elapsed());
            let span = tracing::Span::current();
            span.record("ferry.published", batch.published);
            span.record("ferry.failed", batch.failed);
            span.record("ferry.released", batch.released);
            if batch.published < batch.claimed {
                telemetry::record_error(
                    &span,
                    "publish",
                    &format!(
                        "{} of {} rows not published",
                        batch.claimed - batch.published,
                        batch.claimed
                    ),
                );
            }
            Ok(batch)
        }
        .instrument(span)
        .await
    }

    /// Marks rows the broker confirmed. A failed mark (the database restarting) is tried again,
    /// backing off, while the claim's lease lasts (until half of it has passed since the batch
    /// started, rows claimed ahead having at least half of theirs left): given up, the rows
    /// would be published a second time once their lease expires.
    async fn mark_published(&self, ids: &[String], started: Instant) -> Result<(), OutboxError> {
        let mut pause = self.options.min_backoff.max(Duration::from_millis(10));
        loop {
            match self.store.mark_published(ids).await {
                Ok(()) => return Ok(()),
                Err(e) if started.elapsed() + pause < self.options.lease / 2 => {
                    tracing::warn!(error = %e, rows = ids.len(), retry_ms = pause.as_millis() as u64, "could not mark confirmed rows published; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(self.options.max_backoff);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Publishes until no row is due (or the store fails); returns the rows published. Each
    /// batch's claim runs while the previous batch is being published.
    pub async fn drain(&self) -> Result<usize, RelayError> {
        let mut total = 0;
        let mut rows = self.claim().await?;
        while !rows.is_empty() {
            let (batch, ahead, claimed_at) = self.relay_and_claim_ahead(rows).await;
            let batch = match batch {
                Ok(batch) => batch,
                Err(e) => {
                    if let Ok(ahead) = ahead {
                        self.give_back(ahead).await;
                    }
                    return Err(e);
                }
            };
            total += batch.published;
            let ahead = ahead?;
            if batch.published == 0 {
                self.give_back(ahead).await;
                break;
            }
            rows = match self.fresh_or_give_back(ahead, claimed_at).await {
                Some(rows) => rows,
                None => self.claim().await?,
            };
        }
        Ok(total)
    }

    /// Runs until `shutdown` is cancelled; the batch in hand is finished first. Each batch's
    /// claim runs while the previous batch is being published; rows claimed ahead are given
    /// back when the relay pauses or stops.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), RelayError> {
        tracing::info!("outbox relay started");
        let mut backoff = self.options.min_backoff;
        let mut last_stats: Option<Instant> = None;
        // The first retention pass comes a few seconds after the start, not with it.
        let mut last_cleanup = Instant::now()
            .checked_sub(
                self.options
                    .cleanup_interval
                    .saturating_sub(Duration::from_secs(5)),
            )
            .unwrap_or_else(Instant::now);
        // Rows claimed while the previous batch was published. When that claim found nothing,
        // the relay claims once more before it waits: rows committed during the batch may have
        // notified no one (not every store remembers a notification nobody waited for).
        let mut ahead: Option<(Vec<OutboxMessage>, Instant)> = None;
        while !shutdown.is_cancelled() {
            if last_stats.is_none_or(|t| t.elapsed() >= self.options.stats_interval) {
                last_stats = Some(Instant::now());
                self.sample_stats().await;
            }
            if last_cleanup.elapsed() >= self.options.cleanup_interval {
                last_cleanup = Instant::now();
                self.remove_expired().await;
            }
            let rows = match ahead.take() {
                Some((rows, claimed_at)) => match self.fresh_or_give_back(rows, claimed_at).await {
                    Some(rows) => rows,
                    None => continue,
                },
                None => match self.claim().await {
                    Ok(rows) => rows,
                    Err(e) => {
                        tracing::error!(error = %e, backoff_ms = backoff.as_millis() as u64, "outbox relay batch failed");
                        backoff = self.pause(&shutdown, backoff).await;
                        continue;
                    }
                },
            };
            if rows.is_empty() {
                backoff = self.options.min_backoff;
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = self.store.wait_for_rows(self.options.poll_interval) => {}
                }
                continue;
            }
            let (batch, next, claimed_at) = self.relay_and_claim_ahead(rows).await;
            let mut pause = match batch {
                Ok(batch) if batch.released > 0 => {
                    tracing::warn!(
                        released = batch.released,
                        backoff_ms = backoff.as_millis() as u64,
                        "broker unavailable; outbox rows stay pending"
                    );
                    true
                }
                Ok(_) => {
                    backoff = self.options.min_backoff;
                    false
                }
                Err(e) => {
                    tracing::error!(error = %e, backoff_ms = backoff.as_millis() as u64, "outbox relay batch failed");
                    true
                }
            };
            match next {
                Ok(next) if !pause => ahead = (!next.is_empty()).then_some((next, claimed_at)),
                Ok(next) => self.give_back(next).await,
                Err(e) => {
                    tracing::error!(error = %e, backoff_ms = backoff.as_millis() as u64, "outbox relay claim failed");
                    pause = true;
                }
            }
            if pause {
                backoff = self.pause(&shutdown, backoff).await;
            }
        }
        if let Some((rows, _)) = ahead {
            self.give_back(rows).await;
        }
        tracing::info!("outbox relay stopped");
        Ok(())
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
                tracing::warn!(error = %e, "could not remove published outbox rows past retention")
            }
        }
    }

    async fn sample_stats(&self) {
        match self.store.stats().await {
            Ok(stats) => metric::record_outbox_stats(&stats),
            Err(e) => tracing::debug!(error = %e, "could not sample outbox stats"),
        }
    }
}
