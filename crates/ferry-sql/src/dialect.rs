//! The seam between the store, written once, and a database: the SQL text, how a transaction
//! begins, how relays are woken, and how the few columns whose types differ are read. Each
//! database implements [`Dialect`] in a module of its own (`postgres`, `sqlite`); nothing else
//! in the crate names a database.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry_core::{NewOutboxRow, OutboxFailure, OutboxStats, outbox::OutboxOptions};
use tokio_util::sync::CancellationToken;

use crate::wakeup::Wakeup;

/// The database's connection type (`PgConnection`, `SqliteConnection`).
pub type Conn<D> = <<D as Dialect>::Db as sqlx::Database>::Connection;

/// The database's pool type (`PgPool`, `SqlitePool`).
pub type Pool<D> = sqlx::Pool<<D as Dialect>::Db>;

/// A transaction on the database.
pub type Tx<D> = sqlx::Transaction<'static, <D as Dialect>::Db>;

/// A row the database returned.
pub type Row<D> = <<D as Dialect>::Db as sqlx::Database>::Row;

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
    async fn run_script(conn: &mut Conn<Self>, sql: &'static str) -> Result<(), sqlx::Error>;

    /// The versions applied.
    async fn applied_versions(conn: &mut Conn<Self>) -> Result<Vec<i64>, sqlx::Error>;

    /// Records a migration as applied.
    async fn record_migration(
        conn: &mut Conn<Self>,
        migration: &Migration,
    ) -> Result<(), sqlx::Error>;

    // -- the outbox --

    /// Inserts a row; `leased` to a relay (the lease, the relay's id) when it is handed over.
    async fn insert(
        conn: &mut Conn<Self>,
        row: &NewOutboxRow,
        leased: Option<(Duration, &str)>,
    ) -> Result<(), sqlx::Error>;

    /// Claims up to `limit` due rows for `relay`, leased for `lease`; the rows hold the columns
    /// [`crate::outbox::rows::claimed`] reads.
    async fn claim(
        pool: &Pool<Self>,
        limit: i64,
        lease: Duration,
        relay: &str,
    ) -> Result<Vec<Row<Self>>, sqlx::Error>;

    /// Marks rows published.
    async fn mark_published(pool: &Pool<Self>, ids: &[String]) -> Result<(), sqlx::Error>;

    /// Records failed publishes of rows `relay` holds; returns the ids of rows now dead.
    async fn mark_failed(
        pool: &Pool<Self>,
        failures: &[OutboxFailure],
        options: &OutboxOptions,
        relay: &str,
    ) -> Result<Vec<String>, sqlx::Error>;

    /// Gives back rows `relay` holds, without counting an attempt.
    async fn release(pool: &Pool<Self>, ids: &[String], relay: &str) -> Result<(), sqlx::Error>;

    /// Counts rows by status.
    async fn stats(pool: &Pool<Self>) -> Result<OutboxStats, sqlx::Error>;

    /// Rows, newest first, with the columns [`crate::outbox::rows::listed`] reads.
    async fn list(
        pool: &Pool<Self>,
        status: Option<&'static str>,
        limit: i64,
    ) -> Result<Vec<Row<Self>>, sqlx::Error>;

    /// One row, with the columns [`crate::outbox::rows::listed`] reads.
    async fn row(pool: &Pool<Self>, id: &str) -> Result<Option<Row<Self>>, sqlx::Error>;

    /// Brings a dead or pending row back to pending, due now; whether one was.
    async fn retry(pool: &Pool<Self>, id: &str) -> Result<bool, sqlx::Error>;

    /// Brings every dead row back; their ids in the order they were added.
    async fn retry_all_dead(pool: &Pool<Self>) -> Result<Vec<String>, sqlx::Error>;

    /// Deletes at most `batch` rows published more than `age` ago; how many.
    async fn delete_published(
        pool: &Pool<Self>,
        age: Duration,
        batch: i64,
    ) -> Result<u64, sqlx::Error>;

    // -- the inbox --

    /// Inserts the inbox row; `false` when it is already there.
    async fn insert_inbox(
        conn: &mut Conn<Self>,
        consumer: &str,
        message_id: &str,
    ) -> Result<bool, sqlx::Error>;

    /// Whether the inbox row is there.
    async fn inbox_contains(
        pool: &Pool<Self>,
        consumer: &str,
        message_id: &str,
    ) -> Result<bool, sqlx::Error>;

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

    /// Deletes at most `batch` inbox rows processed more than `age` ago; how many.
    async fn delete_inbox(pool: &Pool<Self>, age: Duration, batch: i64)
    -> Result<u64, sqlx::Error>;

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
