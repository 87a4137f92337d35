//! What the shared store suite (`crates/ferry-testkit/store-suite`) needs from PostgreSQL: the
//! store types under their common names, a throw-away database, and the few statements whose
//! SQL differs between databases.
#![allow(dead_code, unused_imports)]

use std::time::Duration;

pub use ferry_postgres::{
    OutboxOptions, PgInbox as SqlInbox, PgOutbox as Outbox, RetryOutcome, migrate, sqlx,
    sqlx::PgPool as Pool,
};
use ferry_testkit::pg::TempDatabase;
use sqlx::postgres::PgPoolOptions;

/// The database's name in test descriptions.
pub const NAME: &str = "PostgreSQL";

/// The database's transaction type.
pub type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

/// The database's connection type.
pub type Conn = sqlx::PgConnection;

/// Begins a transaction as an application would.
pub async fn begin(pool: &Pool) -> Result<Tx, sqlx::Error> {
    pool.begin().await
}

/// A migrated database of its own.
pub struct TestDb {
    pub pool: Pool,
    db: TempDatabase,
}

impl TestDb {
    pub async fn new() -> TestDb {
        ferry_testkit::init_tracing();
        let db = TempDatabase::create().await.unwrap();
        let pool = PgPoolOptions::new()
            .max_connections(12)
            .acquire_timeout(Duration::from_secs(30))
            .connect(db.url())
            .await
            .unwrap();
        migrate(&pool).await.unwrap();
        TestDb { pool, db }
    }

    pub fn url(&self) -> String {
        self.db.url().to_owned()
    }

    /// Another pool on the same database (a second "process").
    pub async fn other_pool(&self, max: u32) -> Pool {
        PgPoolOptions::new()
            .max_connections(max)
            .connect(self.db.url())
            .await
            .unwrap()
    }

    pub async fn close(self) {
        self.pool.close().await;
        self.db.drop_db().await.unwrap();
    }
}

/// Whether sqlx's own migrations table exists.
pub async fn has_sqlx_migrations_table(pool: &Pool) -> bool {
    let name: Option<String> = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
        .fetch_one(pool)
        .await
        .unwrap();
    name.is_some()
}

/// Seconds until a row's next attempt.
pub async fn seconds_to_next_attempt(pool: &Pool, id: &str) -> f64 {
    sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM next_attempt_at - now())::float8 FROM ferry_outbox WHERE id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Moves the publication time of rows `age` into the past.
pub async fn age_published(pool: &Pool, ids: &[String], age: Duration) {
    sqlx::query(
        "UPDATE ferry_outbox SET published_at = published_at - $2 * interval '1 millisecond' \
         WHERE id = ANY($1)",
    )
    .bind(ids)
    .bind(age.as_millis() as f64)
    .execute(pool)
    .await
    .unwrap();
}

/// Moves the creation time of a row `age` into the past.
pub async fn age_created(pool: &Pool, id: &str, age: Duration) {
    sqlx::query(
        "UPDATE ferry_outbox SET created_at = created_at - $2 * interval '1 millisecond' WHERE id = $1",
    )
    .bind(id)
    .bind(age.as_millis() as f64)
    .execute(pool)
    .await
    .unwrap();
}

/// Pending rows whose lease has not run out.
pub async fn leased_pending(pool: &Pool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM ferry_outbox WHERE locked_until > now() AND status = 'pending'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Moves a consumer's inbox records `age` into the past.
pub async fn age_inbox(pool: &Pool, consumer: &str, age: Duration) {
    sqlx::query(
        "UPDATE ferry_inbox SET processed_at = processed_at - $2 * interval '1 millisecond' \
         WHERE consumer = $1",
    )
    .bind(consumer)
    .bind(age.as_millis() as f64)
    .execute(pool)
    .await
    .unwrap();
}
