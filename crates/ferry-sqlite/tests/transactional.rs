//! The transactional consumer on SQLite and RabbitMQ
//! (`crates/ferry-testkit/store-suite/transactional.rs`, run here with this crate's [`backend`]).

mod backend;
#[path = "../../ferry-testkit/store-suite/common.rs"]
mod common;
#[path = "../../ferry-testkit/store-suite/transactional.rs"]
mod suite;
