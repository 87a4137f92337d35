//! The operator's side of the PostgreSQL outbox: listing rows, retrying dead ones, retention.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_core::{OutboxError, OutboxStatus};
use sqlx::{Row, postgres::PgRow};

use ferry_core::outbox::RetryOutcome;

use super::PgOutbox;
use crate::{OutboxRow, db_error};

const ROW_COLUMNS: &str = "id, seq, status, attempts, last_error, event_type, exchange, \
    routing_key, partition_key, created_at, next_attempt_at, published_at, locked_until, \
    octet_length(body)::int8 AS body_bytes";

fn to_row(row: &PgRow) -> Result<OutboxRow, OutboxError> {
    let status: String = row.try_get("status").map_err(db_error)?;
    let attempts: i32 = row.try_get("attempts").map_err(db_error)?;
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
        created_at: row
            .try_get::<DateTime<Utc>, _>("created_at")
            .map_err(db_error)?,
        next_attempt_at: row.try_get("next_attempt_at").map_err(db_error)?,
        published_at: row.try_get("published_at").map_err(db_error)?,
        locked_until: row.try_get("locked_until").map_err(db_error)?,
        body_bytes: row.try_get("body_bytes").map_err(db_error)?,
    })
}

impl PgOutbox {
    /// Rows, newest first, optionally only those with `status`; at most `limit`.
    pub async fn list(
        &self,
        status: Option<OutboxStatus>,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, OutboxError> {
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM ferry_outbox \
             WHERE ($1::text IS NULL OR status = $1) ORDER BY seq DESC LIMIT $2"
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
        let sql = format!("SELECT {ROW_COLUMNS} FROM ferry_outbox WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(db_error)?;
        row.as_ref().map(to_row).transpose()
    }

    /// Brings a dead (or backing-off pending) row back: pending, attempts reset, due now; and
    /// wakes the relays. [`OutboxError::NotFound`] when no row has that id.
    pub async fn retry(&self, id: &str) -> Result<RetryOutcome, OutboxError> {
        let retried: Option<String> = sqlx::query_scalar(
            "WITH retried AS (
                UPDATE ferry_outbox
                SET status = 'pending', attempts = 0, next_attempt_at = now(),
                    locked_until = CASE WHEN status = 'dead' THEN NULL ELSE locked_until END,
                    locked_by = CASE WHEN status = 'dead' THEN NULL ELSE locked_by END
                WHERE id = $1 AND status IN ('dead', 'pending')
                RETURNING id
            )
            SELECT id FROM retried",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(db_error)?;
        if retried.is_some() {
            self.notify_relays().await?;
            tracing::info!(id, "outbox row retried");
            return Ok(RetryOutcome::Retried);
        }
        match self.row(id).await? {
            Some(_) => Ok(RetryOutcome::AlreadyPublished),
            None => Err(OutboxError::NotFound(id.to_owned())),
        }
    }

    /// Brings every dead row back (see [`PgOutbox::retry`]); returns their ids.
    pub async fn retry_all_dead(&self) -> Result<Vec<String>, OutboxError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "WITH retried AS (
                UPDATE ferry_outbox
                SET status = 'pending', attempts = 0, next_attempt_at = now(),
                    locked_until = NULL, locked_by = NULL
                WHERE status = 'dead'
                RETURNING id, seq
            )
            SELECT id FROM retried ORDER BY seq",
        )
        .fetch_all(self.pool())
        .await
        .map_err(db_error)?;
        if !ids.is_empty() {
            self.notify_relays().await?;
            tracing::info!(rows = ids.len(), "dead outbox rows retried");
        }
        Ok(ids)
    }

    /// Wakes every relay listening on this database (`NOTIFY ferry_outbox`).
    pub async fn notify_relays(&self) -> Result<(), OutboxError> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(crate::NOTIFY_CHANNEL)
            .execute(self.pool())
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Deletes published rows older than the retention (default 7 days), in batches of
    /// `cleanup_batch` rows so no statement holds many locks; returns how many it deleted.
    /// Pending and dead rows are never deleted. Call it periodically (e.g. hourly).
    pub async fn cleanup(&self) -> Result<u64, OutboxError> {
        self.cleanup_older_than(self.options().retention).await
    }

    /// Deletes published rows published more than `age` ago (see [`PgOutbox::cleanup`]).
    pub async fn cleanup_older_than(&self, age: Duration) -> Result<u64, OutboxError> {
        let batch = i64::from(self.options().cleanup_batch.max(1));
        let mut total = 0;
        loop {
            let deleted = sqlx::query(
                "DELETE FROM ferry_outbox WHERE id IN (
                    SELECT id FROM ferry_outbox
                    WHERE status = 'published'
                      AND published_at < now() - $1 * interval '1 millisecond'
                    LIMIT $2
                )",
            )
            .bind(age.as_secs_f64() * 1000.0)
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
