//! One batch: publish the claimed rows, then mark each as the broker answered.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::Semaphore;
use tracing::Instrument;

use super::{OutboxRelay, RelayBatch, RelayError};
use crate::{
    ClaimedOutboxRow, OutboxError, OutboxFailure, OutboxStore, Publisher,
    telemetry::{self, metric},
};

impl<S: OutboxStore, P: Publisher> OutboxRelay<S, P> {
    /// Publishes claimed rows and marks them. With `publishing`, the publish waits for one of
    /// its permits (the batches that may be unconfirmed at once) and gives it back when the
    /// broker has answered, before the marks.
    pub(super) async fn relay_rows(
        &self,
        rows: Vec<ClaimedOutboxRow>,
        started: Instant,
        publishing: Option<Arc<Semaphore>>,
    ) -> Result<RelayBatch, RelayError> {
        let mut batch = RelayBatch {
            claimed: rows.len(),
            ..RelayBatch::default()
        };
        if rows.is_empty() {
            return Ok(batch);
        }
        let span = telemetry::relay_batch_span(rows.len());
        async {
            let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
            let messages = rows.into_iter().map(|r| r.message).collect();
            let permit = match &publishing {
                Some(publishing) => publishing.acquire().await.ok(),
                None => None,
            };
            let results = self.publisher.publish_messages(messages).await;
            drop(permit);
            let mut published = Vec::with_capacity(ids.len());
            let mut failures = Vec::new();
            let mut released = Vec::new();
            for (id, result) in ids.into_iter().zip(results) {
                match result {
                    Ok(()) => published.push(id),
                    Err(e) if e.is_unavailable() => released.push(id),
                    Err(e) => {
                        let error = crate::publisher::error_chain(&e);
                        tracing::warn!(id = %id, error = %error, "outbox row failed to publish");
                        failures.push(OutboxFailure { id, error });
                    }
                }
            }
            // Every row of the batch is settled, even when one call fails: a store that holds
            // the claim open (row locks) ends it only once each of its rows has been named.
            let mut settled = Ok(());
            if !published.is_empty() {
                settled = self.mark_published(&published, started).await;
            }
            if !failures.is_empty() {
                let marked = self.store.mark_failed(&failures).await;
                settled = settled.and(marked);
            }
            if !released.is_empty() {
                let given_back = self.store.release(&released).await;
                settled = settled.and(given_back);
            }
            settled?;
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
                    tracing::warn!(
                        error = &e as &dyn std::error::Error,
                        rows = ids.len(),
                        retry_ms = pause.as_millis() as u64,
                        "could not mark confirmed rows published; trying again"
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(self.options.max_backoff);
                }
                Err(e) => return Err(e),
            }
        }
    }
}
