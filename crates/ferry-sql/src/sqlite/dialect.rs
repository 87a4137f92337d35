//! [`Dialect`] for SQLite: one writer at a time, so claims are one `UPDATE … RETURNING` with a
//! lease and transactions begin `IMMEDIATE`; relays are woken in this process; times are
//! milliseconds since the Unix epoch.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry_core::{NewOutboxRow, OutboxFailure, OutboxStats, outbox::OutboxOptions};
use sqlx::{Executor, Row, SqliteConnection, SqlitePool, sqlite::SqliteRow, types::Json};
use tokio_util::sync::CancellationToken;

use super::{Sqlite, schema, sql, wakeup};
use crate::{
    dialect::{Dialect, Migration, Tx},
    wakeup::Wakeup,
};

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// Milliseconds since the Unix epoch, now.
pub(super) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// A list of ids as the JSON array `json_each` reads.
fn json_ids(ids: &[String]) -> String {
    serde_json::Value::from(ids.to_vec()).to_string()
}

#[async_trait]
impl Dialect for Sqlite {
    type Db = sqlx::Sqlite;

    const NAME: &'static str = "SQLite";
    const HANDS_OFF: bool = false;
    const WAKES_ON_ADD: bool = true;
    const GROUPS_INBOX_CALLS: bool = false;
    const MIGRATE_HINT: &'static str = "check that the database file is writable";
    const MIGRATIONS: &'static [Migration] = schema::MIGRATIONS;
    const HISTORY_TABLE: &'static str = schema::HISTORY_TABLE;

    async fn begin(pool: &SqlitePool) -> Result<Tx<Self>, sqlx::Error> {
        pool.begin_with("BEGIN IMMEDIATE").await
    }

    fn wakeup(pool: &SqlitePool) -> Arc<Wakeup> {
        wakeup::for_pool(pool)
    }

    fn listen(_wakeup: &Arc<Wakeup>, _pool: &SqlitePool, _stop: CancellationToken) {}

    async fn notify_relays(_pool: &SqlitePool, wakeup: &Wakeup) -> Result<(), sqlx::Error> {
        wakeup.bump();
        Ok(())
    }

    async fn begin_migrations(pool: &SqlitePool) -> Result<Tx<Self>, sqlx::Error> {
        pool.begin_with("BEGIN IMMEDIATE").await
    }

    async fn run_script(conn: &mut SqliteConnection, sql: &'static str) -> Result<(), sqlx::Error> {
        conn.execute(sql).await?;
        Ok(())
    }

    async fn applied_versions(conn: &mut SqliteConnection) -> Result<Vec<i64>, sqlx::Error> {
        sqlx::query_scalar("SELECT version FROM ferry_migrations")
            .fetch_all(conn)
            .await
    }

    async fn record_migration(
        conn: &mut SqliteConnection,
        migration: &Migration,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(sql::RECORD_MIGRATION)
            .bind(migration.version)
            .bind(migration.description)
            .bind(now_ms())
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn insert(
        conn: &mut SqliteConnection,
        row: &NewOutboxRow,
        leased: Option<(Duration, &str)>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(sql::INSERT)
            .bind(&row.id)
            .bind(&row.event_type)
            .bind(&row.exchange)
            .bind(&row.routing_key)
            .bind(row.properties.to_string())
            .bind(row.headers.to_string())
            .bind(&row.body)
            .bind(&row.partition_key)
            .bind(now_ms())
            .bind(leased.map(|(lease, _)| millis(lease)))
            .bind(leased.map(|(_, relay)| relay))
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn claim(
        pool: &SqlitePool,
        limit: i64,
        lease: Duration,
        relay: &str,
    ) -> Result<Vec<SqliteRow>, sqlx::Error> {
        sqlx::query(sql::CLAIM)
            .bind(now_ms())
            .bind(millis(lease))
            .bind(relay)
            .bind(limit)
            .fetch_all(pool)
            .await
    }

    async fn mark_published(pool: &SqlitePool, ids: &[String]) -> Result<(), sqlx::Error> {
        sqlx::query(sql::MARK_PUBLISHED)
            .bind(json_ids(ids))
            .bind(now_ms())
            .execute(pool)
            .await?;
        Ok(())
    }

    async fn mark_failed(
        pool: &SqlitePool,
        failures: &[OutboxFailure],
        options: &OutboxOptions,
        relay: &str,
    ) -> Result<Vec<String>, sqlx::Error> {
        // One transaction for the batch, a statement a row.
        let max_attempts = i64::from(options.max_attempts.max(1));
        let now = now_ms();
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut dead = Vec::new();
        for failure in failures {
            let status: Option<String> = sqlx::query_scalar(sql::MARK_FAILED)
                .bind(&failure.id)
                .bind(ferry_core::outbox::stored_error(&failure.error))
                .bind(max_attempts)
                .bind(now)
                .bind(millis(options.base_backoff))
                .bind(millis(options.max_backoff))
                .bind(relay)
                .fetch_optional(&mut *tx)
                .await?;
            if status.as_deref() == Some("dead") {
                dead.push(failure.id.clone());
            }
        }
        tx.commit().await?;
        Ok(dead)
    }

    async fn release(pool: &SqlitePool, ids: &[String], relay: &str) -> Result<(), sqlx::Error> {
        sqlx::query(sql::RELEASE)
            .bind(json_ids(ids))
            .bind(relay)
            .execute(pool)
            .await?;
        Ok(())
    }

    async fn stats(pool: &SqlitePool) -> Result<OutboxStats, sqlx::Error> {
        let row = sqlx::query(sql::STATS).fetch_one(pool).await?;
        let count = |name: &str| -> Result<u64, sqlx::Error> {
            let n: i64 = row.try_get(name)?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        let oldest: Option<i64> = row.try_get("oldest_pending")?;
        Ok(OutboxStats {
            pending: count("pending")?,
            published: count("published")?,
            dead: count("dead")?,
            oldest_pending_age_s: oldest
                .map(|created| ((now_ms() - created) as f64 / 1000.0).max(0.0)),
        })
    }

    async fn list(
        pool: &SqlitePool,
        status: Option<&'static str>,
        limit: i64,
    ) -> Result<Vec<SqliteRow>, sqlx::Error> {
        let sql = format!(
            "SELECT {} FROM ferry_outbox \
             WHERE (?1 IS NULL OR status = ?1) ORDER BY seq DESC LIMIT ?2",
            sql::ROW_COLUMNS
        );
        sqlx::query(&sql)
            .bind(status)
            .bind(limit)
            .fetch_all(pool)
            .await
    }

    async fn row(pool: &SqlitePool, id: &str) -> Result<Option<SqliteRow>, sqlx::Error> {
        let sql = format!(
            "SELECT {} FROM ferry_outbox WHERE id = ?1",
            sql::ROW_COLUMNS
        );
        sqlx::query(&sql).bind(id).fetch_optional(pool).await
    }

    async fn retry(pool: &SqlitePool, id: &str) -> Result<bool, sqlx::Error> {
        let retried: Option<String> = sqlx::query_scalar(sql::RETRY)
            .bind(id)
            .bind(now_ms())
            .fetch_optional(pool)
            .await?;
        Ok(retried.is_some())
    }

    async fn retry_all_dead(pool: &SqlitePool) -> Result<Vec<String>, sqlx::Error> {
        let mut rows: Vec<(i64, String)> = sqlx::query_as(sql::RETRY_ALL_DEAD)
            .bind(now_ms())
            .fetch_all(pool)
            .await?;
        // RETURNING has no order.
        rows.sort_unstable();
        Ok(rows.into_iter().map(|(_, id)| id).collect())
    }

    async fn delete_published(
        pool: &SqlitePool,
        age: Duration,
        batch: i64,
    ) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(sql::DELETE_PUBLISHED)
            .bind(now_ms() - millis(age))
            .bind(batch)
            .execute(pool)
            .await?
            .rows_affected())
    }

    async fn insert_inbox(
        conn: &mut SqliteConnection,
        consumer: &str,
        message_id: &str,
    ) -> Result<bool, sqlx::Error> {
        let inserted = sqlx::query(sql::INSERT_INBOX)
            .bind(consumer)
            .bind(message_id)
            .bind(now_ms())
            .execute(conn)
            .await?
            .rows_affected();
        Ok(inserted == 1)
    }

    async fn inbox_contains(
        pool: &SqlitePool,
        consumer: &str,
        message_id: &str,
    ) -> Result<bool, sqlx::Error> {
        let found: Option<i64> = sqlx::query_scalar(sql::INBOX_CONTAINS)
            .bind(consumer)
            .bind(message_id)
            .fetch_optional(pool)
            .await?;
        Ok(found.is_some())
    }

    async fn inbox_lookup_group(
        _pool: &SqlitePool,
        _consumers: &[&str],
        _ids: &[&str],
    ) -> Result<Vec<(String, String)>, sqlx::Error> {
        // GROUPS_INBOX_CALLS is false: never called.
        Ok(Vec::new())
    }

    async fn inbox_record_group(
        _pool: &SqlitePool,
        _consumers: &[&str],
        _ids: &[&str],
    ) -> Result<Vec<(String, String)>, sqlx::Error> {
        Ok(Vec::new())
    }

    async fn delete_inbox(
        pool: &SqlitePool,
        age: Duration,
        batch: i64,
    ) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(sql::DELETE_INBOX)
            .bind(now_ms() - millis(age))
            .bind(batch)
            .execute(pool)
            .await?
            .rows_affected())
    }

    fn text(row: &SqliteRow, column: &str) -> Result<Option<String>, sqlx::Error> {
        row.try_get(column)
    }

    fn int(row: &SqliteRow, column: &str) -> Result<Option<i64>, sqlx::Error> {
        row.try_get(column)
    }

    fn bytes(row: &SqliteRow, column: &str) -> Result<Vec<u8>, sqlx::Error> {
        row.try_get(column)
    }

    fn json(row: &SqliteRow, column: &str) -> Result<serde_json::Value, sqlx::Error> {
        // JSON is stored as text.
        row.try_get::<Json<serde_json::Value>, _>(column)
            .map(|json| json.0)
    }

    fn time(row: &SqliteRow, column: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        let ms: Option<i64> = row.try_get(column)?;
        Ok(ms.map(|ms| DateTime::from_timestamp_millis(ms).unwrap_or_default()))
    }
}
