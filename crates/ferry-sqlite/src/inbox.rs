//! The SQLite inbox: which messages each consumer has processed.

use std::time::Duration;

use async_trait::async_trait;
use ferry_core::{Inbox, InboxError, MessageContext};
use sqlx::{SqliteConnection, SqlitePool};

use crate::now_ms;

/// How long records are kept by default: a week.
const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

fn inbox_error(e: sqlx::Error) -> InboxError {
    InboxError(format!("SQLite inbox: {e}"))
}

/// The SQLite inbox, keyed by (consumer, message id) in `ferry_inbox`.
///
/// As with `ferry-postgres`: use it as the consumer's [`Inbox`], or — exactly once in effect —
/// insert the inbox row in the handler's own transaction with [`SqliteInbox::try_insert`],
/// together with the handler's writes and the events it adds to the outbox.
///
/// ```no_run
/// use ferry_core::{HandlerError, MessageContext, PublishOptions};
/// use ferry_sqlite::{SqliteInbox, SqliteOutbox, sqlx::SqlitePool};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)]
/// # struct OrderCreated { order_id: String }
/// # impl ferry_core::IntegrationEvent for OrderCreated { const NAME: &'static str = "orders.order.created"; }
/// # #[derive(Serialize, Deserialize)]
/// # struct StockReserved { order_id: String }
/// # impl ferry_core::IntegrationEvent for StockReserved { const NAME: &'static str = "inventory.stock.reserved"; }
///
/// async fn on_order_created(
///     pool: &SqlitePool,
///     inbox: &SqliteInbox,
///     outbox: &SqliteOutbox,
///     event: OrderCreated,
///     ctx: MessageContext,
/// ) -> Result<(), HandlerError> {
///     let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
///     if !inbox.try_insert_message(&mut *tx, &ctx).await? {
///         return Ok(()); // handled before: nothing to do
///     }
///     sqlx::query("INSERT INTO inventory_reservations (order_id) VALUES (?)")
///         .bind(&event.order_id)
///         .execute(&mut *tx)
///         .await?;
///     let reserved = StockReserved { order_id: event.order_id };
///     outbox.add_with(&mut *tx, &reserved, PublishOptions::caused_by(&ctx)).await?;
///     tx.commit().await?;
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteInbox {
    pool: SqlitePool,
    cleanup_batch: i64,
    retention: Duration,
}

impl SqliteInbox {
    /// An inbox on `pool`. Run [`crate::migrate`] once first.
    pub fn new(pool: SqlitePool) -> Self {
        Self {
            pool,
            cleanup_batch: 1000,
            retention: DEFAULT_RETENTION,
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
    /// If another transaction holds the write lock, this waits for it (up to the busy timeout)
    /// and then sees its row if it committed one.
    pub async fn try_insert(
        &self,
        conn: &mut SqliteConnection,
        consumer: &str,
        message_id: &str,
    ) -> Result<bool, InboxError> {
        insert_row(conn, consumer, message_id).await
    }

    /// [`SqliteInbox::try_insert`] for the message a handler is handling.
    pub async fn try_insert_message(
        &self,
        conn: &mut SqliteConnection,
        ctx: &MessageContext,
    ) -> Result<bool, InboxError> {
        self.try_insert(conn, ctx.consumer(), ctx.message_id())
            .await
    }

    /// Deletes records processed more than `age` ago, in bounded batches; returns how many.
    /// Keep records longer than a message can be redelivered: a week is a safe default.
    pub async fn cleanup_older_than(&self, age: Duration) -> Result<u64, InboxError> {
        let cutoff = now_ms() - i64::try_from(age.as_millis()).unwrap_or(i64::MAX / 4);
        let mut total = 0;
        loop {
            let deleted = sqlx::query(
                "DELETE FROM ferry_inbox WHERE rowid IN (
                    SELECT rowid FROM ferry_inbox WHERE processed_at < ?1 LIMIT ?2
                )",
            )
            .bind(cutoff)
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
impl Inbox for SqliteInbox {
    async fn is_processed(&self, consumer: &str, message_id: &str) -> Result<bool, InboxError> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM ferry_inbox WHERE consumer = ?1 AND message_id = ?2")
                .bind(consumer)
                .bind(message_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(inbox_error)?;
        Ok(found.is_some())
    }

    async fn mark_processed(&self, consumer: &str, message_id: &str) -> Result<bool, InboxError> {
        let mut conn = self.pool.acquire().await.map_err(inbox_error)?;
        self.try_insert(&mut conn, consumer, message_id).await
    }

    async fn remove_expired(&self) -> Result<u64, InboxError> {
        self.cleanup_older_than(self.retention).await
    }
}

/// Inserts the inbox row in the caller's transaction; `false` when it is already there.
pub(crate) async fn insert_row(
    conn: &mut SqliteConnection,
    consumer: &str,
    message_id: &str,
) -> Result<bool, InboxError> {
    let inserted = sqlx::query(
        "INSERT INTO ferry_inbox (consumer, message_id, processed_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (consumer, message_id) DO NOTHING",
    )
    .bind(consumer)
    .bind(message_id)
    .bind(now_ms())
    .execute(conn)
    .await
    .map_err(inbox_error)?
    .rows_affected();
    Ok(inserted == 1)
}
