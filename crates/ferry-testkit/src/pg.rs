//! Throw-away PostgreSQL databases for tests.

use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};

/// The server used when `FERRY_TEST_PG_URL` is not set: local PostgreSQL, user `postgres`
/// (trust authentication), maintenance database `postgres`.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The environment variable that overrides [`DEFAULT_URL`]; it must name a database the user
/// can connect to and a user allowed to `CREATE DATABASE`.
pub const URL_ENV: &str = "FERRY_TEST_PG_URL";

/// The maintenance URL: `FERRY_TEST_PG_URL` if set and not empty, else [`DEFAULT_URL`].
///
/// ```
/// assert!(ferry_testkit::pg::admin_url().starts_with("postgres"));
/// ```
pub fn admin_url() -> String {
    match std::env::var(URL_ENV) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => DEFAULT_URL.to_owned(),
    }
}

/// Why a temporary database could not be created or dropped.
#[derive(Debug, thiserror::Error)]
pub enum TempDatabaseError {
    /// The server did not accept a connection.
    #[error(
        "cannot connect to PostgreSQL at {url}: {source}; start PostgreSQL on 127.0.0.1:5432 \
         (user postgres, trust auth) or set FERRY_TEST_PG_URL"
    )]
    Connect {
        /// The URL tried (the maintenance URL).
        url: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// `CREATE DATABASE` failed.
    #[error("cannot create the test database {name}: {source}; the user needs CREATEDB")]
    Create {
        /// The database name.
        name: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// `DROP DATABASE` failed.
    #[error("cannot drop the test database {name}: {source}; drop it by hand with DROP DATABASE")]
    Drop {
        /// The database name.
        name: String,
        /// The driver's error.
        source: sqlx::Error,
    },
}

/// A database `ferry_test_<random>` created for one test on the server of [`admin_url`].
///
/// Call [`TempDatabase::drop_db`] at the end of the test. If the value is dropped without it
/// (e.g. the test panicked), `Drop` drops the database on a helper thread and waits for it, up
/// to 10 seconds, best effort.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let db = ferry_testkit::pg::TempDatabase::create().await?;
/// let pool = db.pool().await?;
/// sqlx::query("CREATE TABLE t (id int)").execute(&pool).await?;
/// pool.close().await;
/// db.drop_db().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct TempDatabase {
    name: String,
    url: String,
    admin_url: String,
    dropped: bool,
}

impl TempDatabase {
    /// Creates a new, empty database.
    ///
    /// # Errors
    ///
    /// If the server cannot be reached or refuses `CREATE DATABASE`.
    pub async fn create() -> Result<TempDatabase, TempDatabaseError> {
        let admin_url = admin_url();
        let name = crate::unique_ident("ferry_test");
        let mut admin = connect(&admin_url).await?;
        let created = sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await;
        let _ = admin.close().await;
        if let Err(source) = created {
            return Err(TempDatabaseError::Create { name, source });
        }
        tracing::debug!(%name, "created a temporary test database");
        Ok(TempDatabase {
            url: with_database(&admin_url, &name),
            name,
            admin_url,
            dropped: false,
        })
    }

    /// The database's URL (the maintenance URL with the database replaced).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name (`ferry_test_<random>`, a plain identifier).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A connection pool on the database (5 connections at most).
    ///
    /// # Errors
    ///
    /// If the database cannot be reached.
    pub async fn pool(&self) -> Result<PgPool, sqlx::Error> {
        PgPoolOptions::new()
            .max_connections(5)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&self.url)
            .await
    }

    /// Ends every session on the database and drops it.
    ///
    /// # Errors
    ///
    /// If the server cannot be reached or the drop fails.
    pub async fn drop_db(mut self) -> Result<(), TempDatabaseError> {
        self.dropped = true;
        drop_database(&self.admin_url, &self.name).await
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("ferry-testkit-drop-db".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        tracing::warn!(%error, %name, "cannot drop the test database: no runtime");
                        return;
                    }
                };
                if let Err(error) = runtime.block_on(drop_database(&admin_url, &name)) {
                    tracing::warn!(%error, "test database left behind");
                }
                let _ = done_tx.send(());
            });
        match spawned {
            Ok(_) => {
                // Wait, so the database is gone before the test process exits.
                let _ = done_rx.recv_timeout(Duration::from_secs(10));
            }
            Err(error) => {
                tracing::warn!(%error, name = %self.name, "cannot drop the test database: no thread");
            }
        }
    }
}

async fn connect(url: &str) -> Result<PgConnection, TempDatabaseError> {
    PgConnection::connect(url)
        .await
        .map_err(|source| TempDatabaseError::Connect {
            url: url.to_owned(),
            source,
        })
}

async fn drop_database(admin_url: &str, name: &str) -> Result<(), TempDatabaseError> {
    let mut admin = connect(admin_url).await?;
    // Sessions left open (pools not closed) would block the drop: end them first.
    let _ = sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(name)
    .execute(&mut admin)
    .await;
    // WITH (FORCE) (PostgreSQL 13+) also ends sessions that connected in between.
    let mut dropped = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await;
    if dropped.is_err() {
        dropped = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
            .execute(&mut admin)
            .await;
    }
    let _ = admin.close().await;
    match dropped {
        Ok(_) => {
            tracing::debug!(%name, "dropped a temporary test database");
            Ok(())
        }
        Err(source) => Err(TempDatabaseError::Drop {
            name: name.to_owned(),
            source,
        }),
    }
}

/// `url` with its database (path) replaced by `database`, keeping the query.
fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (before_query, query) = match rest.find('?') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = before_query.split('/').next().unwrap_or_default();
    format!("{scheme}://{authority}/{database}{query}")
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_only() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgresql://h:1", "x"), "postgresql://h:1/x");
    }
}
