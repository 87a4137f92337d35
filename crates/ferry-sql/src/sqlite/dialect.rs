//! [`Dialect`] for SQLite: one writer at a time, so claims are one `UPDATE … RETURNING` with a
//! lease and transactions begin `IMMEDIATE`; relays are woken in this process; times are
//! milliseconds since the Unix epoch.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry_core::{OutboxFailure, OutboxStats, outbox::OutboxOptions};
use sqlx::{Row, SqliteConnection, SqlitePool, sqlite::SqliteRow, types::Json};
use tokio_util::sync::CancellationToken;

use super::{Sqlite, schema, sql, wakeup};
use crate::{
    dialect::{Arg, Dialect, HeldClaim, Migration, Statements, Tx, run_statements},
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

/// Binds an argument as SQLite stores it: JSON and lists of ids as JSON text, spans of time
/// as whole milliseconds.
fn bind<'q>(query: SqliteQuery<'q>, arg: &Arg<'q>) -> SqliteQuery<'q> {
    match *arg {
        Arg::Text(text) => query.bind(text),
        Arg::OptText(text) => query.bind(text),
        Arg::Int(n) => query.bind(n),
        Arg::Bytes(bytes) => query.bind(bytes),
        Arg::Json(json) => query.bind(json.to_string()),
        Arg::Ids(ids) => query.bind(json_ids(ids)),
        Arg::Millis(span) => query.bind(span.map(millis)),
        Arg::Time(at) => query.bind(at.timestamp_millis()),
    }
}

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

#[async_trait]
impl Dialect for Sqlite {
    type Db = sqlx::Sqlite;

    const NAME: &'static str = "SQLite";
    const HANDS_OFF: bool = false;
    // One writer at a time: a claim's transaction held open across the publish would hold
    // the application's writes back, so claims lease their rows.
    const HELD_CLAIM: Option<&'static HeldClaim> = None;
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

    const SQL: &'static Statements = &sql::STATEMENTS;

    run_statements!(SqliteConnection, SqliteRow, bind);

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

    async fn mark_failed_held(
        _conn: &mut SqliteConnection,
        _failures: &[OutboxFailure],
        _options: &OutboxOptions,
    ) -> Result<Vec<String>, sqlx::Error> {
        Err(sqlx::Error::Protocol(
            "SQLite claims lease their rows: no claim holds them by locks".into(),
        ))
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
