//! Internal test support for ferry's integration tests (not published).
//!
//! - [`unique_name`] / [`unique_ident`]: random names so tests sharing one broker and one
//!   database server never collide.
//! - [`TcpProxy`]: a TCP proxy that injects network faults (refused connections, cut
//!   connections, partitions, stalled replies) between a client and a real service.
//! - [`pg::TempDatabase`]: a throw-away PostgreSQL database.
//! - [`amqp`]: the RabbitMQ URL to test against.
//! - [`cluster::Cluster`]: a local three-node RabbitMQ cluster (`scripts/cluster`) to break.
//! - [`init_tracing`]: log output captured by the test harness.
//! - `store_suite` (feature `store-suite`): the outbox and inbox suite, written once over the
//!   database, that `ferry-sql` runs on PostgreSQL and SQLite.
#![warn(missing_docs)]

pub mod amqp;
pub mod cluster;
pub mod pg;
mod proxy;
#[cfg(feature = "store-suite")]
pub mod store_suite;
pub mod watch;

pub use proxy::{ProxyMode, TcpProxy};

use std::sync::Once;

/// A random suffix: `len` lowercase hex digits from a fresh UUID v4.
fn random_suffix(len: usize) -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    hex[..len.min(hex.len())].to_owned()
}

/// A name unique to this call: `"{prefix}-{12 random lowercase hex digits}"`.
///
/// Valid as a RabbitMQ queue or exchange name (for any prefix that is). For PostgreSQL
/// identifiers use [`unique_ident`].
///
/// ```
/// let name = ferry_testkit::unique_name("orders");
/// assert!(name.starts_with("orders-"));
/// assert_ne!(name, ferry_testkit::unique_name("orders"));
/// ```
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", random_suffix(12))
}

/// A unique identifier safe to use unquoted in PostgreSQL (a database, schema or table name):
/// `"{prefix}_{12 random lowercase hex digits}"`, only `[a-z0-9_]`, starting with a letter or
/// `_`, at most 63 bytes.
///
/// The prefix is lowercased; any other character than `[a-z0-9_]` becomes `_`.
///
/// ```
/// let ident = ferry_testkit::unique_ident("Ferry-Test");
/// assert!(ident.starts_with("ferry_test_"));
/// assert!(ident.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
/// ```
pub fn unique_ident(prefix: &str) -> String {
    let mut ident: String = prefix
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if ident.starts_with(|c: char| c.is_ascii_digit()) {
        ident.insert(0, '_');
    }
    let suffix = random_suffix(12);
    // 63 bytes is PostgreSQL's identifier limit; keep the whole random suffix.
    ident.truncate(63 - suffix.len() - 1);
    format!("{ident}_{suffix}")
}

/// Installs a `tracing` subscriber writing through the test harness's captured output
/// (shown for failing tests, or with `--nocapture`).
///
/// The filter comes from `RUST_LOG`; without it, `info` (with `lapin` and `sqlx` at `warn`).
/// Calling it again, from any test, does nothing.
///
/// ```
/// ferry_testkit::init_tracing();
/// ferry_testkit::init_tracing();
/// ```
pub fn init_tracing() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,lapin=warn,sqlx=warn"));
        // Another subscriber may already be global (set by the test itself): keep it.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}
