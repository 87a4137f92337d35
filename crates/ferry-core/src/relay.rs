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

/// A batch that is published (or not) but not yet marked.
struct Published {
    claimed: usize,
    published: Vec<String>,
    failures: Vec<OutboxFailure>,
    released: Vec<String>,
    started: Instant,
    span: tracing::Span,
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

    /// Publishes `rows` while, at the same time, the next batch is claimed and the previous
    /// one (published already) is marked: the database works on the claim and the marks while
    /// the broker confirms this batch. The rows claimed ahead are leased like any claim; the
    /// store's claim rules (a partition's later rows wait for its earlier pending ones) hold
    /// whatever the timing, and a batch is claimed only after every row of the batch before it
    /// was published, so a partition's rows still go out in order.
    async fn step(
        &self,
        rows: Vec<OutboxMessage>,
        previous: Option<Published>,
    ) -> (
        Published,
        Result<Vec<OutboxMessage>, OutboxError>,
        Option<Result<RelayBatch, RelayError>>,
    ) {
        let started = Instant::now();
        let settle_previous = async {
            match previous {
                Some(p) => Some(self.settle(p).await),
                None => None,
            }
        };
        tokio::join!(
            self.publish_rows(rows, started),
            self.claim(),
            settle_previous
        )
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

    /// Marks a batch that is published, logging a failure (for paths that already fail).
    async fn settle_logged(&self, published: Published) {
        if let Err(e) = self.settle(published).await {
            tracing::error!(error = %e, "could not mark a published batch; its rows are published again when their lease expires");
        }
    }

    /// Publishes claimed rows and marks them.
    async fn relay_rows(
        &self,
        rows: Vec<OutboxMessage>,
        started: Instant,
    ) -> Result<RelayBatch, RelayError> {
        let published = self.publish_rows(rows, started).await;
        self.settle(published).await
    }

    /// Publishes claimed rows and sorts the outcomes (marks come later, in [`settle`]).
    ///
    /// [`settle`]: Self::settle
    async fn publish_rows(&self, rows: Vec<OutboxMessage>, started: Instant) -> Published {
        let mut outcome = Published {
            claimed: rows.len(),
            published: Vec::new(),
            failures: Vec::new(),
            released: Vec::new(),
            started,
            span: tracing::Span::none(),
        };
        if rows.is_empty() {
            return outcome;
        }
        outcome.span = {
            let messages: Vec<_> = rows.iter().map(|r| &r.message).collect();
            telemetry::relay_batch_span(&messages)
        };
        let span = outcome.span.clone();
        async {
            let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
            let messages = rows.into_iter().map(|r| r.message).collect();
            let results = self.publisher.publish_messages(messages).await;
            outcome.published.reserve(ids.len());
            for (id, result) in ids.into_iter().zip(results) {
                match result {
                    Ok(()) => outcome.published.push(id),
                    Err(e) if e.is_unavailable() => outcome.released.push(id),
                    Err(e) => {
                        tracing::warn!(id = %id, error = %e, "outbox row failed to publish");
                        outcome.failures.push(OutboxFailure {
                            id,
                            error: e.to_string(),
                        });
                    }
                }
            }
            outcome
        }
        .instrument(span)
        .await
    }

    /// Marks a published batch: published rows in one statement, failed rows with their
    /// attempts raised, rows the broker could not take given back.
    async fn settle(&self, outcome: Published) -> Result<RelayBatch, RelayError> {
        let batch = RelayBatch {
            claimed: outcome.claimed,
            published: outcome.published.len(),
            failed: outcome.failures.len(),
            released: outcome.released.len(),
        };
        if batch.claimed == 0 {
            return Ok(batch);
        }
        let span = outcome.span.clone();
        async {
            if !outcome.published.is_empty() {
                self.store.mark_published(&outcome.published).await?;
                metric::record_published(outcome.published.len());
            }
            if !outcome.failures.is_empty() {
                self.store.mark_failed(&outcome.failures).await?;
            }
            if !outcome.released.is_empty() {
                self.store.release(&outcome.released).await?;
            }
            metric::record_relay_batch_duration(outcome.started.elapsed());
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

    /// Publishes until no row is due (or the store fails); returns the rows published. Each
    /// batch is published while the next is claimed and the previous is marked.
    pub async fn drain(&self) -> Result<usize, RelayError> {
        let mut total = 0;
        let mut rows = self.claim().await?;
        let mut previous: Option<Published> = None;
        while !rows.is_empty() {
            let (published, ahead, settled) = self.step(rows, previous.take()).await;
            match settled {
                Some(Ok(batch)) => total += batch.published,
                Some(Err(e)) => {
                    self.settle_logged(published).await;
                    if let Ok(ahead) = ahead {
                        self.give_back(ahead).await;
                    }
                    return Err(e);
                }
                None => {}
            }
            let ahead = match ahead {
                Ok(ahead) => ahead,
                Err(e) => {
                    self.settle_logged(published).await;
                    return Err(e.into());
                }
            };
            if published.published.is_empty() {
                self.give_back(ahead).await;
                self.settle(published).await?;
                return Ok(total);
            }
            previous = Some(published);
            rows = ahead;
        }
        if let Some(published) = previous {
            total += self.settle(published).await?.published;
        }
        Ok(total)
    }

    /// Runs until `shutdown` is cancelled; the batch in hand is finished (and marked) first.
    /// Each batch is published while the next is claimed and the previous is marked; rows
    /// claimed ahead are given back when the relay pauses or stops.
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
        let mut ahead: Option<Vec<OutboxMessage>> = None;
        // The last batch published, to be marked with the next step (or before waiting).
        let mut previous: Option<Published> = None;
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
                Some(rows) => rows,
                None => match self.claim().await {
                    Ok(rows) => rows,
                    Err(e) => {
                        if let Some(published) = previous.take() {
                            self.settle_logged(published).await;
                        }
                        tracing::error!(error = %e, backoff_ms = backoff.as_millis() as u64, "outbox relay batch failed");
                        backoff = self.pause(&shutdown, backoff).await;
                        continue;
                    }
                },
            };
            if rows.is_empty() {
                if let Some(published) = previous.take() {
                    if let Err(e) = self.settle(published).await {
                        tracing::error!(error = %e, backoff_ms = backoff.as_millis() as u64, "outbox relay batch failed");
                        backoff = self.pause(&shutdown, backoff).await;
                        continue;
                    }
                }
                backoff = self.options.min_backoff;
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = self.store.wait_for_rows(self.options.poll_interval) => {}
                }
                continue;
            }
            let (published, next, settled) = self.step(rows, previous.take()).await;
            let mut pause = false;
            if let Some(Err(e)) = settled {
                tracing::error!(error = %e, backoff_ms = backoff.as_millis() as u64, "outbox relay batch failed");
                pause = true;
            }
            if !published.released.is_empty() {
                tracing::warn!(
                    released = published.released.len(),
                    backoff_ms = backoff.as_millis() as u64,
                    "broker unavailable; outbox rows stay pending"
                );
                pause = true;
            }
            match next {
                Ok(next) if !pause => ahead = (!next.is_empty()).then_some(next),
                Ok(next) => self.give_back(next).await,
                Err(e) => {
                    tracing::error!(error = %e, backoff_ms = backoff.as_millis() as u64, "outbox relay claim failed");
                    pause = true;
                }
            }
            if pause {
                if let Err(e) = self.settle(published).await {
                    tracing::error!(error = %e, "outbox relay batch failed");
                }
                backoff = self.pause(&shutdown, backoff).await;
            } else {
                backoff = self.options.min_backoff;
                previous = Some(published);
            }
        }
        if let Some(published) = previous {
            self.settle_logged(published).await;
        }
        if let Some(rows) = ahead {
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
