//! The demo's database: its own tables (`docs/tables.md`) beside ferry's outbox and inbox, on
//! PostgreSQL or SQLite. Every step that changes the database is one transaction.

use async_trait::async_trait;
use ferry::{
    DeadLetter, HandlerError, MessageContext, PublishOptions,
    plumbing::OutboxStore,
    transactional::{TransactionalHandler, TransactionalStore},
};

use super::{
    events::{OrderCreated, StockReserved},
    faults::FailurePlan,
};

/// The demo's queues (the inbox's consumer names).
pub const INVENTORY_QUEUE: &str = "inventory.order-created";
/// The orders context's queue for stock reservations.
pub const ORDERS_QUEUE: &str = "orders.stock-reserved";
/// The dead-letter queue.
pub const DEAD_LETTER_QUEUE: &str = "myapp.dlq";

/// How far the run has come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Orders created.
    pub created: u64,
    /// Orders confirmed.
    pub confirmed: u64,
    /// Orders recorded in `dead_letters` and not confirmed.
    pub dead_lettered_orders: u64,
    /// Outbox rows still pending.
    pub outbox_pending: u64,
}

impl Progress {
    /// Orders settled: confirmed or dead-lettered.
    pub fn settled(&self) -> u64 {
        self.confirmed + self.dead_lettered_orders
    }
}

/// Counts from the database for the summary.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Orders.
    pub orders: u64,
    /// Retries: the delivery attempts after the first that the reservations, confirmations
    /// and dead letters record.
    pub retries: u64,
    /// Deliveries the inbox skipped as already processed (`skipped_duplicates`).
    pub duplicates_skipped: u64,
    /// Outbox rows published.
    pub events_published: u64,
    /// Reservation rows.
    pub reservations: u64,
    /// Confirmed orders.
    pub confirmed: u64,
    /// Rows in `dead_letters`.
    pub dead_letters: u64,
    /// Orders neither confirmed nor in `dead_letters`.
    pub lost: u64,
    /// Order committed to confirmed, in milliseconds, for each confirmed order.
    pub latencies_ms: Vec<f64>,
}

/// What the demo does to its database.
#[async_trait]
pub trait DemoDb: Clone + Send + Sync + 'static {
    /// The outbox store the relay drains, and the inventory context's transactions.
    type Outbox: OutboxStore + TransactionalStore + Clone + 'static;

    /// The inventory context's transactional handler.
    type Reserve: TransactionalHandler<OrderCreated, <Self::Outbox as TransactionalStore>::Transaction>;

    /// The outbox store.
    fn outbox(&self) -> Self::Outbox;

    /// Creates missing tables and empties the demo's tables and its outbox and inbox rows.
    async fn reset(&self) -> anyhow::Result<()>;

    /// The orders context: the order, its items and `orders.order.created`, in one transaction.
    async fn create_order(
        &self,
        order: &OrderCreated,
        options: PublishOptions,
    ) -> anyhow::Result<()>;

    /// The inventory context's handler: ferry runs it in a transaction of [`Self::Outbox`] with
    /// the message's inbox row; the reservation (with the delivery attempt), the notification and
    /// `inventory.stock.reserved` commit with it. A duplicate is recorded in
    /// `skipped_duplicates`.
    fn reserve_handler(&self, plan: FailurePlan) -> Self::Reserve;

    /// The orders context confirms the order: inbox row and status (with the delivery attempt)
    /// in one transaction. `Ok(false)`: a duplicate, recorded in `skipped_duplicates`.
    async fn confirm(
        &self,
        event: &StockReserved,
        ctx: &MessageContext,
    ) -> Result<bool, HandlerError>;

    /// Records a dead letter (once per message).
    async fn record_dead_letter(&self, dead: &DeadLetter) -> Result<bool, HandlerError>;

    /// The run's progress.
    async fn progress(&self) -> anyhow::Result<Progress>;

    /// The totals for the summary.
    async fn totals(&self) -> anyhow::Result<Totals>;
}

/// The order id a dead letter is about, read from its body (`orderId`), if any.
pub fn dead_letter_order_id(dead: &DeadLetter) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(&dead.message.body).ok()?;
    value.get("orderId")?.as_str().map(str::to_owned)
}

/// The inbox key of a dead letter: its message id and the queue it failed on. A message without
/// an id has no key and is recorded each time it arrives.
pub fn dead_letter_key(dead: &DeadLetter) -> Option<String> {
    let id = dead.message_id()?;
    Some(format!(
        "{id}/{}",
        dead.fault.original_queue.as_deref().unwrap_or("")
    ))
}
