//! ferry's own migrations: SQL embedded in the crate, a history table of its own
//! (`ferry_migrations`), applied in one transaction under an advisory lock.

use sqlx::{Connection, Executor, PgConnection, PgPool};

/// ferry's migration history table (never the application's `_sqlx_migrations`).
pub const MIGRATIONS_TABLE: &str = "ferry_migrations";

/// A key for `pg_advisory_xact_lock`, so concurrent starts apply the migrations once
/// (the bytes of "ferrymig").
const LOCK_KEY: i64 = 0x6665_7272_796d_6967;

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
    id              TEXT PRIMARY KEY,
    seq             BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'published', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at    TIMESTAMPTZ,
    event_type      TEXT,
    exchange        TEXT,
    routing_key     TEXT NOT NULL,
    properties      JSONB NOT NULL,
    headers         JSONB NOT NULL,
    body            BYTEA NOT NULL,
    partition_key   TEXT,
    locked_until    TIMESTAMPTZ,
    locked_by       TEXT
);
CREATE INDEX ferry_outbox_pending_idx ON ferry_outbox (seq) WHERE status = 'pending';
CREATE INDEX ferry_outbox_partition_idx ON ferry_outbox (partition_key, seq)
    WHERE status = 'pending' AND partition_key IS NOT NULL;
CREATE INDEX ferry_outbox_published_idx ON ferry_outbox (published_at) WHERE status = 'published';
CREATE INDEX ferry_outbox_dead_idx ON ferry_outbox (seq) WHERE status = 'dead';

CREATE FUNCTION ferry_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ferry_outbox', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER ferry_outbox_notify AFTER INSERT ON ferry_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION ferry_outbox_notify();

CREATE TABLE ferry_inbox (
    consumer     TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
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
        "cannot apply ferry's migrations (version {version}): {source}; check that the user may create tables, functions and triggers in the default schema"
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
/// run in one transaction under an advisory lock, so several processes starting at once are
/// safe: one applies them, the others wait and find them applied.
pub async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    let fail = |version: i64| move |source| MigrateError::Apply { version, source };
    let mut conn = pool.acquire().await.map_err(fail(0))?;
    let mut tx = conn.begin().await.map_err(fail(0))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *tx)
        .await
        .map_err(fail(0))?;
    run_script(
        &mut tx,
        "CREATE TABLE IF NOT EXISTS ferry_migrations (
            version     BIGINT PRIMARY KEY,
            description TEXT NOT NULL,
            applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
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
        sqlx::query("INSERT INTO ferry_migrations (version, description) VALUES ($1, $2)")
            .bind(migration.version)
            .bind(migration.description)
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

/// Runs a script of several statements (the simple query protocol).
async fn run_script(conn: &mut PgConnection, sql: &'static str) -> Result<(), sqlx::Error> {
    conn.execute(sql).await?;
    Ok(())
}
