//! # ferry-sql
//!
//! The transactional outbox and idempotent inbox of ferry on a SQL database, on sqlx: one API,
//! the database behind a feature (`postgres`, `sqlite`), as sqlx does it.
//!
//! - [`SqlOutbox`]: add events inside your own transaction (they commit or roll back with your
//!   writes) and run [`ferry_core::OutboxRelay`] on it to publish them.
//! - [`OutboxTransaction`]: a transaction of the outbox ([`SqlOutbox::begin`]): add events and
//!   inbox rows in it; once it commits, the relay of this process is told. It is the outbox's
//!   [`TransactionalStore`](ferry_core::transactional::TransactionalStore) transaction, so a
//!   transactional consumer (`.handle_transactional(outbox, handler)`) runs the handler in it.
//! - [`SqlInbox`]: remembers which messages each consumer handled, keyed by (consumer,
//!   message id).
//! - [`DeadLetterStore`]: records dead letters byte for byte with their fault, groups, replays
//!   and deletes them; [`AuditLog`]: operators' actions.
//! - [`migrate()`]: creates ferry's tables (`docs/tables.md`), with ferry's own history table.
//!
//! Each database is a [`Dialect`] in a module of its own, which names the types as
//! applications know them: [`postgres`] (`PgOutbox`, `PgInbox`, `migrate`, …) and [`sqlite`]
//! (`SqliteOutbox`, `SqliteInbox`, `connect`, …). The dialect holds the SQL text and what only
//! that database does (claims with `FOR UPDATE SKIP LOCKED` or under SQLite's single writer,
//! `LISTEN/NOTIFY` or in-process wake-ups, the hand-off of committed events to the relay,
//! migrations); everything else is written once here.
//!
//! Code written against the outbox and inbox through [`TxContext`](ferry_core::TxContext)
//! runs unchanged on PostgreSQL, SQLite and the in-memory store
//! (`ferry_core::memory::MemoryOutbox`).
#![warn(missing_docs)]

mod audit;
pub mod dead_letters;
mod dialect;
mod inbox;
mod migrate;
mod outbox;
mod statement;
mod wakeup;

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use audit::{AuditEntry, AuditLog};
pub use dead_letters::DeadLetterStore;
pub use dialect::{Conn, Dialect, Migration, Pool, Row, Tx};
pub use inbox::SqlInbox;
pub use migrate::{MIGRATIONS_TABLE, MigrateError, migrate};
pub use outbox::{OutboxTransaction, SqlOutbox};
pub use wakeup::Wakeup;

/// The sqlx this crate is built on (use it to make the pool and transactions).
pub use sqlx;

/// The outbox's error for a driver's error, kept as its source.
fn db_error(e: sqlx::Error) -> ferry_core::OutboxError {
    ferry_core::OutboxError::Database(Box::new(e))
}
