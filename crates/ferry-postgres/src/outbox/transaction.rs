//! [`OutboxTransaction`]: the caller's transaction, adding events that go to this process's
//! relay the moment it commits.

use std::{
    ops::{Deref, DerefMut},
    time::Instant,
};

use async_trait::async_trait;
use chrono::Utc;
use ferry_core::{
    InboxError, IntegrationEvent, OutboxError, OutboxMessage, OutboxRecord, OutgoingMessage,
    PublishOptions,
    outbox::encode_event,
    transactional::{StoreTransaction, TransactionalStore},
};
use sqlx::{PgConnection, Postgres, Transaction};

use super::{PgOutbox, insert};
use crate::db_error;

/// A database transaction that adds events to the outbox and, once it commits, hands them
/// straight to the [`ferry_core::OutboxRelay`] running on the same [`PgOutbox`] (a clone of it)
/// in this process: the relay publishes them without waiting for the notification or
/// claiming them from the table, a few milliseconds sooner.
///
/// The guarantees are the table's: each event is a pending row that commits or rolls back
/// with your writes. Until the relay has published it, the row is leased to that relay, so no
/// other relay publishes it meanwhile; should the relay stop first, it gives the row back to
/// the table, and should this process die first, the lease runs out and any relay publishes
/// it from the table. Events with a partition key, events added while
/// no relay claims on this outbox, and events added with [`PgOutbox::add_with`] on a
/// transaction of your own take the table's way (the notification, then a claim).
///
/// Run your own statements on it as on a sqlx transaction, with `&mut *tx`:
///
/// ```no_run
/// # use ferry_postgres::{PgOutbox, sqlx::PgPool};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)]
/// # struct OrderCreated { order_id: String }
/// # impl ferry_core::IntegrationEvent for OrderCreated { const NAME: &'static str = "orders.order.created"; }
/// # async fn demo(pool: PgPool, outbox: PgOutbox) -> Result<(), Box<dyn std::error::Error>> {
/// let mut tx = outbox.begin().await?;
/// sqlx::query("INSERT INTO orders (id) VALUES ($1)")
///     .bind("order-1")
///     .execute(&mut *tx)
///     .await?;
/// tx.add(&OrderCreated { order_id: "order-1".into() }).await?;
/// tx.commit().await?; // the order and its event, or neither; then the event goes out
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct OutboxTransaction {
    tx: Transaction<'static, Postgres>,
    outbox: PgOutbox,
    handed: Vec<OutboxMessage>,
    /// When the first handed row's lease started.
    leased_at: Option<Instant>,
}

impl OutboxTransaction {
    pub(super) fn new(tx: Transaction<'static, Postgres>, outbox: PgOutbox) -> Self {
        Self {
            tx,
            outbox,
            handed: Vec::new(),
            leased_at: None,
        }
    }

    /// Adds `event`, routed by its name; returns its id.
    pub async fn add<E: IntegrationEvent>(&mut self, event: &E) -> Result<String, OutboxError> {
        self.add_with(event, PublishOptions::default()).await
    }

    /// Adds `event` with options (see [`PgOutbox::add_with`]); returns its id.
    pub async fn add_with<E: IntegrationEvent>(
        &mut self,
        event: &E,
        options: PublishOptions,
    ) -> Result<String, OutboxError> {
        let (message, event_type, partition_key) =
            encode_event(event, options, self.outbox.source.as_deref())?;
        self.add_encoded(message, event_type, partition_key).await
    }

    /// Adds a message encoded as it will be sent (see [`ferry_core::outbox::encode_event`]).
    pub async fn add_encoded(
        &mut self,
        message: OutgoingMessage,
        event_type: String,
        partition_key: Option<String>,
    ) -> Result<String, OutboxError> {
        let lease = match partition_key {
            Some(_) => None,
            None => self.outbox.handoff().lease_for_new_row(),
        };
        let Some(lease) = lease else {
            let row = OutboxRecord::from_encoded(message, event_type, partition_key)?;
            return insert(&mut self.tx, row, None).await;
        };
        // The relay gets the message as encoded, not read back from the row.
        let row = OutboxRecord::from_encoded(message.clone(), event_type, None)?;
        let message = OutboxMessage {
            id: row.id.clone(),
            message,
            attempts: 0,
            partition_key: None,
            created_at: Utc::now(),
        };
        let leased_at = Instant::now();
        let id = insert(&mut self.tx, row, Some((lease, self.outbox.relay_id()))).await?;
        self.leased_at.get_or_insert(leased_at);
        self.handed.push(message);
        Ok(id)
    }

    /// Commits, then hands the events to the relay.
    pub async fn commit(self) -> Result<(), OutboxError> {
        self.tx.commit().await.map_err(db_error)?;
        if let Some(leased_at) = self.leased_at {
            self.outbox.hand(self.handed, leased_at).await;
        }
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
        OutboxTransaction::add_encoded(self, message, event_type, partition_key).await
    }

    async fn commit(self) -> Result<(), OutboxError> {
        OutboxTransaction::commit(self).await
    }

    async fn rollback(self) -> Result<(), OutboxError> {
        OutboxTransaction::rollback(self).await
    }
}

#[async_trait]
impl TransactionalStore for PgOutbox {
    type Transaction = OutboxTransaction;

    async fn begin(&self) -> Result<OutboxTransaction, OutboxError> {
        PgOutbox::begin(self).await
    }
}

impl Deref for OutboxTransaction {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl DerefMut for OutboxTransaction {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}
