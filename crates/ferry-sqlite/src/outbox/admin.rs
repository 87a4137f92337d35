//! The operator's side of the SQLite outbox: listing rows, retrying dead ones, retention.

use std::time::Duration;

use ferry_core::{OutboxError, OutboxStatus};
use sqlx::{Row, sqlite::SqliteRow};

use ferry_core::outbox::RetryOutcome;

use super::SqliteOutbox;
use crate::{OutboxRow, db_error, from_ms, now_ms};

const ROW_COLUMNS: &str = "id, seq, status, attempts, last_error, event_type, exchange, \
    routing_key, partition_key, created_at, next_attempt_at, published_at, locked_until, \
    length(body) AS body_bytes";

fn to_row(row: &SqliteRow) -> Result<OutboxRow, OutboxError> {
    let status: String = row.try_get("status").map_err(db_error)?;
    let attempts: i64 = row.try_get("attempts").map_err(db_error)?;
    let time = |name: &str| -> Result<Option<chrono::DateTime<chrono::Utc>>, OutboxError> {
        let ms: Option<i64> = row.try_get(name).map_err(db_error)?;
        Ok(ms.map(from_ms))
    };
    Ok(OutboxRow {
        id: row.try_get("id").map_err(db_error)?,
        seq: row.try_get("seq").map_err(db_error)?,
        status: status.parse()?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        last_error: row.try_get("last_error").map_err(db_error)?,
        event_type: row
            .try_get::<Option<String>, _>("event_type")
            .map_err(db_error)?
            .unwrap_or_default(),
        exchange: row.try_get("exchange").map_err(db_error)?,
        routing_key: row.try_get("routing_key").map_err(db_error)?,
        partition_key: row.try_get("partition_key").map_err(db_error)?,
        created_at: time("created_at")?.unwrap_or_default(),
        next_attempt_at: time("next_attempt_at")?.unwrap_or_default(),
        published_at: time("published_at")?,
        locked_until: time("locked_until")?,
        body_bytes: row.try_get("body_bytes").map_err(db_error)?,
    })
}

impl SqliteOutbox {
    /// Rows, newest first, optionally only those with `status`; at most `limit`.
    pub async fn list(
        &self,
        status: Option<OutboxStatus>,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, OutboxError> {
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM ferry_outbox \
             WHERE (?1 IS NULL OR status = ?1) ORDER BY seq DESC LIMIT ?2"
        );
        let rows = sqlx::query(&sql)
            .bind(status.map(OutboxStatus::as_str))
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await
            .map_err(db_error)?;
        rows.iter().map(to_row).collect()
    }

    /// One row, if there is one with that id.
    pub async fn row(&self, id: &str) -> Result<Option<OutboxRow>, OutboxError> {
        let sql = format!("SELECT {ROW_COLUMNS} FROM ferry_outbox WHERE id = ?1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(db_error)?;
        row.as_ref().map(to_row).transpose()
    }

    /// Brings a dead (or backing-off pending) row back: pending, attempts reset, due now; and
    /// wakes the relays of this process. [`OutboxError::NotFound`] when no row has that id.
    pub async fn retry(&self, id: &str) -> Result<RetryOutcome, OutboxError> {
        let retried: Option<String> = sqlx::query_scalar(
            "UPDATE ferry_outbox
             SET status = 'pending', attempts = 0, next_attempt_at = ?2,
                 locked_until = CASE WHEN status = 'dead' THEN NULL ELSE locked_until END,
                 locked_by = CASE WHEN status = 'dead' THEN NULL ELSE locked_by END
             WHERE id = ?1 AND status IN ('dead', 'pending')
             RETURNING id",
        )
        .bind(id)
        .bind(now_ms())
        .fetch_optional(self.pool())
        .await
        .map_err(db_error)?;
        if retried.is_some() {
            self.notify();
            tracing::info!(id, "outbox row retried");
            return Ok(RetryOutcome::Retried);
        }
        match self.row(id).await? {
            Some(_) => Ok(RetryOutcome::AlreadyPublished),
            None => Err(OutboxError::NotFound(id.to_owned())),
        }
    }

    /// Brings every dead row back (see [`SqliteOutbox::retry`]); returns their ids.
    pub async fn retry_all_dead(&self) -> Result<Vec<String>, OutboxError> {
        let mut rows: Vec<(i64, String)> = sqlx::query_as(
            "UPDATE ferry_outbox
             SET status = 'pending', attempts = 0, next_attempt_at = ?1,
                 locked_until = NULL, locked_by = NULL
             WHERE status = 'dead'
             RETURNING seq, id",
        )
        .bind(now_ms())
        .fetch_all(self.pool())
        .await
        .map_err(db_error)?;
        rows.sort_unstable();
        if !rows.is_empty() {
            self.notify();
            tracing::info!(rows = rows.len(), "dead outbox rows retried");
        }
        Ok(rows.into_iter().map(|(_, id)| id).collect())
    }

    /// Deletes published rows older than the retention (default 7 days), in batches of
    /// `cleanup_batch` rows so no statement holds the write lock long; returns how many it
    /// deleted. Pending and dead rows are never deleted. Call it periodically (e.g. hourly).
    pub async fn cleanup(&self) -> Result<u64, OutboxError> {
        self.cleanup_older_than(self.options().retention).await
    }

    /// Deletes published rows published more than `age` ago (see [`SqliteOutbox::cleanup`]).
    pub async fn cleanup_older_than(&self, age: Duration) -> Result<u64, OutboxError> {
        let batch = i64::from(self.options().cleanup_batch.max(1));
        let cutoff = now_ms() - i64::try_from(age.as_millis()).unwrap_or(i64::MAX / 4);
        let mut total = 0;
        loop {
            let deleted = sqlx::query(
                "DELETE FROM ferry_outbox WHERE id IN (
                    SELECT id FROM ferry_outbox
                    WHERE status = 'published' AND published_at < ?1
                    LIMIT ?2
                )",
            )
            .bind(cutoff)
            .bind(batch)
            .execute(self.pool())
            .await
            .map_err(db_error)?
            .rows_affected();
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
