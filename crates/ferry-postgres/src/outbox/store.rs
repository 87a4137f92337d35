//! The relay's side of the PostgreSQL outbox: claims with `FOR UPDATE SKIP LOCKED` and a lease,
//! batch marks, backoff, notifications.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry_core::{OutboxError, OutboxFailure, OutboxMessage, OutboxStats, OutboxStore};
use sqlx::Row;

use super::PgOutbox;
use crate::db_error;

// The relay's own bookkeeping (claims, marks) commits with `synchronous_commit = off`, set
// for that statement's transaction only: it does not wait for the WAL flush. A database crash
// may forget the last few claims or marks; the rows are then published again, which
// at-least-once delivery allows (the inbox makes it harmless), and an event added by the
// application is never lost: its transaction keeps the application's own durability.

/// Claims due rows in order, skipping rows other relays are claiming (`SKIP LOCKED`), and
/// leases them. A row with a partition key is taken only if every earlier pending row of its
/// partition is taken in the same statement: an earlier row that is leased, backing off, or
/// being claimed by another relay (skipped) holds the partition back.
const CLAIM: &str = "
WITH candidates AS MATERIALIZED (
    SELECT seq, partition_key FROM ferry_outbox
    WHERE status = 'pending'
      AND next_attempt_at <= now()
      AND (locked_until IS NULL OR locked_until <= now())
    ORDER BY seq
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), claimable AS (
    SELECT c.seq FROM candidates c
    WHERE c.partition_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM ferry_outbox e
        WHERE e.partition_key = c.partition_key
          AND e.status = 'pending'
          AND e.seq < c.seq
          AND NOT EXISTS (SELECT 1 FROM candidates c2 WHERE c2.seq = e.seq)
    )
)
UPDATE ferry_outbox o
SET locked_until = now() + $2 * interval '1 millisecond', locked_by = $3
FROM claimable
WHERE o.seq = claimable.seq
  AND (SELECT set_config('synchronous_commit', 'off', true)) IS NOT NULL
RETURNING o.seq, o.id, o.exchange, o.routing_key, o.properties, o.headers, o.body,
          o.attempts, o.partition_key, o.created_at";

/// One statement for the batch; a row published after another relay took it over (its lease
/// expired) is still published.
const MARK_PUBLISHED: &str = "
UPDATE ferry_outbox
SET status = 'published', published_at = now(), locked_until = NULL, locked_by = NULL
WHERE id = ANY($1) AND status <> 'published'
  AND (SELECT set_config('synchronous_commit', 'off', true)) IS NOT NULL";

/// Raises attempts, backs off `base * 2^(attempts - 1)` capped at `max`, and marks rows past
/// `max_attempts` dead. Only rows this relay still holds.
const MARK_FAILED: &str = "
UPDATE ferry_outbox o
SET attempts = o.attempts + 1,
    last_error = f.error,
    status = CASE WHEN o.attempts + 1 >= $3 THEN 'dead' ELSE 'pending' END,
    next_attempt_at = now() + least($4::float8 * power(2::float8, least(o.attempts, 40)), $5::float8)
                              * interval '1 millisecond',
    locked_until = NULL,
    locked_by = NULL
FROM unnest($1::text[], $2::text[]) AS f(id, error)
WHERE o.id = f.id AND o.status = 'pending' AND o.locked_by = $6
RETURNING o.id, o.status";

const RELEASE: &str = "
UPDATE ferry_outbox SET locked_until = NULL, locked_by = NULL
WHERE id = ANY($1) AND status = 'pending' AND locked_by = $2";

const STATS: &str = "
SELECT
    (SELECT count(*) FROM ferry_outbox WHERE status = 'pending') AS pending,
    (SELECT count(*) FROM ferry_outbox WHERE status = 'published') AS published,
    (SELECT count(*) FROM ferry_outbox WHERE status = 'dead') AS dead,
    (SELECT EXTRACT(EPOCH FROM now() - created_at)::float8 FROM ferry_outbox
     WHERE status = 'pending' ORDER BY seq LIMIT 1) AS oldest_pending_age_s";

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[async_trait]
impl OutboxStore for PgOutbox {
    async fn claim(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxMessage>, OutboxError> {
        self.wakeup().claim_started();
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
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        let rows = sqlx::query(CLAIM)
            .bind(limit)
            .bind(millis(lease))
            .bind(self.relay_id())
            .fetch_all(self.pool())
            .await
            .map_err(db_error)?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            let seq: i64 = row.try_get("seq").map_err(db_error)?;
            let id: String = row.try_get("id").map_err(db_error)?;
            let message = ferry_core::outbox::decode_message(
                &id,
                row.try_get("exchange").map_err(db_error)?,
                row.try_get("routing_key").map_err(db_error)?,
                row.try_get("properties").map_err(db_error)?,
                row.try_get("headers").map_err(db_error)?,
                row.try_get("body").map_err(db_error)?,
            )?;
            let attempts: i32 = row.try_get("attempts").map_err(db_error)?;
            let created_at: DateTime<Utc> = row.try_get("created_at").map_err(db_error)?;
            claimed.push((
                seq,
                OutboxMessage {
                    id,
                    message,
                    attempts: u32::try_from(attempts).unwrap_or(0),
                    partition_key: row.try_get("partition_key").map_err(db_error)?,
                    created_at,
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
            .bind(ids)
            .execute(self.pool())
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn mark_failed(&self, failures: &[OutboxFailure]) -> Result<(), OutboxError> {
        if failures.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = failures.iter().map(|f| f.id.as_str()).collect();
        let errors: Vec<String> = failures
            .iter()
            .map(|f| ferry_core::outbox::stored_error(&f.error))
            .collect();
        let options = self.options();
        let max_attempts = i32::try_from(options.max_attempts.max(1)).unwrap_or(i32::MAX);
        let marked: Vec<(String, String)> = sqlx::query_as(MARK_FAILED)
            .bind(&ids)
            .bind(&errors)
            .bind(max_attempts)
            .bind(millis(options.base_backoff))
            .bind(millis(options.max_backoff))
            .bind(self.relay_id())
            .fetch_all(self.pool())
            .await
            .map_err(db_error)?;
        let dead: Vec<String> = marked
            .into_iter()
            .filter(|(_, status)| status == "dead")
            .map(|(id, _)| id)
            .collect();
        ferry_core::outbox::report_dead(&dead, max_attempts as u32);
        Ok(())
    }

    async fn release(&self, ids: &[String]) -> Result<(), OutboxError> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query(RELEASE)
            .bind(ids)
            .bind(self.relay_id())
            .execute(self.pool())
            .await
            .map_err(db_error)?;
        Ok(())
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
        let row = sqlx::query(STATS)
            .fetch_one(self.pool())
            .await
            .map_err(db_error)?;
        let count = |name: &str| -> Result<u64, OutboxError> {
            let n: i64 = row.try_get(name).map_err(db_error)?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        Ok(OutboxStats {
            pending: count("pending")?,
            published: count("published")?,
            dead: count("dead")?,
            oldest_pending_age_s: row
                .try_get::<Option<f64>, _>("oldest_pending_age_s")
                .map_err(db_error)?
                .map(|age| age.max(0.0)),
        })
    }
}
