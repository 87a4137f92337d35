//! The inbox: which messages a consumer has already processed.

use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::outbox::StoreSource;

/// An inbox failure (the store could not be reached, …): what failed, and the underlying
/// error as the [`source`](std::error::Error::source), not repeated in the message.
#[derive(Debug, thiserror::Error)]
#[error("inbox: {context}")]
pub struct InboxError {
    context: String,
    #[source]
    source: Option<StoreSource>,
}

impl InboxError {
    /// A failure with no underlying error.
    pub fn new(context: impl Into<String>) -> Self {
        Self {
            context: context.into(),
            source: None,
        }
    }

    /// A failure caused by `source` (a driver's error).
    pub fn with_source(context: impl Into<String>, source: impl Into<StoreSource>) -> Self {
        Self {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// What failed, without the source.
    pub fn context(&self) -> &str {
        &self.context
    }
}

/// Remembers processed messages per consumer, keyed by (consumer, message id).
///
/// The consumer pipeline checks it before calling the handler and records the message after
/// the handler succeeded. Database inboxes (`ferry-sql`'s `PgInbox`, `SqliteInbox`) also let a
/// handler insert the inbox row in its own transaction, which makes the handler exactly-once
/// in effect.
#[async_trait]
pub trait Inbox: Send + Sync {
    /// Whether `message_id` was already processed by `consumer`.
    async fn is_processed(&self, consumer: &str, message_id: &str) -> Result<bool, InboxError>;

    /// Records `message_id` as processed by `consumer`; `false` when it already was.
    async fn mark_processed(&self, consumer: &str, message_id: &str) -> Result<bool, InboxError>;

    /// Deletes records older than the inbox's retention, in bounded batches; returns how many
    /// it deleted. [`run_retention`] calls it on a schedule. The default keeps everything.
    async fn remove_expired(&self) -> Result<u64, InboxError> {
        Ok(0)
    }
}

/// Removes expired inbox records every `every` until `shutdown` is cancelled (the first pass
/// runs at once). Spawn it next to the consumers that use the inbox:
///
/// ```no_run
/// # use std::time::Duration;
/// # use ferry_core::{CancellationToken, Inbox, inbox::run_retention};
/// # async fn demo(inbox: impl Inbox + 'static) {
/// let shutdown = CancellationToken::new();
/// tokio::spawn(run_retention(inbox, Duration::from_secs(600), shutdown.clone()));
/// # }
/// ```
pub async fn run_retention<I: Inbox>(inbox: I, every: Duration, shutdown: CancellationToken) {
    loop {
        match inbox.remove_expired().await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "removed inbox records past retention"),
            Err(e) => tracing::warn!(error = %e, "could not remove inbox records past retention"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
