//! The shared store suite on SQLite: the outbox store itself: migrations, rows, claims, leases, backoff, partitions, retry, retention, statistics
//! (`crates/ferry-testkit/store-suite/store.rs`, run here with this crate's [`backend`]).

mod backend;
#[path = "../../ferry-testkit/store-suite/common.rs"]
mod common;
#[path = "../../ferry-testkit/store-suite/store.rs"]
mod suite;
