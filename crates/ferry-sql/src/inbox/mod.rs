//! The inbox: which messages each consumer has processed.

mod grouped;

use crate::statement;
use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use async_trait::async_trait;
use ferry_core::{Inbox, InboxError, MessageContext, outbox::StoreSource};

use crate::dialect::{Conn, Dialect, Pool};
use grouped::Grouped;

/// How long records are kept by default: a week.
const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The inbox's error for a driver's error.
pub(crate) fn inbox_error<D: Dialect>(e: impl Into<StoreSource>) -> InboxError {
    InboxError::with_source(format!("the {} inbox's database failed", D::NAME), e)
}

/// The inbox on a SQL database, keyed by (consumer, message id) in `ferry_inbox`. Named
/// [`crate::postgres::PgInbox`] and [`crate::sqlite::SqliteInbox`] for each database.
///
/// Two ways to use it:
///
/// - as the consumer's [`Inbox`] (`bus.consumer(..).skip_processed(Arc::new(inbox))`): the
///   pipeline skips messages already recorded and records each one after its handler
///   succeeded. Simple, but the record is a write of its own: a crash between the handler's
///   commit and the record lets a redelivery run the handler again. On PostgreSQL the lookups
///   and records that concurrent handlers make at the same moment go to the database as one
///   statement each (a lone one at once), so a busy consumer pays one round trip and one
///   commit for many messages.
/// - inside the handler's transaction with [`SqlInbox::try_insert`] (exactly once in effect):
///   the handler's writes, its inbox row and the events it adds to the outbox commit together,
///   or none do. A copy handled at the same moment waits on the inbox row's key (on SQLite on
///   the write lock) until the first commits, then sees it and does nothing. A transactional
///   consumer (`.handle_transactional(outbox, handler)`) does this for you.
///
/// ```no_run
/// use ferry_core::{HandlerError, MessageContext, PublishOptions};
/// use ferry_sql::postgres::{PgInbox, PgOutbox, sqlx::PgPool};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)]
/// # struct OrderCreated { order_id: String }
/// # impl ferry_core::IntegrationEvent for OrderCreated { const NAME: &'static str = "orders.order.created"; }
/// # #[derive(Serialize, Deserialize)]
/// # struct StockReserved { order_id: String }
/// # impl ferry_core::IntegrationEvent for StockReserved { const NAME: &'static str = "inventory.stock.reserved"; }
///
/// async fn on_order_created(
///     pool: &PgPool,
///     inbox: &PgInbox,
///     outbox: &PgOutbox,
///     event: OrderCreated,
///     ctx: MessageContext,
/// ) -> Result<(), HandlerError> {
///     let mut tx = pool.begin().await?;
///     if !inbox.try_insert_message(&mut tx, &ctx).await? {
///         return Ok(()); // handled before: nothing to do
///     }
///     sqlx::query("INSERT INTO inventory_reservations (order_id) VALUES ($1)")
///         .bind(&event.order_id)
///         .execute(&mut *tx)
///         .await?;
///     let reserved = StockReserved { order_id: event.order_id };
///     outbox.add_with(&mut tx, &reserved, PublishOptions::caused_by(&ctx)).await?;
///     tx.commit().await?; // all of it, or (on any error above) none of it
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct SqlInbox<D: Dialect> {
    pool: Pool<D>,
    cleanup_batch: i64,
    retention: Duration,
    /// The grouped lookups and records, started at the first call (clones share them).
    grouped: Arc<OnceLock<Grouped>>,
}

impl<D: Dialect> SqlInbox<D> {
    /// An inbox on `pool`. Run the database's `migrate` once first.
    pub fn new(pool: Pool<D>) -> Self {
        Self {
            pool,
            cleanup_batch: 1000,
            retention: DEFAULT_RETENTION,
            grouped: Arc::default(),
        }
    }

    /// Sets how long records are kept by [`Inbox::remove_expired`] (default 7 days). Keep them
    /// longer than a message can be redelivered: retries, and replays from the dead-letter
    /// queue.
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// The pool.
    pub fn pool(&self) -> &Pool<D> {
        &self.pool
    }

    /// Records `message_id` as processed by `consumer` in the caller's transaction
    /// (`&mut tx`); `false` when it already was: a duplicate, do nothing.
    ///
    /// If another transaction is inserting the same key at that moment, this waits for it
    /// (on SQLite for its write lock, up to the busy timeout): when it commits this returns
    /// `false`; when it rolls back this returns `true`.
    pub async fn try_insert(
        &self,
        conn: &mut Conn<D>,
        consumer: &str,
        message_id: &str,
    ) -> Result<bool, InboxError> {
        statement::insert_inbox::<D>(conn, consumer, message_id)
            .await
            .map_err(inbox_error::<D>)
    }

    /// [`SqlInbox::try_insert`] for the message a handler is handling (its consumer and id).
    pub async fn try_insert_message(
        &self,
        conn: &mut Conn<D>,
        ctx: &MessageContext,
    ) -> Result<bool, InboxError> {
        self.try_insert(conn, ctx.consumer(), ctx.message_id())
            .await
    }

    /// The grouped calls, started on the current runtime at the first call, if the database
    /// groups them. Should their tasks be gone (the runtime that started them stopped), the
    /// calls go to the database one by one.
    fn grouped(&self) -> Option<&Grouped> {
        D::GROUPS_INBOX_CALLS.then(|| self.grouped.get_or_init(|| Grouped::start::<D>(&self.pool)))
    }

    /// Deletes records processed more than `age` ago, in bounded batches; returns how many.
    /// Keep records longer than a message can be redelivered (retries, replays from the
    /// dead-letter queue): a week is a safe default.
    pub async fn cleanup_older_than(&self, age: Duration) -> Result<u64, InboxError> {
        let mut total = 0;
        loop {
            let deleted = statement::delete_inbox::<D>(&self.pool, age, self.cleanup_batch)
                .await
                .map_err(inbox_error::<D>)?;
            total += deleted;
            if deleted < self.cleanup_batch as u64 {
                break;
            }
        }
        if total > 0 {
            tracing::info!(rows = total, "deleted old inbox records");
        }
        Ok(total)
    }
}

#[async_trait]
impl<D: Dialect> Inbox for SqlInbox<D> {
    async fn is_processed(&self, consumer: &str, message_id: &str) -> Result<bool, InboxError> {
        if let Some(grouped) = self.grouped() {
            if let Some(answer) = grouped.is_processed(consumer, message_id).await {
                return answer;
            }
        }
        statement::inbox_contains::<D>(&self.pool, consumer, message_id)
            .await
            .map_err(inbox_error::<D>)
    }

    async fn mark_processed(&self, consumer: &str, message_id: &str) -> Result<bool, InboxError> {
        if let Some(grouped) = self.grouped() {
            if let Some(answer) = grouped.mark_processed(consumer, message_id).await {
                return answer;
            }
        }
        let mut conn = self.pool.acquire().await.map_err(inbox_error::<D>)?;
        self.try_insert(&mut conn, consumer, message_id).await
    }

    async fn remove_expired(&self) -> Result<u64, InboxError> {
        self.cleanup_older_than(self.retention).await
    }
}
