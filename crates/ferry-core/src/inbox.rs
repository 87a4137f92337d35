//! The inbox: which messages a consumer has already processed.

use async_trait::async_trait;

/// An inbox failure (the store could not be reached, …).
#[derive(Debug, thiserror::Error)]
#[error("inbox: {0}")]
pub struct InboxError(pub String);

/// Remembers processed messages per consumer, keyed by (consumer, message id).
///
/// The consumer pipeline checks it before calling the handler and records the message after
/// the handler succeeded. Database inboxes (`ferry-postgres`, `ferry-sqlite`) also let a
/// handler insert the inbox row in its own transaction, which makes the handler exactly-once
/// in effect.
#[async_trait]
pub trait Inbox: Send + Sync {
    /// Whether `message_id` was already processed by `consumer`.
    async fn is_processed(&self, consumer: &str, message_id: &str) -> Result<bool, InboxError>;

    /// Records `message_id` as processed by `consumer`; `false` when it already was.
    async fn mark_processed(&self, consumer: &str, message_id: &str) -> Result<bool, InboxError>;
}
