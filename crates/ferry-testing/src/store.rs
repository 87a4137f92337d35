//! The harness's stores: the in-memory outbox and inbox, or PostgreSQL's, behind one type, so
//! a transactional handler written against [`TxContext<T>`](ferry_core::transactional::TxContext)
//! for any [`StoreTransaction`] runs on both.

use std::time::Duration;

use async_trait::async_trait;
use ferry_core::{
    ClaimedOutboxRow, Inbox, InboxError, OutboxError, OutboxFailure, OutboxStats, OutboxStore,
    OutgoingMessage,
    memory::{MemoryInbox, MemoryOutbox, MemoryOutboxTransaction},
    transactional::{StoreTransaction, TransactionalStore},
};

/// The outbox (and inbox) a [`TestHarness`](crate::TestHarness) gives your wiring code: an
/// [`OutboxStore`] for the relay, a [`TransactionalStore`] for transactional handlers, and an
/// [`Inbox`] for `skip_processed`. Cheap to clone.
#[derive(Debug, Clone)]
pub enum TestStore {
    /// The in-memory outbox, with its inbox.
    Memory(MemoryOutbox),
    /// PostgreSQL's outbox and inbox, in the harness's own database.
    #[cfg(feature = "rabbitmq")]
    Postgres {
        /// The outbox.
        outbox: ferry_sql::postgres::PgOutbox,
        /// The inbox.
        inbox: ferry_sql::postgres::PgInbox,
    },
}

/// A transaction of a [`TestStore`].
#[derive(Debug)]
pub enum TestTransaction {
    /// An in-memory one.
    Memory(MemoryOutboxTransaction),
    /// A PostgreSQL one; run your statements on it (it derefs to the connection).
    #[cfg(feature = "rabbitmq")]
    Postgres(ferry_sql::postgres::OutboxTransaction),
}

#[async_trait]
impl OutboxStore for TestStore {
    async fn claim(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedOutboxRow>, OutboxError> {
        match self {
            TestStore::Memory(s) => s.claim(limit, lease).await,
            #[cfg(feature = "rabbitmq")]
            TestStore::Postgres { outbox, .. } => outbox.claim(limit, lease).await,
        }
    }

    async fn mark_published(&self, ids: &[String]) -> Result<(), OutboxError> {
        match self {
            TestStore::Memory(s) => s.mark_published(ids).await,
            #[cfg(feature = "rabbitmq")]
            TestStore::Postgres { outbox, .. } => outbox.mark_published(ids).await,
        }
    }

    async fn mark_failed(&self, failures: &[OutboxFailure]) -> Result<(), OutboxError> {
        match self {
            TestStore::Memory(s) => s.mark_failed(failures).await,
            #[cfg(feature = "rabbitmq")]
            TestStore::Postgres { outbox, .. } => outbox.mark_failed(failures).await,
        }
    }

    async fn release(&self, ids: &[String]) -> Result<(), OutboxError> {
        match self {
            TestStore::Memory(s) => s.release(ids).await,
            #[cfg(feature = "rabbitmq")]
            TestStore::Postgres { outbox, .. } => outbox.release(ids).await,
        }
    }

    async fn wait_for_rows(&self, timeout: Duration) {
        match self {
            TestStore::Memory(s) => s.wait_for_rows(timeout).await,
            #[cfg(feature = "rabbitmq")]
            TestStore::Postgres { outbox, .. } => outbox.wait_for_rows(timeout).await,
        }
    }

    async fn stats(&self) -> Result<OutboxStats, OutboxError> {
        match self {
            TestStore::Memory(s) => s.stats().await,
            #[cfg(feature = "rabbitmq")]
            TestStore::Postgres { outbox, .. } => outbox.stats().await,
        }
    }

    async fn remove_expired(&self) -> Result<u64, OutboxError> {
        match self {
            TestStore::Memory(s) => s.remove_expired().await,
            #[cfg(feature = "rabbitmq")]
            TestStore::Postgres { outbox, .. } => outbox.remove_expired().await,
        }
    }

    async fn relay_stopped(&self) {
        match self {
            TestStore::Memory(s) => s.relay_stopped().await,
            #[cfg(feature = "rabbitmq")]
            TestStore::Postgres { outbox, .. } => outbox.relay_stopped().await,
        }
    }
}

#[async_trait]
impl TransactionalStore for TestStore {
    type Transaction = TestTransaction;

    async fn begin(&self) -> Result<TestTransaction, OutboxError> {
        match self {
            TestStore::Memory(s) => Ok(TestTransaction::Memory(s.begin().await?)),
            #[cfg(feature = "rabbitmq")]
            TestStore::Postgres { outbox, .. } => Ok(TestTransaction::Postgres(
                TransactionalStore::begin(outbox).await?,
            )),
        }
    }
}

#[async_trait]
impl StoreTransaction for TestTransaction {
    async fn insert_inbox(&mut self, consumer: &str, message_id: &str) -> Result<bool, InboxError> {
        match self {
            TestTransaction::Memory(tx) => {
                StoreTransaction::insert_inbox(tx, consumer, message_id).await
            }
            #[cfg(feature = "rabbitmq")]
            TestTransaction::Postgres(tx) => {
                StoreTransaction::insert_inbox(tx, consumer, message_id).await
            }
        }
    }

    fn default_source(&self) -> Option<&str> {
        match self {
            TestTransaction::Memory(tx) => StoreTransaction::default_source(tx),
            #[cfg(feature = "rabbitmq")]
            TestTransaction::Postgres(tx) => StoreTransaction::default_source(tx),
        }
    }

    async fn add_encoded(
        &mut self,
        message: OutgoingMessage,
        event_type: String,
        partition_key: Option<String>,
    ) -> Result<String, OutboxError> {
        match self {
            TestTransaction::Memory(tx) => {
                StoreTransaction::add_encoded(tx, message, event_type, partition_key).await
            }
            #[cfg(feature = "rabbitmq")]
            TestTransaction::Postgres(tx) => {
                StoreTransaction::add_encoded(tx, message, event_type, partition_key).await
            }
        }
    }

    async fn commit(self) -> Result<(), OutboxError> {
        match self {
            TestTransaction::Memory(tx) => StoreTransaction::commit(tx).await,
            #[cfg(feature = "rabbitmq")]
            TestTransaction::Postgres(tx) => StoreTransaction::commit(tx).await,
        }
    }

    async fn rollback(self) -> Result<(), OutboxError> {
        match self {
            TestTransaction::Memory(tx) => StoreTransaction::rollback(tx).await,
            #[cfg(feature = "rabbitmq")]
            TestTransaction::Postgres(tx) => StoreTransaction::rollback(tx).await,
        }
    }
}

#[async_trait]
impl Inbox for TestStore {
    async fn is_processed(&self, consumer: &str, message_id: &str) -> Result<bool, InboxError> {
        match self {
            TestStore::Memory(s) => s.inbox().is_processed(consumer, message_id).await,
            #[cfg(feature = "rabbitmq")]
            TestStore::Postgres { inbox, .. } => inbox.is_processed(consumer, message_id).await,
        }
    }

    async fn mark_processed(&self, consumer: &str, message_id: &str) -> Result<bool, InboxError> {
        match self {
            TestStore::Memory(s) => s.inbox().mark_processed(consumer, message_id).await,
            #[cfg(feature = "rabbitmq")]
            TestStore::Postgres { inbox, .. } => inbox.mark_processed(consumer, message_id).await,
        }
    }
}

impl TestStore {
    /// A fresh in-memory outbox and inbox.
    pub fn memory() -> Self {
        TestStore::Memory(MemoryOutbox::new().with_inbox(MemoryInbox::new()))
    }

    /// The in-memory outbox, when the harness runs on memory (to add rows or look at them).
    pub fn memory_outbox(&self) -> Option<&MemoryOutbox> {
        match self {
            TestStore::Memory(outbox) => Some(outbox),
            #[cfg(feature = "rabbitmq")]
            TestStore::Postgres { .. } => None,
        }
    }
}
