//! The transactional consumer: ferry owns the handler's database transaction.
//!
//! For each delivery ferry begins a transaction on the consumer's database, inserts the inbox
//! row `(consumer, message id)` in it (a message already there is a duplicate: acked, the
//! handler not run), hands the transaction to the handler in a [`TxContext`], and commits after
//! the handler returned `Ok`. Events the handler publishes through [`TxContext::publish`] are
//! added to the outbox in that same transaction, with correlation and causation taken from the
//! incoming message, and the relay publishes them once the commit is done. A handler error or
//! panic rolls everything back and the retry policy decides what comes next.
//!
//! So "consume, write, publish" is one atomic step: a process that dies before the commit
//! leaves nothing behind and the redelivered message runs again; one that dies after the commit
//! but before the ack finds the inbox row on redelivery and only acks; two copies of one
//! message in flight at once cannot both commit, since the inbox row's key is unique (the
//! second waits for the first and finds it there, or runs if the first rolled back).
//!
//! Stores implement [`TransactionalStore`] (`ferry-sql`'s `PgOutbox` and `SqliteOutbox`, and
//! [`MemoryOutbox`](crate::memory::MemoryOutbox)), so a handler written against [`TxContext`]
//! runs unchanged on each; the consumer builder's
//! [`handle_transactional`](crate::ConsumerBuilder::handle_transactional) registers a
//! [`TransactionalHandler`].

use std::{future::Future, ops::DerefMut};

use async_trait::async_trait;

use crate::{
    HandlerError, InboxError, IntegrationEvent, MessageContext, OutboxError, OutgoingMessage,
    PublishOptions, outbox::encode_event,
};

/// A database that can run a consumer's handler in one transaction with its inbox row and
/// the events it emits.
#[async_trait]
pub trait TransactionalStore: Clone + Send + Sync + 'static {
    /// The transaction a handler runs in.
    type Transaction: StoreTransaction;

    /// Begins a transaction (on SQLite an `IMMEDIATE` one: it holds the write lock from the
    /// start, so two handlers cannot deadlock upgrading their locks).
    async fn begin(&self) -> Result<Self::Transaction, OutboxError>;
}

/// An open transaction of a [`TransactionalStore`]: the inbox and the outbox inside it.
#[async_trait]
pub trait StoreTransaction: Send + 'static {
    /// Inserts the inbox row for `(consumer, message_id)`; `false` when it is already there
    /// (a duplicate). A concurrent transaction inserting the same key makes this wait for its
    /// end.
    async fn insert_inbox(&mut self, consumer: &str, message_id: &str) -> Result<bool, InboxError>;

    /// The `source` given to events that name none (the outbox's default source).
    fn default_source(&self) -> Option<&str>;

    /// Adds a message, encoded as it will be sent, to the outbox in this transaction; returns
    /// its id.
    async fn add_encoded(
        &mut self,
        message: OutgoingMessage,
        event_type: String,
        partition_key: Option<String>,
    ) -> Result<String, OutboxError>;

    /// Commits: the handler's writes, the inbox row and the outbox rows together; then the
    /// relay is told.
    async fn commit(self) -> Result<(), OutboxError>;

    /// Rolls back: nothing the handler did stays.
    async fn rollback(self) -> Result<(), OutboxError>;
}

/// What a [`TransactionalHandler`] gets besides the event: the message's context and the open
/// transaction.
///
/// Run your statements on [`TxContext::db`] (`sqlx::query(..).execute(cx.db())`) and publish
/// follow-up events with [`TxContext::publish`]; ferry commits when the handler returns `Ok`.
#[derive(Debug)]
pub struct TxContext<T> {
    tx: T,
    message: MessageContext,
}

impl<T: StoreTransaction> TxContext<T> {
    /// A context for `message` in `tx` (ferry makes these; tests may too).
    pub fn new(tx: T, message: MessageContext) -> Self {
        Self { tx, message }
    }

    /// The incoming message's context.
    pub fn message(&self) -> &MessageContext {
        &self.message
    }

    /// The transaction, as the store made it.
    pub fn transaction(&mut self) -> &mut T {
        &mut self.tx
    }

    /// The database connection inside the transaction, for your own statements.
    pub fn db(&mut self) -> &mut T::Target
    where
        T: DerefMut,
    {
        &mut self.tx
    }

    /// Adds `event` to the outbox in this transaction, caused by the incoming message
    /// (correlation carried over, causation set to its id); returns the event's id. It is
    /// published after the commit.
    pub async fn publish<E: IntegrationEvent>(&mut self, event: &E) -> Result<String, OutboxError> {
        self.publish_with(event, PublishOptions::default()).await
    }

    /// [`TxContext::publish`] with options; correlation, causation and trace context not set in
    /// `options` are taken from the incoming message.
    pub async fn publish_with<E: IntegrationEvent>(
        &mut self,
        event: &E,
        options: PublishOptions,
    ) -> Result<String, OutboxError> {
        let parent = PublishOptions::caused_by(&self.message);
        let options = PublishOptions {
            correlation_id: options.correlation_id.or(parent.correlation_id),
            causation_id: options.causation_id.or(parent.causation_id),
            traceparent: options.traceparent.or(parent.traceparent),
            ..options
        };
        let (message, event_type, partition_key) =
            encode_event(event, options, self.tx.default_source())?;
        self.tx
            .add_encoded(message, event_type, partition_key)
            .await
    }

    /// The transaction and message context back (ferry does this after the handler).
    pub fn into_parts(self) -> (T, MessageContext) {
        (self.tx, self.message)
    }
}

/// Handles one event type inside the transaction ferry began for it (see the
/// [module](self)). Implement it on a type:
///
/// ```
/// use ferry_core::{HandlerError, transactional::{StoreTransaction, TransactionalHandler, TxContext}};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
/// # #[event(name = "orders.order.created")]
/// # struct OrderCreated { order_id: String }
/// # #[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
/// # #[event(name = "inventory.stock.reserved")]
/// # struct StockReserved { order_id: String }
///
/// struct ReserveStock;
///
/// impl<T: StoreTransaction> TransactionalHandler<OrderCreated, T> for ReserveStock {
///     async fn handle(&self, event: OrderCreated, cx: &mut TxContext<T>) -> Result<(), HandlerError> {
///         // your writes: sqlx::query(..).execute(cx.db()).await?;
///         cx.publish(&StockReserved { order_id: event.order_id }).await?;
///         Ok(())
///     }
/// }
///
/// // Generic over the transaction, it runs unchanged on every store: here the in-memory one
/// // (tests), in production a `PgOutbox` or `SqliteOutbox` in its place.
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use ferry_core::memory::{MemoryBus, MemoryOutbox};
/// let bus = MemoryBus::new("app.events");
/// let consumer = bus
///     .consumer("inventory.order-created")
///     .bind("orders.order.created")
///     .dead_letter("app.dlx")
///     .handle_transactional(MemoryOutbox::new(), ReserveStock)
///     .start()
///     .await?;
/// consumer.shutdown().await;
/// # Ok(()) }
/// ```
pub trait TransactionalHandler<E, T>: Send + Sync + 'static {
    /// Handles the event; ferry commits when this returns `Ok` and rolls back otherwise.
    fn handle(
        &self,
        event: E,
        cx: &mut TxContext<T>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Called instead of [`handle`](Self::handle) for a message whose inbox row was already
    /// there (a duplicate), in a transaction of its own that ferry commits when this returns
    /// `Ok` (e.g. to count duplicates in your database). Its failure is logged and the message
    /// acked all the same: the message was handled before. Does nothing by default.
    fn on_duplicate(
        &self,
        cx: &mut TxContext<T>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        let _ = cx;
        async { Ok(()) }
    }
}
