//! The shared store suite on SQLite: the outbox and the core relay on the real RabbitMQ publisher
//! (`crates/ferry-testkit/store-suite/rabbitmq.rs`, run here with this crate's [`backend`]).

mod backend;
#[path = "../../ferry-testkit/store-suite/common.rs"]
mod common;
#[path = "../../ferry-testkit/store-suite/rabbitmq.rs"]
mod suite;
