//! The operator's side of the outbox: listing rows, retrying dead ones, retention.

use crate::statement;
use std::time::Duration;

use ferry_core::{OutboxError, OutboxRow, OutboxStatus, outbox::RetryOutcome};

use super::{SqlOutbox, rows};
use crate::{db_error, dialect::Dialect};

impl<D: Dialect> SqlOutbox<D> {
    /// Rows, newest first, optionally only those with `status`; at most `limit`.
    pub async fn list(
        &self,
        status: Option<OutboxStatus>,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, OutboxError> {
        let found = statement::list::<D>(
            self.pool(),
            status.map(OutboxStatus::as_str),
            i64::from(limit),
        )
        .await
        .map_err(db_error)?;
        found.iter().map(rows::listed::<D>).collect()
    }

    /// One row, if there is one with that id.
    pub async fn row(&self, id: &str) -> Result<Option<OutboxRow>, OutboxError> {
        let found = statement::row::<D>(self.pool(), id)
            .await
            .map_err(db_error)?;
        found.as_ref().map(rows::listed::<D>).transpose()
    }

    /// Brings a dead (or backing-off pending) row back: pending, attempts reset, due now; and
    /// wakes the relays. [`OutboxError::NotFound`] when no row has that id.
    pub async fn retry(&self, id: &str) -> Result<RetryOutcome, OutboxError> {
        if statement::retry::<D>(self.pool(), id)
            .await
            .map_err(db_error)?
        {
            self.notify_relays().await?;
            tracing::info!(id, "outbox row retried");
            return Ok(RetryOutcome::Retried);
        }
        match self.row(id).await? {
            Some(_) => Ok(RetryOutcome::AlreadyPublished),
            None => Err(OutboxError::NotFound(id.to_owned())),
        }
    }

    /// Brings every dead row back (see [`SqlOutbox::retry`]); returns their ids.
    pub async fn retry_all_dead(&self) -> Result<Vec<String>, OutboxError> {
        let ids = statement::retry_all_dead::<D>(self.pool())
            .await
            .map_err(db_error)?;
        if !ids.is_empty() {
            self.notify_relays().await?;
            tracing::info!(rows = ids.len(), "dead outbox rows retried");
        }
        Ok(ids)
    }

    /// Deletes published rows older than the retention (default 7 days), in batches of
    /// `cleanup_batch` rows so no statement holds many locks; returns how many it deleted.
    /// Pending and dead rows are never deleted. Call it periodically (e.g. hourly).
    pub async fn cleanup(&self) -> Result<u64, OutboxError> {
        self.cleanup_older_than(self.options().retention).await
    }

    /// Deletes published rows published more than `age` ago (see [`SqlOutbox::cleanup`]).
    pub async fn cleanup_older_than(&self, age: Duration) -> Result<u64, OutboxError> {
        let batch = i64::from(self.options().cleanup_batch.max(1));
        let mut total = 0;
        loop {
            let deleted = statement::delete_published::<D>(self.pool(), age, batch)
                .await
                .map_err(db_error)?;
            total += deleted;
            if deleted < batch as u64 {
                break;
            }
        }
        if total > 0 {
            tracing::info!(rows = total, "deleted published outbox rows past retention");
        }
        Ok(total)
    }
}
