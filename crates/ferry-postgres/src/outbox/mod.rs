//! The PostgreSQL outbox: adding events inside the caller's transaction, and the options.

mod admin;
mod handoff;
mod store;
mod transaction;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use ferry_core::{
    IntegrationEvent, OutboxError, OutboxMessage, OutboxRecord, OutgoingMessage, PublishOptions,
    outbox::OutboxOptions,
};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::{db_error, wakeup::Wakeup};
use handoff::Handoff;
pub use transaction::OutboxTransaction;

/// Shared by the clones of an outbox. Stops the listener task when the last clone is dropped.
#[derive(Debug)]
struct Shared {
    wakeup: Arc<Wakeup>,
    stop: CancellationToken,
    handoff: Handoff,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The PostgreSQL transactional outbox: add events in your transaction; run
/// [`ferry_core::OutboxRelay`] on it to publish them.
///
/// Cloning is cheap (clones share the pool and the notification listener). Each value made by
/// [`PgOutbox::new`] has its own relay id, recorded in `locked_by` on the rows it claims.
///
/// ```no_run
/// # use ferry_postgres::{PgOutbox, sqlx::PgPool};
/// # use ferry_core::PublishOptions;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)]
/// # struct OrderCreated { order_id: String }
/// # impl ferry_core::IntegrationEvent for OrderCreated { const NAME: &'static str = "orders.order.created"; }
/// # async fn demo(pool: PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// let outbox = PgOutbox::new(pool.clone()).with_source("orders");
/// let mut tx = pool.begin().await?;
/// let options = PublishOptions {
///     partition_key: Some("order-1".into()),
///     correlation_id: Some("checkout-42".into()),
///     ..PublishOptions::default()
/// };
/// outbox.add_with(&mut *tx, &OrderCreated { order_id: "order-1".into() }, options).await?;
/// tx.commit().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PgOutbox {
    pool: PgPool,
    options: OutboxOptions,
    source: Option<Arc<str>>,
    relay_id: Arc<str>,
    shared: Arc<Shared>,
}

impl PgOutbox {
    /// An outbox on `pool` with the default options. Run [`crate::migrate`] once first.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            options: OutboxOptions::default(),
            source: None,
            relay_id: uuid_like().into(),
            shared: Arc::new(Shared {
                wakeup: Arc::new(Wakeup::default()),
                stop: CancellationToken::new(),
                handoff: Handoff::default(),
            }),
        }
    }

    /// Sets the options.
    pub fn with_options(mut self, options: OutboxOptions) -> Self {
        self.options = options;
        self
    }

    /// Sets the failed publishes after which a row is dead (at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.options.max_attempts = attempts.max(1);
        self
    }

    /// Sets the backoff between attempts of a failed row: `base`, doubling up to `max`.
    pub fn with_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.options.base_backoff = base;
        self.options.max_backoff = max.max(base);
        self
    }

    /// Sets how long published rows are kept.
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.options.retention = retention;
        self
    }

    /// Sets the source (`ce-source`) of events added without one in their options.
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into().into());
        self
    }

    /// The options.
    pub fn options(&self) -> &OutboxOptions {
        &self.options
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The id this outbox writes in `locked_by` when it claims rows.
    pub fn relay_id(&self) -> &str {
        &self.relay_id
    }

    /// Adds `event` in the caller's transaction, routed by its name; returns its id.
    ///
    /// Pass the transaction as `&mut *tx`: the row commits or rolls back with the caller's
    /// other writes, and relays are notified when it commits.
    pub async fn add<E: IntegrationEvent>(
        &self,
        conn: &mut PgConnection,
        event: &E,
    ) -> Result<String, OutboxError> {
        self.add_with(conn, event, PublishOptions::default()).await
    }

    /// Adds `event` with options (routing key, id, correlation and causation ids, subject,
    /// extra headers, partition key) in the caller's transaction; returns its id.
    ///
    /// The message is encoded now, once: the row holds exactly what will be sent. For an event
    /// emitted by a handler, use [`PublishOptions::caused_by`].
    pub async fn add_with<E: IntegrationEvent>(
        &self,
        conn: &mut PgConnection,
        event: &E,
        options: PublishOptions,
    ) -> Result<String, OutboxError> {
        let row = OutboxRecord::from_event(event, options, self.source.as_deref())?;
        insert(conn, row, None).await
    }

    /// Begins a transaction whose events go to this process's relay the moment it commits:
    /// see [`OutboxTransaction`].
    pub async fn begin(&self) -> Result<OutboxTransaction, OutboxError> {
        let tx = self.pool.begin().await.map_err(db_error)?;
        Ok(self.transaction(tx))
    }

    /// Makes a transaction you began (on any pool of this database) an [`OutboxTransaction`]
    /// of this outbox.
    pub fn transaction(&self, tx: sqlx::Transaction<'static, sqlx::Postgres>) -> OutboxTransaction {
        OutboxTransaction::new(tx, self.clone())
    }

    /// Adds a message that is already encoded (its `message_id` is the row's id) in the
    /// caller's transaction; returns its id.
    pub async fn add_message(
        &self,
        conn: &mut PgConnection,
        message: OutgoingMessage,
        partition_key: Option<String>,
    ) -> Result<String, OutboxError> {
        let row = OutboxRecord::from_message(message, partition_key)?;
        insert(conn, row, None).await
    }

    /// Starts listening for notifications now rather than at the relay's first wait.
    pub fn listen(&self) {
        self.shared
            .wakeup
            .start_listener(&self.pool, self.shared.stop.clone());
    }

    fn wakeup(&self) -> &Wakeup {
        &self.shared.wakeup
    }

    fn handoff(&self) -> &Handoff {
        &self.shared.handoff
    }

    /// Hands committed rows to the relay and wakes it; gives the lease of rows the relay can
    /// no longer take back to the table.
    async fn hand(&self, rows: Vec<OutboxMessage>, leased_at: Instant) {
        let refused = self.handoff().hand(rows, leased_at);
        self.give_back(&refused).await;
        self.wakeup().bump();
    }

    /// Gives handed rows' leases back to the table, so that any relay claims them at once
    /// (should that fail, they wait for their lease to run out).
    async fn give_back(&self, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        if let Err(e) = ferry_core::OutboxStore::release(self, ids).await {
            tracing::warn!(error = %e, rows = ids.len(), "could not give handed rows back to the table; they wait for their lease to run out");
        }
    }
}

/// Inserts a row; `leased` to a relay (the lease, the relay's id) when it will be handed over.
async fn insert(
    conn: &mut PgConnection,
    row: OutboxRecord,
    leased: Option<(Duration, &str)>,
) -> Result<String, OutboxError> {
    let result = sqlx::query(
        "INSERT INTO ferry_outbox \
         (id, event_type, exchange, routing_key, properties, headers, body, partition_key, \
          locked_until, locked_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
                 clock_timestamp() + $9 * interval '1 millisecond', $10)",
    )
    .bind(&row.id)
    .bind(&row.event_type)
    .bind(&row.exchange)
    .bind(&row.routing_key)
    .bind(&row.properties)
    .bind(&row.headers)
    .bind(&row.body)
    .bind(&row.partition_key)
    .bind(leased.map(|(lease, _)| lease.as_secs_f64() * 1000.0))
    .bind(leased.map(|(_, relay)| relay))
    .execute(conn)
    .await;
    match result {
        Ok(_) => Ok(row.id),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(OutboxError::Database(format!(
                "an outbox row with id `{}` already exists; event ids must be unique",
                row.id
            )))
        }
        Err(e) => Err(db_error(e)),
    }
}

/// A random id for this outbox's leases.
fn uuid_like() -> String {
    ferry_core::envelope::new_id()
}
