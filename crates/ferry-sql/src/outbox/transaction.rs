//! [`OutboxTransaction`]: the caller's transaction, adding events that go to this process's
//! relay once it commits.

use crate::statement;
use std::{
    ops::{Deref, DerefMut},
    time::Instant,
};

use async_trait::async_trait;
use chrono::Utc;
use ferry_core::{
    ClaimedOutboxRow, InboxError, IntegrationEvent, NewOutboxRow, OutboxError, OutgoingMessage,
    PublishOptions,
    outbox::encode_event,
    transactional::{StoreTransaction, TransactionalStore},
};

use super::SqlOutbox;
use crate::{
    db_error,
    dialect::{Conn, Dialect, Tx},
    inbox::inbox_error,
};

/// A database transaction that adds events to the outbox and, once it commits, tells the
/// relays of this process.
///
/// On PostgreSQL the events go straight to the [`ferry_core::OutboxRelay`] running on the same
/// outbox (a clone of it) in this process: the relay publishes them without waiting for the
/// notification or claiming them from the table, a few milliseconds sooner. The guarantees are
/// the table's: each event is a pending row that commits or rolls back with your writes. Until
/// the relay has published it, the row is leased to that relay, so no other relay publishes it
/// meanwhile; should the relay stop first, it gives the row back to the table, and should this
/// process die first, the lease runs out and any relay publishes it from the table. Events with
/// a partition key, events added while no relay claims on this outbox, and events added with
/// [`SqlOutbox::add_with`] on a transaction of your own take the table's way (the notification,
/// then a claim). On SQLite every event takes the table's way, and the commit wakes the relays.
///
/// Run your own statements on its connection, [`OutboxTransaction::db`] (as on a handler's
/// [`TxContext::db`](ferry_core::transactional::TxContext::db); `&mut *tx`, sqlx's idiom, works
/// too):
///
/// ```no_run
/// # use ferry_sql::postgres::{PgOutbox, sqlx::PgPool};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)]
/// # struct OrderCreated { order_id: String }
/// # impl ferry_core::IntegrationEvent for OrderCreated { const NAME: &'static str = "orders.order.created"; }
/// # async fn demo(pool: PgPool, outbox: PgOutbox) -> Result<(), Box<dyn std::error::Error>> {
/// let mut tx = outbox.begin().await?;
/// sqlx::query("INSERT INTO orders (id) VALUES ($1)")
///     .bind("order-1")
///     .execute(tx.db())
///     .await?;
/// tx.add(&OrderCreated { order_id: "order-1".into() }).await?;
/// tx.commit().await?; // the order and its event, or neither; then the event goes out
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct OutboxTransaction<D: Dialect> {
    tx: Tx<D>,
    outbox: SqlOutbox<D>,
    handed: Vec<ClaimedOutboxRow>,
    /// When the first handed row's lease started.
    leased_at: Option<Instant>,
}

impl<D: Dialect> OutboxTransaction<D> {
    pub(super) fn new(tx: Tx<D>, outbox: SqlOutbox<D>) -> Self {
        Self {
            tx,
            outbox,
            handed: Vec::new(),
            leased_at: None,
        }
    }

    /// The transaction's connection, for your own statements.
    pub fn db(&mut self) -> &mut Conn<D> {
        &mut self.tx
    }

    /// Adds `event`, routed by its name; returns its id.
    pub async fn add<E: IntegrationEvent>(&mut self, event: &E) -> Result<String, OutboxError> {
        self.add_with(event, PublishOptions::default()).await
    }

    /// Adds `event` with options (see [`SqlOutbox::add_with`]); returns its id.
    pub async fn add_with<E: IntegrationEvent>(
        &mut self,
        event: &E,
        options: PublishOptions,
    ) -> Result<String, OutboxError> {
        let (message, event_type, partition_key) =
            encode_event(event, options, self.outbox.source())?;
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
            None if D::HANDS_OFF => self.outbox.handoff().lease_for_new_row(),
            None => None,
        };
        let Some(lease) = lease else {
            let row = NewOutboxRow::from_encoded(message, event_type, partition_key)?;
            return self.outbox.insert(&mut self.tx, row, None).await;
        };
        // The relay gets the message as encoded, not read back from the row.
        let row = NewOutboxRow::from_encoded(message.clone(), event_type, None)?;
        let message = ClaimedOutboxRow {
            id: row.id.clone(),
            message,
            attempts: 0,
            partition_key: None,
            created_at: Utc::now(),
        };
        let leased_at = Instant::now();
        let id = self.outbox.insert(&mut self.tx, row, Some(lease)).await?;
        self.leased_at.get_or_insert(leased_at);
        self.handed.push(message);
        Ok(id)
    }

    /// Records `message_id` as processed by `consumer` in this transaction; `false` when it
    /// already was (see [`crate::SqlInbox::try_insert`]).
    pub async fn insert_inbox(
        &mut self,
        consumer: &str,
        message_id: &str,
    ) -> Result<bool, InboxError> {
        statement::insert_inbox::<D>(&mut self.tx, consumer, message_id)
            .await
            .map_err(inbox_error::<D>)
    }

    /// Commits, then hands the events to the relay (or wakes it).
    pub async fn commit(self) -> Result<(), OutboxError> {
        self.tx.commit().await.map_err(db_error)?;
        match self.leased_at {
            Some(leased_at) => self.outbox.hand(self.handed, leased_at).await,
            None if D::WAKES_ON_ADD => self.outbox.wakeup().bump(),
            None => {}
        }
        Ok(())
    }

    /// Rolls back: nothing was added.
    pub async fn rollback(self) -> Result<(), OutboxError> {
        self.tx.rollback().await.map_err(db_error)
    }
}

#[async_trait]
impl<D: Dialect> StoreTransaction for OutboxTransaction<D> {
    async fn insert_inbox(&mut self, consumer: &str, message_id: &str) -> Result<bool, InboxError> {
        OutboxTransaction::insert_inbox(self, consumer, message_id).await
    }

    fn default_source(&self) -> Option<&str> {
        self.outbox.source()
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
impl<D: Dialect> TransactionalStore for SqlOutbox<D> {
    type Transaction = OutboxTransaction<D>;

    async fn begin(&self) -> Result<OutboxTransaction<D>, OutboxError> {
        SqlOutbox::begin(self).await
    }
}

impl<D: Dialect> Deref for OutboxTransaction<D> {
    type Target = Conn<D>;

    fn deref(&self) -> &Conn<D> {
        &self.tx
    }
}

impl<D: Dialect> DerefMut for OutboxTransaction<D> {
    fn deref_mut(&mut self) -> &mut Conn<D> {
        &mut self.tx
    }
}
