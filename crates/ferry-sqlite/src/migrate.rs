//! ferry's own migrations: SQL embedded in the crate, a history table of its own
//! (`ferry_migrations`), applied in one `BEGIN IMMEDIATE` transaction.

use sqlx::{Executor, SqliteConnection, SqlitePool};

/// ferry's migration history table (never the application's `_sqlx_migrations`).
pub const MIGRATIONS_TABLE: &str = "ferry_migrations";

struct Migration {
    version: i64,
    description: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "outbox and inbox",
    sql: r#"
CREATE TABLE ferry_outbox (
    id              TEXT NOT NULL PRIMARY KEY,
    seq             INTEGER NOT NULL UNIQUE,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'published', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    next_attempt_at INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    published_at    INTEGER,
    event_type      TEXT,
    exchange        TEXT,
    routing_key     TEXT NOT NULL,
    properties      TEXT NOT NULL,
    headers         TEXT NOT NULL,
    body            BLOB NOT NULL,
    partition_key   TEXT,
    locked_until    INTEGER,
    locked_by       TEXT
);
CREATE INDEX ferry_outbox_pending_idx ON ferry_outbox (seq) WHERE status = 'pending';
CREATE INDEX ferry_outbox_partition_idx ON ferry_outbox (partition_key, seq)
    WHERE status = 'pending' AND partition_key IS NOT NULL;
CREATE INDEX ferry_outbox_published_idx ON ferry_outbox (published_at) WHERE status = 'published';
CREATE INDEX ferry_outbox_dead_idx ON ferry_outbox (seq) WHERE status = 'dead';

CREATE TABLE ferry_inbox (
    consumer     TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    processed_at INTEGER NOT NULL,
    PRIMARY KEY (consumer, message_id)
);
CREATE INDEX ferry_inbox_processed_at_idx ON ferry_inbox (processed_at);
"#,
}];

/// Why the migrations could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The database failed.
    #[error(
        "cannot apply ferry's migrations (version {version}): {source}; check that the database file is writable"
    )]
    Apply {
        /// The migration version (0: the history table itself).
        version: i64,
        /// The driver's error.
        source: sqlx::Error,
    },
}

/// Creates or updates ferry's tables (`ferry_outbox`, `ferry_inbox`) in the pool's database.
///
/// The history lives in `ferry_migrations`; each migration runs once. All pending migrations
/// run in one `BEGIN IMMEDIATE` transaction, so concurrent calls apply them once.
pub async fn migrate(pool: &SqlitePool) -> Result<(), MigrateError> {
    let fail = |version: i64| move |source| MigrateError::Apply { version, source };
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(fail(0))?;
    run_script(
        &mut tx,
        "CREATE TABLE IF NOT EXISTS ferry_migrations (
            version     INTEGER PRIMARY KEY,
            description TEXT NOT NULL,
            applied_at  INTEGER NOT NULL
        )",
    )
    .await
    .map_err(fail(0))?;
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM ferry_migrations")
        .fetch_all(&mut *tx)
        .await
        .map_err(fail(0))?;
    for migration in MIGRATIONS {
        if applied.contains(&migration.version) {
            continue;
        }
        run_script(&mut tx, migration.sql)
            .await
            .map_err(fail(migration.version))?;
        sqlx::query(
            "INSERT INTO ferry_migrations (version, description, applied_at) VALUES (?, ?, ?)",
        )
        .bind(migration.version)
        .bind(migration.description)
        .bind(crate::now_ms())
        .execute(&mut *tx)
        .await
        .map_err(fail(migration.version))?;
        tracing::info!(
            version = migration.version,
            description = migration.description,
            "applied a ferry migration"
        );
    }
    tx.commit().await.map_err(fail(0))?;
    Ok(())
}

/// Runs a script of several statements.
async fn run_script(conn: &mut SqliteConnection, sql: &'static str) -> Result<(), sqlx::Error> {
    conn.execute(sql).await?;
    Ok(())
}
