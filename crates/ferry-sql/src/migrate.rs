//! ferry's own migrations: SQL embedded in the crate (each dialect's), a history table of its
//! own (`ferry_migrations`, never the application's `_sqlx_migrations`), applied in one
//! transaction that concurrent runs wait for.

use crate::dialect::{Dialect, Pool};
use crate::statement;

/// ferry's migration history table (never the application's `_sqlx_migrations`).
pub const MIGRATIONS_TABLE: &str = "ferry_migrations";

/// Why the migrations could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The database failed (the driver's error is the source).
    #[error("cannot apply ferry's migrations (version {version}) on {database}; {hint}")]
    Apply {
        /// The migration version (0: the history table itself).
        version: i64,
        /// The database (`PostgreSQL`, `SQLite`).
        database: &'static str,
        /// What to check.
        hint: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
}

/// Creates or updates ferry's tables (`ferry_outbox`, `ferry_inbox`) in the pool's database.
///
/// The history lives in `ferry_migrations`; each migration runs once. All pending migrations
/// run in one transaction under a lock (an advisory lock on PostgreSQL, `BEGIN IMMEDIATE` on
/// SQLite), so several processes starting at once are safe: one applies them, the others wait
/// and find them applied.
pub async fn migrate<D: Dialect>(pool: &Pool<D>) -> Result<(), MigrateError> {
    let fail = |version: i64| {
        move |source| MigrateError::Apply {
            version,
            database: D::NAME,
            hint: D::MIGRATE_HINT,
            source,
        }
    };
    let mut tx = D::begin_migrations(pool).await.map_err(fail(0))?;
    D::run_script(&mut tx, D::HISTORY_TABLE)
        .await
        .map_err(fail(0))?;
    let applied = statement::applied_versions::<D>(&mut tx)
        .await
        .map_err(fail(0))?;
    for migration in D::MIGRATIONS {
        if applied.contains(&migration.version) {
            continue;
        }
        D::run_script(&mut tx, migration.sql)
            .await
            .map_err(fail(migration.version))?;
        statement::record_migration::<D>(&mut tx, migration)
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
