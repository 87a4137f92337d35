//! [`OutboxTransaction`]: the caller's transaction, adding events and waking this process's
//! relays once it commits.

use std::ops::{Deref, DerefMut};

use async_trait::async_trait;
use ferry_core::{
    InboxError, IntegrationEvent, OutboxError, OutboxRecord, OutgoingMessage, PublishOptions,
    transactional::{StoreTransaction, TransactionalStore},
};
use sqlx::{Sqlite, SqliteConnection, Transaction};

use super::SqliteOutbox;
use crate::db_error;

/// A database transaction that adds events to the outbox and, once it commits, wakes the
/// relays of this process, so they claim the events at once. The same API as
/// `ferry_postgres::OutboxTransaction` (where the events are also handed to the relay without a
/// claim); here every event takes the table's way.
///
/// Run your own statements on it as on a sqlx transaction, with `&mut *tx`:
///
/// ```no_run
/// # use ferry_sqlite::{SqliteOutbox, sqlx::SqlitePool};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)]
/// # struct OrderCreated { order_id: String }
/// # impl ferry_core::IntegrationEvent for OrderCreated { const NAME: &'static str = "orders.order.created"; }
/// # async fn demo(outbox: SqliteOutbox) -> Result<(), Box<dyn std::error::Error>> {
/// let mut tx = outbox.begin().await?;
/// sqlx::query("INSERT INTO orders (id) VALUES (?1)")
///     .bind("order-1")
///     .execute(&mut *tx)
///     .await?;
/// tx.add(&OrderCreated { order_id: "order-1".into() }).await?;
/// tx.commit().await?; // the order and its event, or neither
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct OutboxTransaction {
    tx: Transaction<'static, Sqlite>,
    outbox: SqliteOutbox,
}

impl OutboxTransaction {
    pub(super) fn new(tx: Transaction<'static, Sqlite>, outbox: SqliteOutbox) -> Self {
        Self { tx, outbox }
    }

    /// Adds `event`, routed by its name; returns its id.
    pub async fn add<E: IntegrationEvent>(&mut self, event: &E) -> Result<String, OutboxError> {
        self.add_with(event, PublishOptions::default()).await
    }

    /// Adds `event` with options (see [`SqliteOutbox::add_with`]); returns its id.
    pub async fn add_with<E: IntegrationEvent>(
        &mut self,
        event: &E,
        options: PublishOptions,
    ) -> Result<String, OutboxError> {
        let outbox = self.outbox.clone();
        outbox.add_with(&mut self.tx, event, options).await
    }

    /// Commits, then wakes the relays.
    pub async fn commit(self) -> Result<(), OutboxError> {
        self.tx.commit().await.map_err(db_error)?;
        self.outbox.notify();
        Ok(())
    }

    /// Rolls back: nothing was added.
    pub async fn rollback(self) -> Result<(), OutboxError> {
        self.tx.rollback().await.map_err(db_error)
    }
}

#[async_trait]
impl StoreTransaction for OutboxTransaction {
    async fn insert_inbox(&mut self, consumer: &str, message_id: &str) -> Result<bool, InboxError> {
        crate::inbox::insert_row(&mut self.tx, consumer, message_id).await
    }

    fn default_source(&self) -> Option<&str> {
        self.outbox.source.as_deref()
    }

    async fn add_encoded(
        &mut self,
        message: OutgoingMessage,
        event_type: String,
        partition_key: Option<String>,
    ) -> Result<String, OutboxError> {
        let row = OutboxRecord::from_encoded(message, event_type, partition_key)?;
        let outbox = self.outbox.clone();
        outbox.insert(&mut self.tx, row).await
    }

    async fn commit(self) -> Result<(), OutboxError> {
        OutboxTransaction::commit(self).await
    }

    async fn rollback(self) -> Result<(), OutboxError> {
        OutboxTransaction::rollback(self).await
    }
}

#[async_trait]
impl TransactionalStore for SqliteOutbox {
    type Transaction = OutboxTransaction;

    async fn begin(&self) -> Result<OutboxTransaction, OutboxError> {
        SqliteOutbox::begin(self).await
    }
}

impl Deref for OutboxTransaction {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.tx
    }
}

impl DerefMut for OutboxTransaction {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }
}
