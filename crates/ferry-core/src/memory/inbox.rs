use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;

use crate::{Inbox, InboxError};

/// An in-memory [`Inbox`]: the set of (consumer, message id) pairs processed.
///
/// ```
/// # tokio_test_block_on(async {
/// use ferry_core::{Inbox, memory::MemoryInbox};
/// let inbox = MemoryInbox::new();
/// assert!(inbox.mark_processed("q", "m-1").await.unwrap());
/// assert!(!inbox.mark_processed("q", "m-1").await.unwrap());
/// assert!(inbox.is_processed("q", "m-1").await.unwrap());
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryInbox {
    seen: Arc<Mutex<HashSet<(String, String)>>>,
}

impl MemoryInbox {
    /// An empty inbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many messages are recorded.
    pub fn len(&self) -> usize {
        self.seen.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn poisoned() -> InboxError {
    InboxError("the in-memory inbox lock was poisoned by a panic".into())
}

#[async_trait]
impl Inbox for MemoryInbox {
    async fn is_processed(&self, consumer: &str, message_id: &str) -> Result<bool, InboxError> {
        let seen = self.seen.lock().map_err(|_| poisoned())?;
        Ok(seen.contains(&(consumer.to_owned(), message_id.to_owned())))
    }

    async fn mark_processed(&self, consumer: &str, message_id: &str) -> Result<bool, InboxError> {
        let mut seen = self.seen.lock().map_err(|_| poisoned())?;
        Ok(seen.insert((consumer.to_owned(), message_id.to_owned())))
    }
}
