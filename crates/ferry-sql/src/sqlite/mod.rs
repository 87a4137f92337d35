//! The SQLite dialect (feature `sqlite`): the embedded transactional outbox and idempotent
//! inbox of ferry, with the same API and behaviour as on PostgreSQL, within what SQLite can
//! give, under the names applications use.
//!
//! - [`SqliteOutbox`]: [`add`](SqliteOutbox::add) an event inside your own transaction (it
//!   commits or rolls back with your writes), and run [`ferry_core::OutboxRelay`] on it.
//! - [`SqliteInbox`]: remembers which messages each consumer handled, keyed by
//!   (consumer, message id); [`SqliteInbox::try_insert`] puts the inbox row in the handler's
//!   own transaction, so a redelivered or duplicated message changes the database at most once.
//! - [`fn@migrate`]: creates ferry's tables, with ferry's own history table `ferry_migrations`
//!   (never the application's `_sqlx_migrations`).
//! - [`connect`]: a pool with the settings the outbox wants (WAL, a busy timeout, the file
//!   created if missing).
//!
//! ```no_run
//! use ferry_core::{CancellationToken, OutboxRelay};
//! use ferry_sql::sqlite::SqliteOutbox;
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Serialize, Deserialize)]
//! # struct OrderCreated { order_id: String }
//! # impl ferry_core::IntegrationEvent for OrderCreated { const NAME: &'static str = "orders.order.created"; }
//! # async fn demo(publisher: impl ferry_core::Publisher + 'static) -> Result<(), Box<dyn std::error::Error>> {
//! let pool = ferry_sql::sqlite::connect("sqlite:app.sqlite").await?;
//! ferry_sql::sqlite::migrate(&pool).await?;
//! let outbox = SqliteOutbox::new(pool.clone());
//!
//! // BEGIN IMMEDIATE takes the write lock up front (see "Transactions" below).
//! let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
//! sqlx::query("INSERT INTO orders (id) VALUES (?)").bind("o-1").execute(&mut *tx).await?;
//! outbox.add(&mut tx, &OrderCreated { order_id: "o-1".into() }).await?;
//! tx.commit().await?;
//!
//! let shutdown = CancellationToken::new();
//! tokio::spawn(OutboxRelay::new(outbox, publisher).run(shutdown.clone()));
//! # Ok(()) }
//! ```
//!
//! ## Tables (`docs/tables.md`)
//!
//! `ferry_outbox`: `id` (the event id, primary key), `seq` (the order rows were added),
//! `status` (`pending`, `published`, `dead`), `attempts`, `last_error`, `next_attempt_at`,
//! `created_at`, `published_at`, `event_type`, what will be sent (`exchange`, `routing_key`,
//! `properties` and `headers` as JSON text, `body` as a BLOB), `partition_key`, and the lease
//! (`locked_until`, `locked_by`). Times are integers: milliseconds since the Unix epoch, UTC.
//!
//! `ferry_inbox`: primary key (`consumer`, `message_id`), `processed_at` (milliseconds).
//!
//! ## Differences from PostgreSQL
//!
//! - **One process.** SQLite is an embedded database: relays and writers share one process
//!   (any number of relays in it is fine). Relays in other processes work, but only by polling.
//! - **Claims** are one `UPDATE … RETURNING` with a lease. SQLite has one writer at a time, so no
//!   `SKIP LOCKED` is needed: two relays never claim the same row while its lease holds.
//! - **Wake-ups.** There is no `LISTEN/NOTIFY`. Adding a row wakes the relays of this process
//!   (every outbox on the same database file shares the signal); since the add comes before the
//!   commit, a relay that finds nothing looks again 1 ms, 2 ms, 4 ms … after the add, until the
//!   poll interval — a commit is seen within about its own delay. [`SqliteOutbox::notify`]
//!   wakes relays at once (call it after a commit if you want). Polling stays as a fallback.
//! - **Ordering.** Writers are serialized, so `seq` (insert order) is also commit order: rows of
//!   a partition key go out in the order they committed, even from concurrent transactions.
//!   As on PostgreSQL, a row the broker refuses is retried after later rows of its partition
//!   that were confirmed in the same batch, and a `dead` row no longer holds its partition.
//! - **Transactions.** Begin your transactions with `BEGIN IMMEDIATE`
//!   (`pool.begin_with("BEGIN IMMEDIATE")`): a deferred transaction that reads before it
//!   writes can fail with `SQLITE_BUSY` when another connection wrote meanwhile, instead of
//!   waiting for the busy timeout. Two copies of a message handled at once: the second waits
//!   for the first's write lock (up to the busy timeout), then sees its inbox row.
//! - **Durability.** With WAL and `synchronous = NORMAL` (what [`connect`] sets) a commit can be
//!   lost on power failure (not on a process crash); use `synchronous = FULL` if that matters.

mod dead_letters;
mod dialect;
mod schema;
mod sql;
mod wakeup;

use std::{str::FromStr, time::Duration};

use sqlx::{
    SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

pub use crate::migrate::{MIGRATIONS_TABLE, MigrateError};
pub use ferry_core::OutboxRow;
pub use ferry_core::outbox::{OutboxOptions, RetryOutcome};

/// The sqlx this crate is built on (use it to make the pool and transactions).
pub use sqlx;

/// The SQLite [`Dialect`](crate::Dialect).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sqlite;

/// The SQLite transactional outbox: add events in your transaction; run
/// [`ferry_core::OutboxRelay`] on it to publish them (see [`crate::SqlOutbox`]). All outboxes of
/// the process on one database file share the wake-up signal (see the module docs).
///
/// ```no_run
/// # use ferry_sql::sqlite::SqliteOutbox;
/// # use ferry_core::PublishOptions;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)]
/// # struct OrderCreated { order_id: String }
/// # impl ferry_core::IntegrationEvent for OrderCreated { const NAME: &'static str = "orders.order.created"; }
/// # async fn demo(pool: sqlx::SqlitePool) -> Result<(), Box<dyn std::error::Error>> {
/// let outbox = SqliteOutbox::new(pool.clone()).with_source("orders");
/// let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
/// let options = PublishOptions {
///     partition_key: Some("order-1".into()),
///     ..PublishOptions::default()
/// };
/// outbox.add_with(&mut tx, &OrderCreated { order_id: "order-1".into() }, options).await?;
/// tx.commit().await?;
/// # Ok(()) }
/// ```
pub type SqliteOutbox = crate::SqlOutbox<Sqlite>;

/// The SQLite inbox (see [`crate::SqlInbox`]).
pub type SqliteInbox = crate::SqlInbox<Sqlite>;

/// A SQLite transaction of a [`SqliteOutbox`] (see [`crate::OutboxTransaction`]).
pub type OutboxTransaction = crate::OutboxTransaction<Sqlite>;

impl crate::SqlOutbox<Sqlite> {
    /// Wakes the relays of this process at once (e.g. right after a commit made without an
    /// [`OutboxTransaction`]).
    pub fn notify(&self) {
        self.wakeup().bump();
    }
}

/// Creates or updates ferry's tables in the pool's database (see [`crate::migrate()`]).
pub async fn migrate(pool: &SqlitePool) -> Result<(), MigrateError> {
    crate::migrate::migrate::<Sqlite>(pool).await
}

/// Connection options for `url` (`sqlite:path`, `sqlite://path`, `sqlite::memory:`) with what
/// the outbox wants: WAL journal, `synchronous = NORMAL`, a 10 s busy timeout, the file created
/// if missing.
pub fn connect_options(url: &str) -> Result<SqliteConnectOptions, sqlx::Error> {
    Ok(SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10)))
}

/// A pool on `url` with [`connect_options`] (at most 8 connections).
pub async fn connect(url: &str) -> Result<SqlitePool, sqlx::Error> {
    SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(connect_options(url)?)
        .await
}
