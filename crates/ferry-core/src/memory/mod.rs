//! The in-memory transport and stores, for development and tests: no broker, no database.
//!
//! [`MemoryBus`] routes like a RabbitMQ topic exchange (the same matcher), runs consumers
//! through the same [`Pipeline`](crate::Pipeline) as the RabbitMQ transport, retries after
//! delays and dead-letters with the same headers. [`MemoryOutbox`] and [`MemoryInbox`] are the
//! stores, with the SQL stores' transactional API. Nothing survives the process.

mod bus;
mod consume;
mod inbox;
mod outbox;
mod transaction;

pub use bus::{MemoryBus, MemoryError};
pub use inbox::MemoryInbox;
pub use outbox::MemoryOutbox;
pub use transaction::MemoryOutboxTransaction;
