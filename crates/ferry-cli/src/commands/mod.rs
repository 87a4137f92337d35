//! One module a subcommand.

pub mod dlq;
pub mod outbox;
pub mod publish;
pub mod tail;
