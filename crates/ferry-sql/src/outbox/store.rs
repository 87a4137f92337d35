//! The relay's side of the outbox: claims with a lease (rows handed over at commit first),
//! batch marks, backoff, wake-ups. The statements are the dialect's.

use crate::statement;
use std::time::Duration;

use async_trait::async_trait;
use ferry_core::{ClaimedOutboxRow, OutboxError, OutboxFailure, OutboxStats, OutboxStore};

use super::{SqlOutbox, rows};
use crate::{db_error, dialect::Dialect};

#[async_trait]
impl<D: Dialect> OutboxStore for SqlOutbox<D> {
    async fn claim(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedOutboxRow>, OutboxError> {
        self.wakeup().claim_started();
        if D::HANDS_OFF {
            let handed = self.handoff().take(limit.max(1), lease);
            if !handed.stale.is_empty() {
                tracing::debug!(
                    rows = handed.stale.len(),
                    "rows handed over at commit waited too long; their lease goes back to the table"
                );
                self.release(&handed.stale).await?;
            }
            if !handed.rows.is_empty() {
                tracing::debug!(
                    rows = handed.rows.len(),
                    "took outbox rows handed over at commit"
                );
                return Ok(handed.rows);
            }
        }
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        let found = statement::claim::<D>(self.pool(), limit, lease, self.relay_id())
            .await
            .map_err(db_error)?;
        let mut claimed = found
            .iter()
            .map(rows::claimed::<D>)
            .collect::<Result<Vec<_>, _>>()?;
        // RETURNING has no order: put the batch back in the order rows were added.
        claimed.sort_unstable_by_key(|(seq, _)| *seq);
        if !claimed.is_empty() {
            tracing::debug!(rows = claimed.len(), "claimed outbox rows");
        }
        Ok(claimed.into_iter().map(|(_, m)| m).collect())
    }

    async fn mark_published(&self, ids: &[String]) -> Result<(), OutboxError> {
        if ids.is_empty() {
            return Ok(());
        }
        statement::mark_published::<D>(self.pool(), ids)
            .await
            .map_err(db_error)
    }

    async fn mark_failed(&self, failures: &[OutboxFailure]) -> Result<(), OutboxError> {
        if failures.is_empty() {
            return Ok(());
        }
        let options = self.options();
        let dead = D::mark_failed(self.pool(), failures, options, self.relay_id())
            .await
            .map_err(db_error)?;
        ferry_core::outbox::report_dead(&dead, options.max_attempts.max(1));
        Ok(())
    }

    async fn release(&self, ids: &[String]) -> Result<(), OutboxError> {
        if ids.is_empty() {
            return Ok(());
        }
        statement::release::<D>(self.pool(), ids, self.relay_id())
            .await
            .map_err(db_error)
    }

    async fn wait_for_rows(&self, timeout: Duration) {
        self.listen();
        self.wakeup().wait(timeout).await;
    }

    async fn remove_expired(&self) -> Result<u64, OutboxError> {
        self.cleanup().await
    }

    async fn relay_stopped(&self) {
        let waiting = self.handoff().stop();
        self.give_back(&waiting).await;
    }

    async fn stats(&self) -> Result<OutboxStats, OutboxError> {
        D::stats(self.pool()).await.map_err(db_error)
    }
}
