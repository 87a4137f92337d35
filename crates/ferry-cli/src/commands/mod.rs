//! One module a subcommand.

pub mod bench;
pub mod console;
pub mod contracts;
pub mod dlq;
pub mod outbox;
pub mod publish;
pub mod tail;
