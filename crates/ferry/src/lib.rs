//! # ferry
//!
//! Integration events between bounded contexts over RabbitMQ, with a transactional outbox,
//! idempotent consumers, plugin-free delayed retries, dead-lettering with replay tools, and a
//! Mediator for commands, queries and notifications.
//!
//! This crate is the facade: it re-exports [`ferry_core`] and, behind features, the adapters
//! (`rabbitmq`, on by default; `postgres`; `sqlite`).

pub use ferry_core::*;
pub use ferry_macros::IntegrationEvent;

#[cfg(feature = "rabbitmq")]
pub use ferry_rabbitmq as rabbitmq;

#[cfg(feature = "postgres")]
pub use ferry_postgres as postgres;

#[cfg(feature = "sqlite")]
pub use ferry_sqlite as sqlite;
