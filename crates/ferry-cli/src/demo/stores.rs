//! [`DemoDb`] on PostgreSQL and on SQLite: one implementation, written once as a macro over the
//! driver's types, since the statements are the same.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry::{
    DeadLetter, HandlerError, MessageContext, PublishOptions,
    sql::DeadLetterStore,
    transactional::{TransactionalHandler, TxContext},
};

use super::{
    db::{DemoDb, Progress, Totals, dead_letter_key, dead_letter_order_id},
    events::{OrderCreated, StockReserved},
    faults::FailurePlan,
    sql,
};

macro_rules! demo_db {
    (
        $name:ident, $reserve:ident, $pool:ty, $conn:ty, $outbox:ty, $tx:ty, $inbox:ty,
        $schema:expr, $added:expr, $has_column:expr, $migrate:path, $dialect:ty
    ) => {
        /// The inventory context on this driver: a transactional handler, so ferry's
        /// transaction holds the inbox row, the reservation, the notification and the
        /// `inventory.stock.reserved` event, which commit together or not at all.
        pub struct $reserve {
            plan: FailurePlan,
        }

        impl TransactionalHandler<OrderCreated, $tx> for $reserve {
            async fn handle(
                &self,
                event: OrderCreated,
                cx: &mut TxContext<$tx>,
            ) -> Result<(), HandlerError> {
                if self.plan.fails_permanently(event.order_number) {
                    return Err(HandlerError::permanent(format!(
                        "order {} cannot be reserved (injected permanent failure)",
                        event.order_id
                    )));
                }
                let attempt = cx.message().attempt();
                if self.plan.fails_transiently(event.order_number, attempt) {
                    return Err(HandlerError::transient(
                        "stock service unavailable (injected transient failure)",
                    ));
                }
                let now = Utc::now();
                let items = serde_json::to_string(&event.items)?;
                sqlx::query(sql::INSERT_RESERVATION)
                    .bind(&event.order_id)
                    .bind(items)
                    .bind(now)
                    .bind(i64::from(attempt))
                    .execute(cx.db())
                    .await?;
                sqlx::query(sql::INSERT_NOTIFICATION)
                    .bind(&event.order_id)
                    .bind(&event.customer_email)
                    .bind("Order Confirmed")
                    .bind(format!("Your order {} has been confirmed.", event.order_id))
                    .bind(now)
                    .execute(cx.db())
                    .await?;
                // Caused by the order's event: correlation carried over.
                cx.publish(&StockReserved {
                    order_id: event.order_id,
                    items: event.items,
                })
                .await?;
                Ok(())
            }

            async fn on_duplicate(&self, cx: &mut TxContext<$tx>) -> Result<(), HandlerError> {
                let (consumer, id) = (
                    cx.message().consumer().to_owned(),
                    cx.message().message_id().to_owned(),
                );
                $name::skipped_duplicate(cx.db(), &consumer, &id).await
            }
        }

        /// The demo's database on this driver.
        #[derive(Clone)]
        pub struct $name {
            pool: $pool,
            outbox: $outbox,
            inbox: $inbox,
        }

        impl $name {
            /// Wraps a pool; runs ferry's migrations and the demo's schema.
            pub async fn open(pool: $pool, outbox: $outbox, inbox: $inbox) -> anyhow::Result<Self> {
                $migrate(&pool).await?;
                for statement in $schema {
                    sqlx::query(statement).execute(&pool).await?;
                }
                for (table, column, definition) in $added {
                    let present: i64 = sqlx::query_scalar($has_column)
                        .bind(table)
                        .bind(column)
                        .fetch_one(&pool)
                        .await?;
                    if present == 0 {
                        sqlx::query(&format!(
                            "ALTER TABLE {table} ADD COLUMN {column} {definition}"
                        ))
                        .execute(&pool)
                        .await?;
                    }
                }
                Ok(Self {
                    pool,
                    outbox,
                    inbox,
                })
            }

            /// Records, in the transaction that found the inbox row, a delivery the inbox
            /// skipped (a duplicate).
            async fn skipped_duplicate(
                conn: &mut $conn,
                consumer: &str,
                message_id: &str,
            ) -> Result<(), HandlerError> {
                sqlx::query(sql::INSERT_SKIPPED_DUPLICATE)
                    .bind(consumer)
                    .bind(message_id)
                    .bind(Utc::now())
                    .execute(conn)
                    .await?;
                Ok(())
            }

            async fn count(&self, statement: &str) -> anyhow::Result<u64> {
                let n: i64 = sqlx::query_scalar(statement).fetch_one(&self.pool).await?;
                Ok(u64::try_from(n).unwrap_or(0))
            }
        }

        #[async_trait]
        impl DemoDb for $name {
            type Outbox = $outbox;
            type Reserve = $reserve;

            fn reserve_handler(&self, plan: FailurePlan) -> $reserve {
                $reserve { plan }
            }

            fn outbox(&self) -> Self::Outbox {
                self.outbox.clone()
            }

            async fn reset(&self) -> anyhow::Result<()> {
                let mut tx = self.pool.begin().await?;
                for statement in sql::RESET {
                    sqlx::query(statement).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn create_order(
                &self,
                order: &OrderCreated,
                options: PublishOptions,
            ) -> anyhow::Result<()> {
                // The outbox's transaction: once it commits, its event goes to the relay at
                // once (on PostgreSQL handed over without a claim).
                let mut tx = self.outbox.begin().await?;
                sqlx::query(sql::INSERT_ORDER)
                    .bind(&order.order_id)
                    .bind(&order.customer_email)
                    .bind(order.total_amount)
                    .bind(Utc::now())
                    .execute(&mut *tx)
                    .await?;
                for item in &order.items {
                    sqlx::query(sql::INSERT_ITEM)
                        .bind(&order.order_id)
                        .bind(&item.product_id)
                        .bind(item.quantity)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.add_with(order, options).await?;
                tx.commit().await?;
                // Latency runs from here: the commit, not the start of the transaction.
                sqlx::query(sql::ORDER_COMMITTED)
                    .bind(&order.order_id)
                    .bind(Utc::now())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn confirm(
                &self,
                event: &StockReserved,
                ctx: &MessageContext,
            ) -> Result<bool, HandlerError> {
                let mut tx = self.pool.begin().await?;
                if !self
                    .inbox
                    .try_insert(&mut *tx, ctx.consumer(), ctx.message_id())
                    .await?
                {
                    Self::skipped_duplicate(&mut *tx, ctx.consumer(), ctx.message_id()).await?;
                    tx.commit().await?;
                    return Ok(false);
                }
                sqlx::query(sql::CONFIRM_ORDER)
                    .bind(&event.order_id)
                    .bind(Utc::now())
                    .bind(i64::from(ctx.attempt()))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn record_dead_letter(&self, dead: &DeadLetter) -> Result<bool, HandlerError> {
                let mut tx = self.pool.begin().await?;
                if let Some(key) = dead_letter_key(dead) {
                    if !self
                        .inbox
                        .try_insert(&mut *tx, super::db::DEAD_LETTER_QUEUE, &key)
                        .await?
                    {
                        Self::skipped_duplicate(&mut *tx, super::db::DEAD_LETTER_QUEUE, &key)
                            .await?;
                        tx.commit().await?;
                        return Ok(false);
                    }
                }
                sqlx::query(sql::INSERT_DEAD_LETTER)
                    .bind(dead.message_id())
                    .bind(dead.event_type())
                    .bind(dead_letter_order_id(dead))
                    .bind(dead.fault.kind.as_str())
                    .bind(&dead.fault.message)
                    .bind(dead.fault.original_queue.as_deref())
                    .bind(dead.message.body.to_vec())
                    .bind(Utc::now())
                    .bind(i64::from(dead.fault.attempts))
                    .execute(&mut *tx)
                    .await?;
                // ferry's dead-letter store too (what `ferry console` shows), in the same
                // transaction: both tables have the dead letter, or neither.
                DeadLetterStore::<$dialect>::record_in(&mut *tx, dead)
                    .await
                    .map_err(HandlerError::transient)?;
                tx.commit().await?;
                Ok(true)
            }

            async fn progress(&self) -> anyhow::Result<Progress> {
                Ok(Progress {
                    created: self.count(sql::COUNT_ORDERS).await?,
                    confirmed: self.count(sql::COUNT_CONFIRMED).await?,
                    dead_lettered_orders: self.count(sql::COUNT_DEAD_LETTERED_ORDERS).await?,
                    outbox_pending: self.count(sql::COUNT_OUTBOX_PENDING).await?,
                })
            }

            async fn totals(&self) -> anyhow::Result<Totals> {
                let times: Vec<(DateTime<Utc>, DateTime<Utc>)> =
                    sqlx::query_as(sql::CONFIRMED_TIMES)
                        .fetch_all(&self.pool)
                        .await?;
                Ok(Totals {
                    orders: self.count(sql::COUNT_ORDERS).await?,
                    retries: self.count(sql::COUNT_RETRIES).await?,
                    duplicates_skipped: self.count(sql::COUNT_SKIPPED_DUPLICATES).await?,
                    events_published: self.count(sql::COUNT_OUTBOX_PUBLISHED).await?,
                    reservations: self.count(sql::COUNT_RESERVATIONS).await?,
                    confirmed: self.count(sql::COUNT_CONFIRMED).await?,
                    dead_letters: self.count(sql::COUNT_DEAD_LETTERS).await?,
                    lost: self.count(sql::COUNT_LOST).await?,
                    latencies_ms: times
                        .into_iter()
                        .map(|(created, confirmed)| {
                            (confirmed - created).num_microseconds().unwrap_or(0) as f64 / 1000.0
                        })
                        .collect(),
                })
            }
        }
    };
}

demo_db!(
    PgDemoDb,
    PgReserve,
    sqlx::PgPool,
    sqlx::PgConnection,
    ferry::postgres::PgOutbox,
    ferry::postgres::OutboxTransaction,
    ferry::postgres::PgInbox,
    sql::PG_SCHEMA,
    sql::PG_ADDED_COLUMNS,
    sql::PG_HAS_COLUMN,
    ferry::postgres::migrate,
    ferry::postgres::Postgres
);

demo_db!(
    SqliteDemoDb,
    SqliteReserve,
    sqlx::SqlitePool,
    sqlx::SqliteConnection,
    ferry::sqlite::SqliteOutbox,
    ferry::sqlite::OutboxTransaction,
    ferry::sqlite::SqliteInbox,
    sql::SQLITE_SCHEMA,
    sql::SQLITE_ADDED_COLUMNS,
    sql::SQLITE_HAS_COLUMN,
    ferry::sqlite::migrate,
    ferry::sqlite::Sqlite
);
