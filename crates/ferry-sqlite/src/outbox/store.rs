//! The relay's side of the SQLite outbox: claims with a lease in one `UPDATE … RETURNING`,
//! batch marks, backoff.

use std::time::Duration;

use async_trait::async_trait;
use ferry_core::{OutboxError, OutboxFailure, OutboxMessage, OutboxStats, OutboxStore};
use sqlx::Row;

use super::SqliteOutbox;
use crate::{db_error, from_ms, now_ms};

/// Claims due rows in order and leases them. A row with a partition key is taken only if no
/// earlier pending row of its partition is leased or waiting for its next attempt (SQLite has
/// one writer at a time, so the statement sees every claim made before it).
const CLAIM: &str = "
UPDATE ferry_outbox
SET locked_until = ?1 + ?2, locked_by = ?3
WHERE seq IN (
    SELECT o.seq FROM ferry_outbox o
    WHERE o.status = 'pending'
      AND o.next_attempt_at <= ?1
      AND (o.locked_until IS NULL OR o.locked_until <= ?1)
      AND (o.partition_key IS NULL OR NOT EXISTS (
          SELECT 1 FROM ferry_outbox e
          WHERE e.partition_key = o.partition_key
            AND e.status = 'pending'
            AND e.seq < o.seq
            AND (e.next_attempt_at > ?1 OR (e.locked_until IS NOT NULL AND e.locked_until > ?1))
      ))
    ORDER BY o.seq
    LIMIT ?4
)
RETURNING seq, id, exchange, routing_key, properties, headers, body, attempts,
          partition_key, created_at";

const MARK_PUBLISHED: &str = "
UPDATE ferry_outbox
SET status = 'published', published_at = ?2, locked_until = NULL, locked_by = NULL
WHERE id IN (SELECT value FROM json_each(?1)) AND status <> 'published'";

/// Raises attempts, backs off `base * 2^(attempts - 1)` capped at `max`, and marks rows past
/// `max_attempts` dead. Only a row this relay still holds.
const MARK_FAILED: &str = "
UPDATE ferry_outbox
SET attempts = attempts + 1,
    last_error = ?2,
    status = CASE WHEN attempts + 1 >= ?3 THEN 'dead' ELSE 'pending' END,
    next_attempt_at = ?4 + min(?5 * (1 << min(attempts, 30)), ?6),
    locked_until = NULL,
    locked_by = NULL
WHERE id = ?1 AND status = 'pending' AND locked_by = ?7
RETURNING status";

const RELEASE: &str = "
UPDATE ferry_outbox SET locked_until = NULL, locked_by = NULL
WHERE id IN (SELECT value FROM json_each(?1)) AND status = 'pending' AND locked_by = ?2";

const STATS: &str = "
SELECT
    (SELECT count(*) FROM ferry_outbox WHERE status = 'pending') AS pending,
    (SELECT count(*) FROM ferry_outbox WHERE status = 'published') AS published,
    (SELECT count(*) FROM ferry_outbox WHERE status = 'dead') AS dead,
    (SELECT created_at FROM ferry_outbox WHERE status = 'pending' ORDER BY seq LIMIT 1)
        AS oldest_pending";

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

fn json_ids(ids: &[String]) -> Result<String, OutboxError> {
    serde_json::to_string(ids).map_err(|e| OutboxError::Database(e.to_string()))
}

fn parse_json(id: &str, what: &str, text: &str) -> Result<serde_json::Value, OutboxError> {
    serde_json::from_str(text)
        .map_err(|e| OutboxError::Database(format!("outbox row `{id}` has unreadable {what}: {e}")))
}

#[async_trait]
impl OutboxStore for SqliteOutbox {
    async fn claim(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxMessage>, OutboxError> {
        self.wakeup.claim_started();
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        let rows = sqlx::query(CLAIM)
            .bind(now_ms())
            .bind(millis(lease))
            .bind(self.relay_id())
            .bind(limit)
            .fetch_all(self.pool())
            .await
            .map_err(db_error)?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            let seq: i64 = row.try_get("seq").map_err(db_error)?;
            let id: String = row.try_get("id").map_err(db_error)?;
            let properties: String = row.try_get("properties").map_err(db_error)?;
            let headers: String = row.try_get("headers").map_err(db_error)?;
            let message = ferry_core::outbox::decode_message(
                &id,
                row.try_get("exchange").map_err(db_error)?,
                row.try_get("routing_key").map_err(db_error)?,
                parse_json(&id, "properties", &properties)?,
                parse_json(&id, "headers", &headers)?,
                row.try_get("body").map_err(db_error)?,
            )?;
            let attempts: i64 = row.try_get("attempts").map_err(db_error)?;
            let created_at: i64 = row.try_get("created_at").map_err(db_error)?;
            claimed.push((
                seq,
                OutboxMessage {
                    id,
                    message,
                    attempts: u32::try_from(attempts).unwrap_or(0),
                    partition_key: row.try_get("partition_key").map_err(db_error)?,
                    created_at: from_ms(created_at),
                },
            ));
        }
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
        sqlx::query(MARK_PUBLISHED)
            .bind(json_ids(ids)?)
            .bind(now_ms())
            .execute(self.pool())
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn mark_failed(&self, failures: &[OutboxFailure]) -> Result<(), OutboxError> {
        if failures.is_empty() {
            return Ok(());
        }
        let options = self.options();
        let max_attempts = i64::from(options.max_attempts.max(1));
        let now = now_ms();
        let mut tx = self
            .pool()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        let mut dead = Vec::new();
        for failure in failures {
            let status: Option<String> = sqlx::query_scalar(MARK_FAILED)
                .bind(&failure.id)
                .bind(ferry_core::outbox::stored_error(&failure.error))
                .bind(max_attempts)
                .bind(now)
                .bind(millis(options.base_backoff))
                .bind(millis(options.max_backoff))
                .bind(self.relay_id())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
            if status.as_deref() == Some("dead") {
                dead.push(failure.id.as_str());
            }
        }
        tx.commit().await.map_err(db_error)?;
        ferry_core::outbox::report_dead(&dead, max_attempts as u32);
        Ok(())
    }

    async fn release(&self, ids: &[String]) -> Result<(), OutboxError> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query(RELEASE)
            .bind(json_ids(ids)?)
            .bind(self.relay_id())
            .execute(self.pool())
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn wait_for_rows(&self, timeout: Duration) {
        self.wakeup.wait(timeout).await;
    }

    async fn remove_expired(&self) -> Result<u64, OutboxError> {
        self.cleanup().await
    }

    async fn stats(&self) -> Result<OutboxStats, OutboxError> {
        let row = sqlx::query(STATS)
            .fetch_one(self.pool())
            .await
            .map_err(db_error)?;
        let count = |name: &str| -> Result<u64, OutboxError> {
            let n: i64 = row.try_get(name).map_err(db_error)?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        let oldest: Option<i64> = row.try_get("oldest_pending").map_err(db_error)?;
        Ok(OutboxStats {
            pending: count("pending")?,
            published: count("published")?,
            dead: count("dead")?,
            oldest_pending_age_s: oldest
                .map(|created| ((now_ms() - created) as f64 / 1000.0).max(0.0)),
        })
    }
}
