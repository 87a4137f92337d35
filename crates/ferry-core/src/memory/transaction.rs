//! [`MemoryOutboxTransaction`]: a transaction of the in-memory outbox, with the SQL outboxes'
//! API, so handler code runs unchanged on memory, PostgreSQL and SQLite.

use async_trait::async_trait;

use super::MemoryOutbox;
use crate::{
    InboxError, IntegrationEvent, OutboxError, OutgoingMessage, PublishOptions,
    outbox::encode_event,
    transactional::{StoreTransaction, TransactionalStore},
};

/// Events and inbox rows staged in memory until commit, like a database transaction: on
/// commit the inbox rows are recorded and the events become visible to the relay (which is
/// woken); on rollback, or when dropped uncommitted, nothing stays.
#[derive(Debug)]
#[must_use = "a transaction adds nothing until it is committed"]
pub struct MemoryOutboxTransaction {
    outbox: MemoryOutbox,
    staged: Vec<(OutgoingMessage, Option<String>)>,
    inbox_rows: Vec<(String, String)>,
}

impl MemoryOutboxTransaction {
    pub(super) fn new(outbox: MemoryOutbox) -> Self {
        Self {
            outbox,
            staged: Vec::new(),
            inbox_rows: Vec::new(),
        }
    }

    /// Stages `event`, routed by its name; returns its id.
    pub async fn add<E: IntegrationEvent>(&mut self, event: &E) -> Result<String, OutboxError> {
        self.add_with(event, PublishOptions::default()).await
    }

    /// Stages `event` with options; returns its id.
    pub async fn add_with<E: IntegrationEvent>(
        &mut self,
        event: &E,
        options: PublishOptions,
    ) -> Result<String, OutboxError> {
        let (message, event_type, partition_key) = encode_event(event, options, None)?;
        self.add_encoded(message, event_type, partition_key).await
    }

    /// Stages a message encoded as it will be sent (see [`crate::outbox::encode_event`]).
    pub async fn add_encoded(
        &mut self,
        message: OutgoingMessage,
        _event_type: String,
        partition_key: Option<String>,
    ) -> Result<String, OutboxError> {
        let id = message.id().to_owned();
        self.staged.push((message, partition_key));
        Ok(id)
    }

    /// Records `message_id` as processed by `consumer` in this transaction (in the outbox's
    /// [`MemoryOutbox::inbox`]); `false` when it already was. A transaction holding the same
    /// pair makes this wait for its end.
    pub async fn insert_inbox(
        &mut self,
        consumer: &str,
        message_id: &str,
    ) -> Result<bool, InboxError> {
        let inserted = self.outbox.inbox().hold(consumer, message_id).await?;
        if inserted {
            self.inbox_rows
                .push((consumer.to_owned(), message_id.to_owned()));
        }
        Ok(inserted)
    }

    /// Commits: the inbox rows are recorded and the events go to the relay.
    pub async fn commit(mut self) -> Result<(), OutboxError> {
        let staged = std::mem::take(&mut self.staged);
        let inbox_rows = std::mem::take(&mut self.inbox_rows);
        let inserted = self.outbox.insert(staged);
        // A failed insert (a poisoned lock) is a failed commit: the inbox rows go too.
        self.outbox.inbox().release(inbox_rows, inserted.is_ok());
        inserted
    }

    /// Rolls back: nothing stays (dropping the transaction does the same).
    pub async fn rollback(self) -> Result<(), OutboxError> {
        Ok(())
    }
}

impl Drop for MemoryOutboxTransaction {
    fn drop(&mut self) {
        let held = std::mem::take(&mut self.inbox_rows);
        self.outbox.inbox().release(held, false);
    }
}

#[async_trait]
impl StoreTransaction for MemoryOutboxTransaction {
    async fn insert_inbox(&mut self, consumer: &str, message_id: &str) -> Result<bool, InboxError> {
        MemoryOutboxTransaction::insert_inbox(self, consumer, message_id).await
    }

    fn default_source(&self) -> Option<&str> {
        None
    }

    async fn add_encoded(
        &mut self,
        message: OutgoingMessage,
        event_type: String,
        partition_key: Option<String>,
    ) -> Result<String, OutboxError> {
        MemoryOutboxTransaction::add_encoded(self, message, event_type, partition_key).await
    }

    async fn commit(self) -> Result<(), OutboxError> {
        MemoryOutboxTransaction::commit(self).await
    }

    async fn rollback(self) -> Result<(), OutboxError> {
        MemoryOutboxTransaction::rollback(self).await
    }
}

#[async_trait]
impl TransactionalStore for MemoryOutbox {
    type Transaction = MemoryOutboxTransaction;

    async fn begin(&self) -> Result<MemoryOutboxTransaction, OutboxError> {
        MemoryOutbox::begin(self).await
    }
}
