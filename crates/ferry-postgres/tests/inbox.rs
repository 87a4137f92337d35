//! The shared store suite on PostgreSQL: idempotent handlers whose writes, inbox row and outbox events share one transaction
//! (`crates/ferry-testkit/store-suite/inbox.rs`, run here with this crate's [`backend`]).

mod backend;
#[path = "../../ferry-testkit/store-suite/common.rs"]
mod common;
#[path = "../../ferry-testkit/store-suite/inbox.rs"]
mod suite;
