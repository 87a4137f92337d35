//! The outbox store: where events wait, committed with the application's data, until the
//! relay has published them.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::OutgoingMessage;

mod options;
mod record;

pub use options::{MAX_ERROR_BYTES, OutboxOptions, RetryOutcome, report_dead, stored_error};
pub use record::{NewOutboxRow, OutboxRow, decode_message, encode_event};

/// An error kept as the source of a store error (a driver's error, a decoding error, …).
pub type StoreSource = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An outbox failure. The underlying error, when there is one, is the
/// [`source`](std::error::Error::source), not repeated in the message.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The database failed (the driver's error is the source).
    #[error("outbox database error")]
    Database(#[source] StoreSource),
    /// A row with this id is already there: event ids must be unique.
    #[error("an outbox row with id `{id}` already exists; event ids must be unique")]
    DuplicateId {
        /// The event id.
        id: String,
        /// The driver's error.
        #[source]
        source: StoreSource,
    },
    /// A stored row cannot be read back.
    #[error("outbox row `{id}` has unreadable {what}")]
    Unreadable {
        /// The row's id.
        id: String,
        /// Which part of it (`properties`, `headers`, …).
        what: &'static str,
        /// Why.
        #[source]
        source: StoreSource,
    },
    /// The event could not be encoded.
    #[error("cannot encode event for the outbox")]
    Encode(#[source] StoreSource),
    /// No row has that id.
    #[error("no outbox row with id `{0}`")]
    NotFound(String),
}

impl OutboxError {
    /// A database failure caused by `source`.
    pub fn database(source: impl Into<StoreSource>) -> Self {
        OutboxError::Database(source.into())
    }
}

/// A row's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxStatus {
    /// Waiting to be published.
    Pending,
    /// Published and confirmed.
    Published,
    /// Failed its attempts; kept for an operator to retry.
    Dead,
}

impl OutboxStatus {
    /// The status as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Published => "published",
            OutboxStatus::Dead => "dead",
        }
    }
}

/// A claimed outbox row: the message exactly as it will be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedOutboxRow {
    /// The event id (the row's key).
    pub id: String,
    /// Where and what to publish.
    pub message: OutgoingMessage,
    /// Failed publish attempts so far.
    pub attempts: u32,
    /// The partition key, if any.
    pub partition_key: Option<String>,
    /// When the row was added.
    pub created_at: DateTime<Utc>,
}

/// A failed publish of one row.
#[derive(Debug, Clone)]
pub struct OutboxFailure {
    /// The row.
    pub id: String,
    /// Why.
    pub error: String,
}

/// Counts for `ferry outbox status` and the metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutboxStats {
    /// Pending rows.
    pub pending: u64,
    /// Published rows (not yet removed by retention).
    pub published: u64,
    /// Dead rows.
    pub dead: u64,
    /// Age of the oldest pending row, in seconds.
    pub oldest_pending_age_s: Option<f64>,
}

/// Where outbox rows live, as the relay sees them.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Claims up to `limit` pending rows that are due, holding them for at most `lease` (a lease
    /// written to the rows, or row locks until they are marked) so no other relay takes them
    /// meanwhile. Rows sharing a partition key come in the order they were added, and a
    /// partition is never claimed while an earlier row of it is held elsewhere.
    async fn claim(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedOutboxRow>, OutboxError>;

    /// Marks rows published (one statement for the batch).
    async fn mark_published(&self, ids: &[String]) -> Result<(), OutboxError>;

    /// Records failed publishes: attempts go up, the next attempt is backed off, and a row past
    /// its maximum attempts becomes dead.
    async fn mark_failed(&self, failures: &[OutboxFailure]) -> Result<(), OutboxError>;

    /// Gives rows back without counting an attempt (the broker was unreachable).
    async fn release(&self, ids: &[String]) -> Result<(), OutboxError>;

    /// Waits until new rows may be there (a notification), or at most `timeout`.
    async fn wait_for_rows(&self, timeout: Duration) {
        tokio::time::sleep(timeout).await;
    }

    /// Counts rows by status.
    async fn stats(&self) -> Result<OutboxStats, OutboxError>;

    /// Deletes published rows older than the store's retention, in bounded batches; returns
    /// how many it deleted. The relay calls it every [`crate::RelayOptions::cleanup_interval`].
    /// The default keeps everything.
    async fn remove_expired(&self) -> Result<u64, OutboxError> {
        Ok(0)
    }

    /// The relay running on this store stopped ([`crate::OutboxRelay::run`] calls it last): a
    /// store that hands rows to its relay in memory gives them back to the table here. The
    /// default does nothing.
    async fn relay_stopped(&self) {}
}

#[async_trait]
impl<S: OutboxStore + ?Sized> OutboxStore for std::sync::Arc<S> {
    async fn claim(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedOutboxRow>, OutboxError> {
        (**self).claim(limit, lease).await
    }
    async fn mark_published(&self, ids: &[String]) -> Result<(), OutboxError> {
        (**self).mark_published(ids).await
    }
    async fn mark_failed(&self, failures: &[OutboxFailure]) -> Result<(), OutboxError> {
        (**self).mark_failed(failures).await
    }
    async fn release(&self, ids: &[String]) -> Result<(), OutboxError> {
        (**self).release(ids).await
    }
    async fn wait_for_rows(&self, timeout: Duration) {
        (**self).wait_for_rows(timeout).await
    }
    async fn stats(&self) -> Result<OutboxStats, OutboxError> {
        (**self).stats().await
    }
    async fn remove_expired(&self) -> Result<u64, OutboxError> {
        (**self).remove_expired().await
    }
    async fn relay_stopped(&self) {
        (**self).relay_stopped().await
    }
}
