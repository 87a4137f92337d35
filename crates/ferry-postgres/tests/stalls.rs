//! The shared store suite on PostgreSQL: a broker that stops answering costs outbox rows no attempt
//! (`crates/ferry-testkit/store-suite/stalls.rs`, run here with this crate's [`backend`]).

mod backend;
#[path = "../../ferry-testkit/store-suite/common.rs"]
mod common;
#[path = "../../ferry-testkit/store-suite/stalls.rs"]
mod suite;
