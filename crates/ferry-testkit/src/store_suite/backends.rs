//! [`Backend`] for PostgreSQL and SQLite: a throw-away database, and the statements whose SQL
//! differs (times are `timestamptz` on PostgreSQL, Unix milliseconds on SQLite).

use std::time::Duration;

use async_trait::async_trait;
use ferry_sql::{postgres::Postgres, sqlite::Sqlite};
use sqlx::{
    PgConnection, PgPool, Row, SqliteConnection, SqlitePool,
    postgres::{PgArguments, PgPoolOptions},
    query::Query,
    sqlite::{SqliteArguments, SqlitePoolOptions},
};

use super::{Arg, Backend};
use crate::pg::TempDatabase;

fn bind_pg(sql: &str, args: Vec<Arg>) -> Query<'_, sqlx::Postgres, PgArguments> {
    args.into_iter()
        .fold(sqlx::query(sql), |query, arg| match arg {
            Arg::Text(text) => query.bind(text),
            Arg::Int(n) => query.bind(n),
        })
}

fn bind_sqlite(sql: &str, args: Vec<Arg>) -> Query<'_, sqlx::Sqlite, SqliteArguments<'_>> {
    args.into_iter()
        .fold(sqlx::query(sql), |query, arg| match arg {
            Arg::Text(text) => query.bind(text),
            Arg::Int(n) => query.bind(n),
        })
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[async_trait]
impl Backend for Postgres {
    type Guard = TempDatabase;

    async fn create() -> (String, TempDatabase) {
        let db = TempDatabase::create().await.unwrap();
        (db.url().to_owned(), db)
    }

    async fn pool(url: &str, max: u32) -> PgPool {
        PgPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await
            .unwrap()
    }

    async fn drop(_url: &str, db: TempDatabase) {
        db.drop_db().await.unwrap();
    }

    async fn begin_app(
        pool: &PgPool,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        pool.begin().await
    }

    async fn exec(conn: &mut PgConnection, sql: &str, args: Vec<Arg>) -> Result<u64, sqlx::Error> {
        Ok(bind_pg(sql, args).execute(conn).await?.rows_affected())
    }

    async fn exec_pool(pool: &PgPool, sql: &str, args: Vec<Arg>) -> Result<u64, sqlx::Error> {
        Ok(bind_pg(sql, args).execute(pool).await?.rows_affected())
    }

    async fn ints(pool: &PgPool, sql: &str, args: Vec<Arg>) -> Result<Vec<i64>, sqlx::Error> {
        let row = bind_pg(sql, args).fetch_one(pool).await?;
        (0..row.len())
            .map(|i| {
                row.try_get::<i64, _>(i)
                    .or_else(|_| row.try_get::<i32, _>(i).map(i64::from))
            })
            .collect()
    }

    async fn int_column(pool: &PgPool, sql: &str) -> Result<Vec<i64>, sqlx::Error> {
        sqlx::query_scalar(sql).fetch_all(pool).await
    }

    async fn status_of(pool: &PgPool, id: &str) -> (String, i64) {
        let (status, attempts): (String, i32) =
            sqlx::query_as("SELECT status, attempts FROM ferry_outbox WHERE id = $1")
                .bind(id)
                .fetch_one(pool)
                .await
                .unwrap();
        (status, i64::from(attempts))
    }

    async fn has_sqlx_migrations_table(pool: &PgPool) -> bool {
        let name: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
                .fetch_one(pool)
                .await
                .unwrap();
        name.is_some()
    }

    async fn seconds_to_next_attempt(pool: &PgPool, id: &str) -> f64 {
        sqlx::query_scalar(
            "SELECT EXTRACT(EPOCH FROM next_attempt_at - now())::float8 FROM ferry_outbox WHERE id = $1",
        )
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
    }

    async fn age_published(pool: &PgPool, ids: &[String], age: Duration) {
        sqlx::query(
            "UPDATE ferry_outbox SET published_at = published_at - $2 * interval '1 millisecond' \
             WHERE id = ANY($1)",
        )
        .bind(ids)
        .bind(ms(age) as f64)
        .execute(pool)
        .await
        .unwrap();
    }

    async fn age_created(pool: &PgPool, id: &str, age: Duration) {
        sqlx::query(
            "UPDATE ferry_outbox SET created_at = created_at - $2 * interval '1 millisecond' WHERE id = $1",
        )
        .bind(id)
        .bind(ms(age) as f64)
        .execute(pool)
        .await
        .unwrap();
    }

    async fn leased_pending(pool: &PgPool) -> i64 {
        // Leased (handed over at commit) or locked by a claim's open transaction.
        sqlx::query_scalar(
            "SELECT count(*) FROM ferry_outbox o WHERE status = 'pending' AND \
             (locked_until > now() OR NOT EXISTS \
              (SELECT 1 FROM ferry_outbox l WHERE l.seq = o.seq FOR UPDATE SKIP LOCKED))",
        )
        .fetch_one(pool)
        .await
        .unwrap()
    }

    async fn age_inbox(pool: &PgPool, consumer: &str, age: Duration) {
        sqlx::query(
            "UPDATE ferry_inbox SET processed_at = processed_at - $2 * interval '1 millisecond' \
             WHERE consumer = $1",
        )
        .bind(consumer)
        .bind(ms(age) as f64)
        .execute(pool)
        .await
        .unwrap();
    }
}

#[async_trait]
impl Backend for Sqlite {
    type Guard = ();

    async fn create() -> (String, ()) {
        let path =
            std::env::temp_dir().join(format!("{}.sqlite", crate::unique_ident("ferry_test")));
        (format!("sqlite://{}", path.display()), ())
    }

    async fn pool(url: &str, max: u32) -> SqlitePool {
        SqlitePoolOptions::new()
            .max_connections(max)
            .connect_with(ferry_sql::sqlite::connect_options(url).unwrap())
            .await
            .unwrap()
    }

    async fn drop(url: &str, _guard: ()) {
        let path = url.trim_start_matches("sqlite://");
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
    }

    async fn begin_app(
        pool: &SqlitePool,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        // Taking the write lock first, as applications should on SQLite.
        pool.begin_with("BEGIN IMMEDIATE").await
    }

    async fn exec(
        conn: &mut SqliteConnection,
        sql: &str,
        args: Vec<Arg>,
    ) -> Result<u64, sqlx::Error> {
        Ok(bind_sqlite(sql, args).execute(conn).await?.rows_affected())
    }

    async fn exec_pool(pool: &SqlitePool, sql: &str, args: Vec<Arg>) -> Result<u64, sqlx::Error> {
        Ok(bind_sqlite(sql, args).execute(pool).await?.rows_affected())
    }

    async fn ints(pool: &SqlitePool, sql: &str, args: Vec<Arg>) -> Result<Vec<i64>, sqlx::Error> {
        let row = bind_sqlite(sql, args).fetch_one(pool).await?;
        (0..row.len()).map(|i| row.try_get::<i64, _>(i)).collect()
    }

    async fn int_column(pool: &SqlitePool, sql: &str) -> Result<Vec<i64>, sqlx::Error> {
        sqlx::query_scalar(sql).fetch_all(pool).await
    }

    async fn status_of(pool: &SqlitePool, id: &str) -> (String, i64) {
        sqlx::query_as("SELECT status, attempts FROM ferry_outbox WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap()
    }

    async fn has_sqlx_migrations_table(pool: &SqlitePool) -> bool {
        let name: Option<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE name = '_sqlx_migrations'")
                .fetch_optional(pool)
                .await
                .unwrap();
        name.is_some()
    }

    async fn seconds_to_next_attempt(pool: &SqlitePool, id: &str) -> f64 {
        sqlx::query_scalar("SELECT (next_attempt_at - $2) / 1000.0 FROM ferry_outbox WHERE id = $1")
            .bind(id)
            .bind(now_ms())
            .fetch_one(pool)
            .await
            .unwrap()
    }

    async fn age_published(pool: &SqlitePool, ids: &[String], age: Duration) {
        sqlx::query(
            "UPDATE ferry_outbox SET published_at = published_at - $2 \
             WHERE id IN (SELECT value FROM json_each($1))",
        )
        .bind(serde_json::to_string(ids).unwrap())
        .bind(ms(age))
        .execute(pool)
        .await
        .unwrap();
    }

    async fn age_created(pool: &SqlitePool, id: &str, age: Duration) {
        sqlx::query("UPDATE ferry_outbox SET created_at = created_at - $2 WHERE id = $1")
            .bind(id)
            .bind(ms(age))
            .execute(pool)
            .await
            .unwrap();
    }

    async fn leased_pending(pool: &SqlitePool) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM ferry_outbox WHERE locked_until > $1 AND status = 'pending'",
        )
        .bind(now_ms())
        .fetch_one(pool)
        .await
        .unwrap()
    }

    async fn age_inbox(pool: &SqlitePool, consumer: &str, age: Duration) {
        sqlx::query("UPDATE ferry_inbox SET processed_at = processed_at - $2 WHERE consumer = $1")
            .bind(consumer)
            .bind(ms(age))
            .execute(pool)
            .await
            .unwrap();
    }
}
