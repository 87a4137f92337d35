//! [`Dialect`] for PostgreSQL: claims with `FOR UPDATE SKIP LOCKED`, `LISTEN/NOTIFY` wake-ups,
//! rows handed to the relay at commit, grouped inbox calls, an advisory lock for migrations.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry_core::{OutboxFailure, OutboxStats, outbox::OutboxOptions};
use sqlx::{PgConnection, PgPool, Row, postgres::PgRow};
use tokio_util::sync::CancellationToken;

use super::{NOTIFY_CHANNEL, Postgres, listen, schema, sql};
use crate::{
    dialect::{Arg, Dialect, HeldClaim, Migration, Statements, Tx, run_statements},
    wakeup::Wakeup,
};

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Binds an argument as PostgreSQL stores it.
fn bind<'q>(query: PgQuery<'q>, arg: &Arg<'q>) -> PgQuery<'q> {
    match *arg {
        Arg::Text(text) => query.bind(text),
        Arg::OptText(text) => query.bind(text),
        Arg::Int(n) => query.bind(n),
        Arg::Bytes(bytes) => query.bind(bytes),
        Arg::Json(json) => query.bind(json),
        Arg::Ids(ids) => query.bind(ids),
        Arg::Millis(span) => query.bind(span.map(millis)),
        Arg::Time(at) => query.bind(at),
    }
}

/// Records failed publishes in one statement; `relay`: only rows it leases (else rows locked
/// by the transaction the statement runs in). Returns the ids of rows now dead.
async fn mark_failed<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    failures: &[OutboxFailure],
    options: &OutboxOptions,
    relay: Option<&str>,
) -> Result<Vec<String>, sqlx::Error> {
    let ids: Vec<&str> = failures.iter().map(|f| f.id.as_str()).collect();
    let errors: Vec<String> = failures
        .iter()
        .map(|f| ferry_core::outbox::stored_error(&f.error))
        .collect();
    let max_attempts = i32::try_from(options.max_attempts.max(1)).unwrap_or(i32::MAX);
    let marked: Vec<(String, String)> = sqlx::query_as(sql::MARK_FAILED)
        .bind(&ids)
        .bind(&errors)
        .bind(max_attempts)
        .bind(millis(options.base_backoff))
        .bind(millis(options.max_backoff))
        .bind(relay)
        .fetch_all(executor)
        .await?;
    Ok(marked
        .into_iter()
        .filter(|(_, status)| status == "dead")
        .map(|(id, _)| id)
        .collect())
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

#[async_trait]
impl Dialect for Postgres {
    type Db = sqlx::Postgres;

    const NAME: &'static str = "PostgreSQL";
    const HANDS_OFF: bool = true;
    const HELD_CLAIM: Option<&'static HeldClaim> = Some(&sql::HELD_CLAIM);
    const WAKES_ON_ADD: bool = false;
    const GROUPS_INBOX_CALLS: bool = true;
    const MIGRATE_HINT: &'static str =
        "check that the user may create tables, functions and triggers in the default schema";
    const MIGRATIONS: &'static [Migration] = schema::MIGRATIONS;
    const HISTORY_TABLE: &'static str = schema::HISTORY_TABLE;

    async fn begin(pool: &PgPool) -> Result<Tx<Self>, sqlx::Error> {
        pool.begin().await
    }

    fn wakeup(_pool: &PgPool) -> Arc<Wakeup> {
        Arc::default()
    }

    fn listen(wakeup: &Arc<Wakeup>, pool: &PgPool, stop: CancellationToken) {
        listen::start(wakeup, pool, stop);
    }

    async fn notify_relays(pool: &PgPool, _wakeup: &Wakeup) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(NOTIFY_CHANNEL)
            .execute(pool)
            .await?;
        Ok(())
    }

    async fn begin_migrations(pool: &PgPool) -> Result<Tx<Self>, sqlx::Error> {
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(schema::LOCK_KEY)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    const SQL: &'static Statements = &sql::STATEMENTS;

    run_statements!(PgConnection, PgRow, bind);

    async fn mark_failed(
        pool: &PgPool,
        failures: &[OutboxFailure],
        options: &OutboxOptions,
        relay: &str,
    ) -> Result<Vec<String>, sqlx::Error> {
        mark_failed(pool, failures, options, Some(relay)).await
    }

    async fn mark_failed_held(
        conn: &mut PgConnection,
        failures: &[OutboxFailure],
        options: &OutboxOptions,
    ) -> Result<Vec<String>, sqlx::Error> {
        // The claim's transaction locks the rows: no lease to check.
        mark_failed(conn, failures, options, None).await
    }

    async fn stats(pool: &PgPool) -> Result<OutboxStats, sqlx::Error> {
        let row = sqlx::query(sql::STATS).fetch_one(pool).await?;
        let count = |name: &str| -> Result<u64, sqlx::Error> {
            let n: i64 = row.try_get(name)?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        Ok(OutboxStats {
            pending: count("pending")?,
            published: count("published")?,
            dead: count("dead")?,
            oldest_pending_age_s: row
                .try_get::<Option<f64>, _>("oldest_pending_age_s")?
                .map(|age| age.max(0.0)),
        })
    }

    async fn inbox_lookup_group(
        pool: &PgPool,
        consumers: &[&str],
        ids: &[&str],
    ) -> Result<Vec<(String, String)>, sqlx::Error> {
        sqlx::query_as(sql::LOOKUP)
            .bind(consumers)
            .bind(ids)
            .fetch_all(pool)
            .await
    }

    async fn inbox_record_group(
        pool: &PgPool,
        consumers: &[&str],
        ids: &[&str],
    ) -> Result<Vec<(String, String)>, sqlx::Error> {
        sqlx::query_as(sql::RECORD)
            .bind(consumers)
            .bind(ids)
            .fetch_all(pool)
            .await
    }

    fn text(row: &PgRow, column: &str) -> Result<Option<String>, sqlx::Error> {
        row.try_get(column)
    }

    fn int(row: &PgRow, column: &str) -> Result<Option<i64>, sqlx::Error> {
        // `attempts` is an `integer`, `seq` a `bigint`.
        row.try_get::<Option<i64>, _>(column).or_else(|_| {
            row.try_get::<Option<i32>, _>(column)
                .map(|n| n.map(i64::from))
        })
    }

    fn bytes(row: &PgRow, column: &str) -> Result<Vec<u8>, sqlx::Error> {
        row.try_get(column)
    }

    fn json(row: &PgRow, column: &str) -> Result<serde_json::Value, sqlx::Error> {
        row.try_get(column)
    }

    fn time(row: &PgRow, column: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        row.try_get(column)
    }
}
