//! What every database's outbox shares: how failed and old rows are treated, what a retry by an
//! operator did, and how a row's failure is recorded.

use std::time::Duration;

/// How an outbox treats failed rows and old ones (the same for every database).
///
/// ```
/// use std::time::Duration;
/// use ferry_core::outbox::OutboxOptions;
///
/// let options = OutboxOptions { max_attempts: 5, ..OutboxOptions::default() };
/// assert_eq!(options.retention, Duration::from_secs(7 * 24 * 3600));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxOptions {
    /// Failed publishes after which a row becomes `dead` (default 10).
    pub max_attempts: u32,
    /// The pause after the first failed publish of a row (default 1 s); it doubles with
    /// each further failure, up to `max_backoff`.
    pub base_backoff: Duration,
    /// The longest pause between two attempts of a row (default 5 min).
    pub max_backoff: Duration,
    /// How long published rows are kept before the store's `cleanup` deletes them
    /// (default 7 days). Zero keeps none: the SQL stores delete a row as they mark it
    /// published.
    pub retention: Duration,
    /// Rows deleted per statement by the store's `cleanup` (default 1,000).
    pub cleanup_batch: u32,
}

impl Default for OutboxOptions {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            retention: Duration::from_secs(7 * 24 * 3600),
            cleanup_batch: 1000,
        }
    }
}

/// What `retry` did to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOutcome {
    /// The row is pending again, its attempts reset and due now.
    Retried,
    /// The row was already published: nothing to retry.
    AlreadyPublished,
}

/// The longest publish error a row keeps, in bytes.
pub const MAX_ERROR_BYTES: usize = 4096;

/// A publish error as a row stores it: at most [`MAX_ERROR_BYTES`], cut on a character
/// boundary.
///
/// ```
/// let long = "é".repeat(4000);
/// let stored = ferry_core::outbox::stored_error(&long);
/// assert!(stored.len() <= ferry_core::outbox::MAX_ERROR_BYTES);
/// assert!(long.starts_with(&stored));
/// ```
pub fn stored_error(error: &str) -> String {
    if error.len() <= MAX_ERROR_BYTES {
        return error.to_owned();
    }
    let mut end = MAX_ERROR_BYTES;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    error[..end].to_owned()
}

/// Logs and counts rows that became dead after their last attempt (what every store does
/// after `mark_failed`).
pub fn report_dead<S: AsRef<str>>(ids: &[S], max_attempts: u32) {
    for id in ids {
        tracing::error!(id = %id.as_ref(), max_attempts, "outbox row is dead after its last attempt; `ferry outbox retry --id` brings it back");
    }
    if !ids.is_empty() {
        metrics::counter!("ferry_outbox_dead_total").increment(ids.len() as u64);
    }
}
