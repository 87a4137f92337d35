use std::{
    collections::HashSet,
    sync::{Arc, Mutex, MutexGuard},
};

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::{Inbox, InboxError};

/// The recorded pairs, and those an open transaction holds (inserted, not committed).
#[derive(Debug, Default)]
struct State {
    seen: HashSet<(String, String)>,
    held: HashSet<(String, String)>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when a held pair is released (committed or rolled back).
    released: Notify,
}

/// An in-memory [`Inbox`]: the set of (consumer, message id) pairs processed.
///
/// A [`MemoryOutboxTransaction`](super::MemoryOutboxTransaction) inserts its rows here as a
/// database transaction does: held until it commits (then recorded) or rolls back (then
/// forgotten), and a second transaction inserting the same pair meanwhile waits for the first
/// to end.
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
    shared: Arc<Shared>,
}

impl MemoryInbox {
    /// An empty inbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many messages are recorded.
    pub fn len(&self) -> usize {
        self.lock().map(|s| s.seen.len()).unwrap_or(0)
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, InboxError> {
        self.shared
            .state
            .lock()
            .map_err(|_| InboxError::new("the in-memory inbox lock was poisoned by a panic"))
    }

    /// Holds the pair for a transaction; `false` when it is recorded already. Waits while
    /// another transaction holds it.
    pub(super) async fn hold(&self, consumer: &str, message_id: &str) -> Result<bool, InboxError> {
        let key = (consumer.to_owned(), message_id.to_owned());
        loop {
            let released = self.shared.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            {
                let mut state = self.lock()?;
                if state.seen.contains(&key) {
                    return Ok(false);
                }
                if !state.held.contains(&key) {
                    state.held.insert(key);
                    return Ok(true);
                }
            }
            released.await;
        }
    }

    /// Ends a transaction's hold on `keys`: recorded if it `committed`, forgotten otherwise.
    pub(super) fn release(&self, keys: Vec<(String, String)>, committed: bool) {
        if keys.is_empty() {
            return;
        }
        if let Ok(mut state) = self.lock() {
            for key in keys {
                state.held.remove(&key);
                if committed {
                    state.seen.insert(key);
                }
            }
        }
        self.shared.released.notify_waiters();
    }
}

#[async_trait]
impl Inbox for MemoryInbox {
    async fn is_processed(&self, consumer: &str, message_id: &str) -> Result<bool, InboxError> {
        let state = self.lock()?;
        Ok(state
            .seen
            .contains(&(consumer.to_owned(), message_id.to_owned())))
    }

    async fn mark_processed(&self, consumer: &str, message_id: &str) -> Result<bool, InboxError> {
        let mut state = self.lock()?;
        Ok(state
            .seen
            .insert((consumer.to_owned(), message_id.to_owned())))
    }
}
