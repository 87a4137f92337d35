//! [`Dialect`] for PostgreSQL: claims with `FOR UPDATE SKIP LOCKED`, `LISTEN/NOTIFY` wake-ups,
//! rows handed to the relay at commit, grouped inbox calls, an advisory lock for migrations.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry_core::{NewOutboxRow, OutboxFailure, OutboxStats, outbox::OutboxOptions};
use sqlx::{Executor, PgConnection, PgPool, Row, postgres::PgRow};
use tokio_util::sync::CancellationToken;

use super::{NOTIFY_CHANNEL, Postgres, listen, schema, sql};
use crate::{
    dialect::{Dialect, Migration, Tx},
    wakeup::Wakeup,
};

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[async_trait]
impl Dialect for Postgres {
    type Db = sqlx::Postgres;

    const NAME: &'static str = "PostgreSQL";
    const HANDS_OFF: bool = true;
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

    async fn run_script(conn: &mut PgConnection, sql: &'static str) -> Result<(), sqlx::Error> {
        // The simple query protocol: several statements in one script.
        conn.execute(sql).await?;
        Ok(())
    }

    async fn applied_versions(conn: &mut PgConnection) -> Result<Vec<i64>, sqlx::Error> {
        sqlx::query_scalar("SELECT version FROM ferry_migrations")
            .fetch_all(conn)
            .await
    }

    async fn record_migration(
        conn: &mut PgConnection,
        migration: &Migration,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO ferry_migrations (version, description) VALUES ($1, $2)")
            .bind(migration.version)
            .bind(migration.description)
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn insert(
        conn: &mut PgConnection,
        row: &NewOutboxRow,
        leased: Option<(Duration, &str)>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(sql::INSERT)
            .bind(&row.id)
            .bind(&row.event_type)
            .bind(&row.exchange)
            .bind(&row.routing_key)
            .bind(&row.properties)
            .bind(&row.headers)
            .bind(&row.body)
            .bind(&row.partition_key)
            .bind(leased.map(|(lease, _)| millis(lease)))
            .bind(leased.map(|(_, relay)| relay))
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn claim(
        pool: &PgPool,
        limit: i64,
        lease: Duration,
        relay: &str,
    ) -> Result<Vec<PgRow>, sqlx::Error> {
        sqlx::query(sql::CLAIM)
            .bind(limit)
            .bind(millis(lease))
            .bind(relay)
            .fetch_all(pool)
            .await
    }

    async fn mark_published(pool: &PgPool, ids: &[String]) -> Result<(), sqlx::Error> {
        sqlx::query(sql::MARK_PUBLISHED)
            .bind(ids)
            .execute(pool)
            .await?;
        Ok(())
    }

    async fn mark_failed(
        pool: &PgPool,
        failures: &[OutboxFailure],
        options: &OutboxOptions,
        relay: &str,
    ) -> Result<Vec<String>, sqlx::Error> {
        // One statement for the batch.
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
            .fetch_all(pool)
            .await?;
        Ok(marked
            .into_iter()
            .filter(|(_, status)| status == "dead")
            .map(|(id, _)| id)
            .collect())
    }

    async fn release(pool: &PgPool, ids: &[String], relay: &str) -> Result<(), sqlx::Error> {
        sqlx::query(sql::RELEASE)
            .bind(ids)
            .bind(relay)
            .execute(pool)
            .await?;
        Ok(())
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

    async fn list(
        pool: &PgPool,
        status: Option<&'static str>,
        limit: i64,
    ) -> Result<Vec<PgRow>, sqlx::Error> {
        let sql = format!(
            "SELECT {} FROM ferry_outbox \
             WHERE ($1::text IS NULL OR status = $1) ORDER BY seq DESC LIMIT $2",
            sql::ROW_COLUMNS
        );
        sqlx::query(&sql)
            .bind(status)
            .bind(limit)
            .fetch_all(pool)
            .await
    }

    async fn row(pool: &PgPool, id: &str) -> Result<Option<PgRow>, sqlx::Error> {
        let sql = format!(
            "SELECT {} FROM ferry_outbox WHERE id = $1",
            sql::ROW_COLUMNS
        );
        sqlx::query(&sql).bind(id).fetch_optional(pool).await
    }

    async fn retry(pool: &PgPool, id: &str) -> Result<bool, sqlx::Error> {
        let retried: Option<String> = sqlx::query_scalar(sql::RETRY)
            .bind(id)
            .fetch_optional(pool)
            .await?;
        Ok(retried.is_some())
    }

    async fn retry_all_dead(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(sql::RETRY_ALL_DEAD)
            .fetch_all(pool)
            .await
    }

    async fn delete_published(
        pool: &PgPool,
        age: Duration,
        batch: i64,
    ) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(sql::DELETE_PUBLISHED)
            .bind(millis(age))
            .bind(batch)
            .execute(pool)
            .await?
            .rows_affected())
    }

    async fn insert_inbox(
        conn: &mut PgConnection,
        consumer: &str,
        message_id: &str,
    ) -> Result<bool, sqlx::Error> {
        let inserted = sqlx::query(sql::INSERT_INBOX)
            .bind(consumer)
            .bind(message_id)
            .execute(conn)
            .await?
            .rows_affected();
        Ok(inserted == 1)
    }

    async fn inbox_contains(
        pool: &PgPool,
        consumer: &str,
        message_id: &str,
    ) -> Result<bool, sqlx::Error> {
        let found: Option<i32> = sqlx::query_scalar(sql::INBOX_CONTAINS)
            .bind(consumer)
            .bind(message_id)
            .fetch_optional(pool)
            .await?;
        Ok(found.is_some())
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

    async fn delete_inbox(pool: &PgPool, age: Duration, batch: i64) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(sql::DELETE_INBOX)
            .bind(millis(age))
            .bind(batch)
            .execute(pool)
            .await?
            .rows_affected())
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
