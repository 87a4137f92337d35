//! The PostgreSQL dialect: the transactional outbox and idempotent inbox of ferry on
//! PostgreSQL (feature `postgres`), under the names applications use.
//!
//! - [`PgOutbox`]: [`add`](PgOutbox::add) an event inside your own transaction (it commits or
//!   rolls back with your writes), and run [`ferry_core::OutboxRelay`] on it to publish.
//!   Any number of relays share one table: a claim locks its rows (`FOR UPDATE SKIP LOCKED`) in
//!   a transaction held until its batch is marked, for at most the lease (a relayed row is
//!   written once after its insert, by the mark; each batch in flight holds a connection), rows
//!   of one partition key go out in the order they were added, and relays wake on
//!   `LISTEN/NOTIFY` within milliseconds of a commit (polling stays as a fallback).
//! - [`OutboxTransaction`] ([`PgOutbox::begin`], or [`PgOutbox::transaction`] on a transaction you
//!   began): the same, and once it commits its events go straight to the relay running on the
//!   same outbox in this process, leased to it from their insert: no notification round trip and
//!   no claim query before the publish. If the process dies first, the lease runs out and any
//!   relay publishes them from the table. As the store of a transactional consumer
//!   (`.handle_transactional(outbox, handler)`), it runs the handler in such a transaction with
//!   the message's inbox row.
//! - [`PgInbox`]: remembers which messages each consumer handled, keyed by
//!   (consumer, message id); [`PgInbox::try_insert`] puts the inbox row in the handler's own
//!   transaction, so a redelivered or duplicated message changes the database at most once.
//! - [`fn@migrate`]: creates ferry's tables, with ferry's own history table `ferry_migrations`
//!   (never the application's `_sqlx_migrations`), safe to run from many processes at once.
//!
//! ```no_run
//! use ferry_core::{OutboxRelay, CancellationToken};
//! use ferry_sql::postgres::{PgOutbox, sqlx::PgPool};
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Serialize, Deserialize)]
//! # struct OrderCreated { order_id: String }
//! # impl ferry_core::IntegrationEvent for OrderCreated { const NAME: &'static str = "orders.order.created"; }
//! # async fn demo(publisher: impl ferry_core::Publisher + 'static) -> Result<(), Box<dyn std::error::Error>> {
//! let pool = PgPool::connect("postgres://postgres@127.0.0.1/app").await?;
//! ferry_sql::postgres::migrate(&pool).await?;
//! let outbox = PgOutbox::new(pool.clone());
//!
//! // The application's transaction: its own writes and the event commit together.
//! let mut tx = pool.begin().await?;
//! sqlx::query("INSERT INTO orders (id) VALUES ($1)").bind("o-1").execute(&mut *tx).await?;
//! let event_id = outbox.add(&mut tx, &OrderCreated { order_id: "o-1".into() }).await?;
//! tx.commit().await?;
//!
//! // The relay publishes it (in the background, for as long as the service runs).
//! let shutdown = CancellationToken::new();
//! tokio::spawn(OutboxRelay::new(outbox, publisher).run(shutdown.clone()));
//! # Ok(()) }
//! ```
//!
//! ## Tables (`docs/tables.md`)
//!
//! `ferry_outbox` has one row per event: `id` (the event id, primary key), `seq` (the order rows
//! were added), `status` (`pending`, `published` or `dead`), `attempts`, `last_error`,
//! `next_attempt_at`, `created_at`, `published_at`, what will be sent (`exchange`,
//! `routing_key`, `properties` and `headers` as JSON, `body` as `bytea`), `event_type`,
//! `partition_key`, and the lease (`locked_until`, `locked_by`). An insert trigger sends
//! `pg_notify('ferry_outbox', '')`, delivered when the transaction commits.
//!
//! `ferry_inbox` has the primary key (`consumer`, `message_id`) and `processed_at`.
//!
//! ## Durability
//!
//! An added event has the durability of the application's transaction. The relay's own
//! bookkeeping (a claim's transaction with its "published" marks) commits without waiting for
//! the WAL flush (`synchronous_commit = off` for those transactions only), which saves a disk
//! flush per batch:
//! a database crash may forget the last marks, and those rows are published again — allowed by
//! at-least-once delivery, and made harmless by the inbox.
//!
//! ## Ordering
//!
//! Rows that share a partition key are claimed in the order of `seq`, the order they were
//! inserted; a row is never claimed while an earlier pending row of its partition is held by
//! another relay, waits for its next attempt, or was not claimed with it. Two transactions that
//! add to one partition concurrently are ordered by insert, not by commit: make them touch a
//! common row (the aggregate) so one waits for the other, as an aggregate's writes do anyway.
//! A row that becomes `dead` no longer holds its partition back. Successive rows of one
//! partition may go out in one batch (in order, on one channel); if the broker refuses one of
//! them (nack, unroutable) while a later one of the same batch is confirmed, the refused row is
//! retried after it: order holds for rows that publish, not across a refusal.

mod dead_letters;
mod dialect;
mod listen;
mod schema;
mod sql;

use sqlx::PgPool;

pub use crate::migrate::{MIGRATIONS_TABLE, MigrateError};
pub use ferry_core::OutboxRow;
pub use ferry_core::outbox::{OutboxOptions, RetryOutcome};

/// The sqlx this crate is built on (use it to make the pool and transactions).
pub use sqlx;

/// The notification channel the outbox insert trigger signals.
pub const NOTIFY_CHANNEL: &str = "ferry_outbox";

/// The PostgreSQL [`Dialect`](crate::Dialect).
#[derive(Debug, Clone, Copy, Default)]
pub struct Postgres;

/// The PostgreSQL transactional outbox: add events in your transaction; run
/// [`ferry_core::OutboxRelay`] on it to publish them (see [`crate::SqlOutbox`]).
///
/// ```no_run
/// # use ferry_sql::postgres::{PgOutbox, sqlx::PgPool};
/// # use ferry_core::PublishOptions;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)]
/// # struct OrderCreated { order_id: String }
/// # impl ferry_core::IntegrationEvent for OrderCreated { const NAME: &'static str = "orders.order.created"; }
/// # async fn demo(pool: PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// let outbox = PgOutbox::new(pool.clone()).with_source("orders");
/// let mut tx = pool.begin().await?;
/// let options = PublishOptions {
///     partition_key: Some("order-1".into()),
///     correlation_id: Some("checkout-42".into()),
///     ..PublishOptions::default()
/// };
/// outbox.add_with(&mut tx, &OrderCreated { order_id: "order-1".into() }, options).await?;
/// tx.commit().await?;
/// # Ok(()) }
/// ```
pub type PgOutbox = crate::SqlOutbox<Postgres>;

/// The PostgreSQL inbox (see [`crate::SqlInbox`]).
pub type PgInbox = crate::SqlInbox<Postgres>;

/// A PostgreSQL transaction of a [`PgOutbox`] (see [`crate::OutboxTransaction`]).
pub type OutboxTransaction = crate::OutboxTransaction<Postgres>;

/// Creates or updates ferry's tables in the pool's database (see [`crate::migrate()`]).
pub async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    crate::migrate::migrate::<Postgres>(pool).await
}
