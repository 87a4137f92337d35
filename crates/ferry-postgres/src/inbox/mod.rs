//! The PostgreSQL inbox: which messages each consumer has processed.

mod grouped;

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use async_trait::async_trait;
use ferry_core::{Inbox, InboxError, MessageContext};
use sqlx::{PgConnection, PgPool};

use grouped::Grouped;

/// How long records are kept by default: a week.
const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

fn inbox_error(e: sqlx::Error) -> InboxError {
    InboxError(format!("PostgreSQL inbox: {e}"))
}

/// Inserts the inbox row in the caller's transaction; `false` when it is already there.
pub(crate) async fn insert_row(
    conn: &mut PgConnection,
    consumer: &str,
    message_id: &str,
) -> Result<bool, InboxError> {
    let inserted = sqlx::query(
        "INSERT INTO ferry_inbox (consumer, message_id) VALUES ($1, $2) \
         ON CONFLICT (consumer, message_id) DO NOTHING",
    )
    .bind(consumer)
    .bind(message_id)
    .execute(conn)
    .await
    .map_err(inbox_error)?
    .rows_affected();
    Ok(inserted == 1)
}

/// The PostgreSQL inbox, keyed by (consumer, message id) in `ferry_inbox`.
///
/// Two ways to use it:
///
/// - as the consumer's [`Inbox`] (`bus.consumer(..).skip_processed(Arc::new(inbox))`): the pipeline skips
///   messages already recorded and records each one after its handler succeeded. Simple, but the
///   record is a write of its own: a crash between the handler's commit and the record lets a
///   redelivery run the handler again. The lookups and records that concurrent handlers make at
///   the same moment go to the database as one statement each (a lone one at once), so a busy
///   consumer pays one round trip and one commit for many messages.
/// - inside the handler's transaction with [`PgInbox::try_insert`] (exactly once in effect): the
///   handler's writes, its inbox row and the events it adds to the outbox commit together, or
///   none do. A copy handled at the same moment waits on the inbox row's key until the first
///   commits, then sees it and does nothing.
///
/// ```no_run
/// use ferry_core::{HandlerError, MessageContext, PublishOptions};
/// use ferry_postgres::{PgInbox, PgOutbox, sqlx::PgPool};
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
///     if !inbox.try_insert_message(&mut *tx, &ctx).await? {
///         return Ok(()); // handled before: nothing to do
///     }
///     sqlx::query("INSERT INTO inventory_reservations (order_id) VALUES ($1)")
///         .bind(&event.order_id)
///         .execute(&mut *tx)
///         .await?;
///     let reserved = StockReserved { order_id: event.order_id };
///     outbox.add_with(&mut *tx, &reserved, PublishOptions::caused_by(&ctx)).await?;
///     tx.commit().await?; // all of it, or (on any error above) none of it
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct PgInbox {
    pool: PgPool,
    cleanup_batch: i64,
    retention: Duration,
    /// The grouped lookups and records, started at the first call (clones share them).
    grouped: Arc<OnceLock<Grouped>>,
}

impl PgInbox {
    /// An inbox on `pool`. Run [`crate::migrate`] once first.
    pub fn new(pool: PgPool) -> Self {
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

    /// Records `message_id` as processed by `consumer` in the caller's transaction
    /// (`&mut *tx`); `false` when it already was: a duplicate, do nothing.
    ///
    /// If another transaction is inserting the same key at that moment, this waits for it: when
    /// it commits this returns `false`; when it rolls back this returns `true`.
    pub async fn try_insert(
        &self,
        conn: &mut PgConnection,
        consumer: &str,
        message_id: &str,
    ) -> Result<bool, InboxError> {
        insert_row(conn, consumer, message_id).await
    }

    /// [`PgInbox::try_insert`] for the message a handler is handling (its consumer and id).
    pub async fn try_insert_message(
        &self,
        conn: &mut PgConnection,
        ctx: &MessageContext,
    ) -> Result<bool, InboxError> {
        self.try_insert(conn, ctx.consumer(), ctx.message_id())
            .await
    }

    /// The grouped calls, started on the current runtime at the first call. Should their tasks
    /// be gone (the runtime that started them stopped), the calls go to the database one by
    /// one.
    fn grouped(&self) -> &Grouped {
        self.grouped.get_or_init(|| Grouped::start(&self.pool))
    }

    /// Deletes records processed more than `age` ago, in bounded batches; returns how many.
    /// Keep records longer than a message can be redelivered (retries, replays from the
    /// dead-letter queue): a week is a safe default.
    pub async fn cleanup_older_than(&self, age: Duration) -> Result<u64, InboxError> {
        let mut total = 0;
        loop {
            let deleted = sqlx::query(
                "DELETE FROM ferry_inbox WHERE (consumer, message_id) IN (
                    SELECT consumer, message_id FROM ferry_inbox
                    WHERE processed_at < now() - $1 * interval '1 millisecond'
                    LIMIT $2
                )",
            )
            .bind(age.as_secs_f64() * 1000.0)
            .bind(self.cleanup_batch)
            .execute(&self.pool)
            .await
            .map_err(inbox_error)?
            .rows_affected();
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
impl Inbox for PgInbox {
    async fn is_processed(&self, consumer: &str, message_id: &str) -> Result<bool, InboxError> {
        if let Some(answer) = self.grouped().is_processed(consumer, message_id).await {
            return answer;
        }
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM ferry_inbox WHERE consumer = $1 AND message_id = $2")
                .bind(consumer)
                .bind(message_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(inbox_error)?;
        Ok(found.is_some())
    }

    async fn mark_processed(&self, consumer: &str, message_id: &str) -> Result<bool, InboxError> {
        if let Some(answer) = self.grouped().mark_processed(consumer, message_id).await {
            return answer;
        }
        let mut conn = self.pool.acquire().await.map_err(inbox_error)?;
        self.try_insert(&mut conn, consumer, message_id).await
    }

    async fn remove_expired(&self) -> Result<u64, InboxError> {
        self.cleanup_older_than(self.retention).await
    }
}
