//! What the shared store suite (`crates/ferry-testkit/store-suite`) needs from SQLite: the
//! store types under their common names, a throw-away database file, and the few statements
//! whose SQL differs between databases (times are unix milliseconds here).
#![allow(dead_code, unused_imports)]

use std::time::Duration;

pub use ferry_sqlite::{
    OutboxOptions, RetryOutcome, SqliteInbox as SqlInbox, SqliteOutbox as Outbox, migrate, sqlx,
    sqlx::SqlitePool as Pool,
};

/// The database's name in test descriptions.
pub const NAME: &str = "SQLite";

/// The database's transaction type.
pub type Tx = sqlx::Transaction<'static, sqlx::Sqlite>;

/// The database's connection type.
pub type Conn = sqlx::SqliteConnection;

/// Begins a transaction as an application should on SQLite (taking the write lock first).
pub async fn begin(pool: &Pool) -> Result<Tx, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

/// A migrated database file of its own, removed on close.
pub struct TestDb {
    pub pool: Pool,
    path: std::path::PathBuf,
}

impl TestDb {
    pub async fn new() -> TestDb {
        ferry_testkit::init_tracing();
        let path = std::env::temp_dir().join(format!(
            "{}.sqlite",
            ferry_testkit::unique_ident("ferry_test")
        ));
        let pool = ferry_sqlite::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        migrate(&pool).await.unwrap();
        TestDb { pool, path }
    }

    pub fn url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    /// Another pool on the same database file.
    pub async fn other_pool(&self, max: u32) -> Pool {
        sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(max)
            .connect_with(ferry_sqlite::connect_options(&self.url()).unwrap())
            .await
            .unwrap()
    }

    pub async fn close(self) {
        self.pool.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

/// Whether sqlx's own migrations table exists.
pub async fn has_sqlx_migrations_table(pool: &Pool) -> bool {
    let name: Option<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE name = '_sqlx_migrations'")
            .fetch_optional(pool)
            .await
            .unwrap();
    name.is_some()
}

/// Seconds until a row's next attempt.
pub async fn seconds_to_next_attempt(pool: &Pool, id: &str) -> f64 {
    sqlx::query_scalar("SELECT (next_attempt_at - $2) / 1000.0 FROM ferry_outbox WHERE id = $1")
        .bind(id)
        .bind(now_ms())
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Moves the publication time of rows `age` into the past.
pub async fn age_published(pool: &Pool, ids: &[String], age: Duration) {
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

/// Moves the creation time of a row `age` into the past.
pub async fn age_created(pool: &Pool, id: &str, age: Duration) {
    sqlx::query("UPDATE ferry_outbox SET created_at = created_at - $2 WHERE id = $1")
        .bind(id)
        .bind(ms(age))
        .execute(pool)
        .await
        .unwrap();
}

/// Pending rows whose lease has not run out.
pub async fn leased_pending(pool: &Pool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM ferry_outbox WHERE locked_until > $1 AND status = 'pending'",
    )
    .bind(now_ms())
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Moves a consumer's inbox records `age` into the past.
pub async fn age_inbox(pool: &Pool, consumer: &str, age: Duration) {
    sqlx::query("UPDATE ferry_inbox SET processed_at = processed_at - $2 WHERE consumer = $1")
        .bind(consumer)
        .bind(ms(age))
        .execute(pool)
        .await
        .unwrap();
}
