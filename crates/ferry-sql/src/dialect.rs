//! The seam between the store, written once, and a database: the SQL text, how a transaction
//! begins, how relays are woken, and how the few columns whose types differ are read. Each
//! database implements [`Dialect`] in a module of its own (`postgres`, `sqlite`); nothing else
//! in the crate names a database.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry_core::{OutboxFailure, OutboxStats, outbox::OutboxOptions};
use tokio_util::sync::CancellationToken;

pub use crate::statement::{Arg, Statements};
use crate::wakeup::Wakeup;

/// The database's connection type (`PgConnection`, `SqliteConnection`).
pub type Conn<D> = <<D as Dialect>::Db as sqlx::Database>::Connection;

/// The database's pool type (`PgPool`, `SqlitePool`).
pub type Pool<D> = sqlx::Pool<<D as Dialect>::Db>;

/// A transaction on the database.
pub type Tx<D> = sqlx::Transaction<'static, <D as Dialect>::Db>;

/// A row the database returned.
pub type Row<D> = <<D as Dialect>::Db as sqlx::Database>::Row;

/// A statement running on the database.
pub type Ran<'a, T> = futures::future::BoxFuture<'a, Result<T, sqlx::Error>>;

/// Implements [`Dialect::run_script`], [`Dialect::execute`] and [`Dialect::fetch_all`] with
/// sqlx for a database whose connection and row types are given, binding each [`Arg`] with
/// `bind`. The dialects differ only in how they bind.
macro_rules! run_statements {
    ($conn:ty, $row:ty, $bind:path) => {
        fn run_script<'a>(conn: &'a mut $conn, sql: &'static str) -> $crate::dialect::Ran<'a, ()> {
            // The simple query protocol: several statements in one script.
            Box::pin(async move { sqlx::Executor::execute(conn, sql).await.map(drop) })
        }

        fn execute<'a>(
            conn: &'a mut $conn,
            sql: &'a str,
            args: &'a [$crate::dialect::Arg<'a>],
        ) -> $crate::dialect::Ran<'a, u64> {
            let query = args.iter().fold(sqlx::query(sql), $bind);
            Box::pin(async move { Ok(query.execute(conn).await?.rows_affected()) })
        }

        fn fetch_all<'a>(
            conn: &'a mut $conn,
            sql: &'a str,
            args: &'a [$crate::dialect::Arg<'a>],
        ) -> $crate::dialect::Ran<'a, Vec<$row>> {
            Box::pin(args.iter().fold(sqlx::query(sql), $bind).fetch_all(conn))
        }
    };
}
pub(crate) use run_statements;

/// The statements of claims held by row locks ([`Dialect::HELD_CLAIM`]).
#[derive(Debug)]
pub struct HeldClaim {
    /// Locks due rows in order, skipping locked ones, as [`Statements::claim`] picks them:
    /// limit, lease; returns the columns `outbox::rows::claimed` reads and `candidates`, how
    /// many rows it locked (more than it returned when a partition held some back).
    pub claim: &'static str,
    /// Locks the rows named, if still due and not locked: ids, lease; the same columns.
    pub relock: &'static str,
}

/// One of ferry's migrations: its version, what it does, its SQL.
#[derive(Debug)]
pub struct Migration {
    /// The version recorded in `ferry_migrations`.
    pub version: i64,
    /// What it creates.
    pub description: &'static str,
    /// The script.
    pub sql: &'static str,
}

/// What a database does its own way. Implemented by [`crate::postgres::Postgres`] and
/// [`crate::sqlite::Sqlite`]; the store's types ([`crate::SqlOutbox`], [`crate::SqlInbox`],
/// [`crate::OutboxTransaction`]) are generic over it.
///
/// The statements take the tables of `docs/tables.md` as they are; times are read and written
/// in each database's own column types.
#[async_trait]
pub trait Dialect: Sized + Send + Sync + 'static + std::fmt::Debug + Clone + Copy {
    /// The sqlx database.
    type Db: sqlx::Database;

    /// The database's name, for messages.
    const NAME: &'static str;

    /// Whether events committed through an [`crate::OutboxTransaction`] go straight to the relay
    /// running on the same outbox in this process (see `outbox/handoff.rs`).
    const HANDS_OFF: bool;

    /// The claims that hold their rows by row locks in a transaction left open until the
    /// batch is marked (see `outbox/held.rs`). `None`: claims lease their rows
    /// ([`Statements::claim`]).
    const HELD_CLAIM: Option<&'static HeldClaim>;

    /// Whether relays learn of new rows only in this process, from each add (before its
    /// commit), rather than from the database's notifications.
    const WAKES_ON_ADD: bool;

    /// Whether the consumer's inbox lookups and records made at the same moment go to the
    /// database as one statement (see `inbox/grouped.rs`).
    const GROUPS_INBOX_CALLS: bool;

    /// What to check when the migrations fail.
    const MIGRATE_HINT: &'static str;

    /// ferry's migrations, in order.
    const MIGRATIONS: &'static [Migration];

    /// Creates the history table `ferry_migrations` if missing.
    const HISTORY_TABLE: &'static str;

    /// Begins a transaction as the outbox does (on SQLite `BEGIN IMMEDIATE`).
    async fn begin(pool: &Pool<Self>) -> Result<Tx<Self>, sqlx::Error>;

    /// The wake-up signal of the outboxes on `pool` (on SQLite shared by every outbox of the
    /// process on one database file).
    fn wakeup(pool: &Pool<Self>) -> Arc<Wakeup>;

    /// Starts listening for the database's notifications (once), until `stop`; a database
    /// without them does nothing.
    fn listen(wakeup: &Arc<Wakeup>, pool: &Pool<Self>, stop: CancellationToken);

    /// Wakes every relay that listens on this database.
    async fn notify_relays(pool: &Pool<Self>, wakeup: &Wakeup) -> Result<(), sqlx::Error>;

    // -- migrations --

    /// Begins the migrations' transaction, holding whatever lock makes concurrent runs safe.
    async fn begin_migrations(pool: &Pool<Self>) -> Result<Tx<Self>, sqlx::Error>;

    /// Runs a script of several statements.
    fn run_script<'a>(conn: &'a mut Conn<Self>, sql: &'static str) -> Ran<'a, ()>;

    // -- running statements --

    /// The statements whose text differs between databases; the store binds their arguments
    /// and reads their rows the same way on every database (`statement.rs`).
    const SQL: &'static Statements;

    /// Runs `sql` with `args`; the rows it changed.
    fn execute<'a>(conn: &'a mut Conn<Self>, sql: &'a str, args: &'a [Arg<'a>]) -> Ran<'a, u64>;

    /// Runs `sql` with `args`; the rows it returned.
    fn fetch_all<'a>(
        conn: &'a mut Conn<Self>,
        sql: &'a str,
        args: &'a [Arg<'a>],
    ) -> Ran<'a, Vec<Row<Self>>>;

    // -- what differs beyond the SQL text --

    /// Records failed publishes of rows `relay` holds; returns the ids of rows now dead.
    async fn mark_failed(
        pool: &Pool<Self>,
        failures: &[OutboxFailure],
        options: &OutboxOptions,
        relay: &str,
    ) -> Result<Vec<String>, sqlx::Error>;

    /// Records failed publishes of rows locked by the claim's transaction `conn` is in
    /// ([`Dialect::HELD_CLAIM`] only); returns the ids of rows now dead.
    async fn mark_failed_held(
        conn: &mut Conn<Self>,
        failures: &[OutboxFailure],
        options: &OutboxOptions,
    ) -> Result<Vec<String>, sqlx::Error>;

    /// Counts rows by status.
    async fn stats(pool: &Pool<Self>) -> Result<OutboxStats, sqlx::Error>;

    /// Of the sorted pairs (`consumers[i]`, `ids[i]`), those the inbox holds
    /// ([`Dialect::GROUPS_INBOX_CALLS`] only).
    async fn inbox_lookup_group(
        pool: &Pool<Self>,
        consumers: &[&str],
        ids: &[&str],
    ) -> Result<Vec<(String, String)>, sqlx::Error>;

    /// Records the sorted pairs; returns those it inserted ([`Dialect::GROUPS_INBOX_CALLS`]
    /// only).
    async fn inbox_record_group(
        pool: &Pool<Self>,
        consumers: &[&str],
        ids: &[&str],
    ) -> Result<Vec<(String, String)>, sqlx::Error>;

    // -- reading columns whose types differ --

    /// A text column.
    fn text(row: &Row<Self>, column: &str) -> Result<Option<String>, sqlx::Error>;

    /// An integer column (any width).
    fn int(row: &Row<Self>, column: &str) -> Result<Option<i64>, sqlx::Error>;

    /// A binary column.
    fn bytes(row: &Row<Self>, column: &str) -> Result<Vec<u8>, sqlx::Error>;

    /// A JSON column.
    fn json(row: &Row<Self>, column: &str) -> Result<serde_json::Value, sqlx::Error>;

    /// A time column.
    fn time(row: &Row<Self>, column: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error>;
}
