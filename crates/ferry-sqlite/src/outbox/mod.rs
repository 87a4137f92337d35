//! The SQLite outbox: adding events inside the caller's transaction, and the options.

mod admin;
mod store;
mod transaction;

use std::{sync::Arc, time::Duration};

use ferry_core::{
    IntegrationEvent, OutboxError, OutboxRecord, OutgoingMessage, PublishOptions,
    outbox::OutboxOptions,
};
use sqlx::{SqliteConnection, SqlitePool};

use crate::{db_error, now_ms, wakeup::Wakeup};
pub use transaction::OutboxTransaction;

/// The SQLite transactional outbox: add events in your transaction; run
/// [`ferry_core::OutboxRelay`] on it to publish them.
///
/// Cloning is cheap. Each value made by [`SqliteOutbox::new`] has its own relay id, recorded in
/// `locked_by` on the rows it claims; all outboxes of the process on one database file share
/// the wake-up signal (see the crate docs).
///
/// ```no_run
/// # use ferry_sqlite::SqliteOutbox;
/// # use ferry_core::PublishOptions;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)]
/// # struct OrderCreated { order_id: String }
/// # impl ferry_core::IntegrationEvent for OrderCreated { const NAME: &'static str = "orders.order.created"; }
/// # async fn demo(pool: sqlx::SqlitePool) -> Result<(), Box<dyn std::error::Error>> {
/// let outbox = SqliteOutbox::new(pool.clone()).with_source("orders");
/// let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
/// let options = PublishOptions {
///     partition_key: Some("order-1".into()),
///     ..PublishOptions::default()
/// };
/// outbox.add_with(&mut *tx, &OrderCreated { order_id: "order-1".into() }, options).await?;
/// tx.commit().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteOutbox {
    pool: SqlitePool,
    options: OutboxOptions,
    source: Option<Arc<str>>,
    relay_id: Arc<str>,
    wakeup: Arc<Wakeup>,
}

impl SqliteOutbox {
    /// An outbox on `pool` with the default options. Run [`crate::migrate`] once first.
    pub fn new(pool: SqlitePool) -> Self {
        let wakeup = Wakeup::for_pool(&pool);
        Self {
            pool,
            options: OutboxOptions::default(),
            source: None,
            relay_id: ferry_core::envelope::new_id().into(),
            wakeup,
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
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The id this outbox writes in `locked_by` when it claims rows.
    pub fn relay_id(&self) -> &str {
        &self.relay_id
    }

    /// Adds `event` in the caller's transaction, routed by its name; returns its id.
    ///
    /// Pass the transaction as `&mut *tx`: the row commits or rolls back with the caller's
    /// other writes. The relays of this process are woken (see the crate docs).
    pub async fn add<E: IntegrationEvent>(
        &self,
        conn: &mut SqliteConnection,
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
        conn: &mut SqliteConnection,
        event: &E,
        options: PublishOptions,
    ) -> Result<String, OutboxError> {
        let row = OutboxRecord::from_event(event, options, self.source.as_deref())?;
        self.insert(conn, row).await
    }

    /// Adds a message that is already encoded (its `message_id` is the row's id) in the
    /// caller's transaction; returns its id.
    pub async fn add_message(
        &self,
        conn: &mut SqliteConnection,
        message: OutgoingMessage,
        partition_key: Option<String>,
    ) -> Result<String, OutboxError> {
        let row = OutboxRecord::from_message(message, partition_key)?;
        self.insert(conn, row).await
    }

    /// Begins a transaction that adds events and wakes this process's relays once it
    /// commits: see [`OutboxTransaction`]. It is `BEGIN IMMEDIATE`: it takes the write lock
    /// at once, so two such transactions that read before they write wait for each other
    /// instead of failing with "database is locked" when both try to upgrade.
    pub async fn begin(&self) -> Result<OutboxTransaction, OutboxError> {
        let tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(crate::db_error)?;
        Ok(self.transaction(tx))
    }

    /// Makes a transaction you began an [`OutboxTransaction`] of this outbox.
    pub fn transaction(&self, tx: sqlx::Transaction<'static, sqlx::Sqlite>) -> OutboxTransaction {
        OutboxTransaction::new(tx, self.clone())
    }

    /// Wakes the relays of this process at once (e.g. right after a commit).
    pub fn notify(&self) {
        self.wakeup.bump();
    }

    async fn insert(
        &self,
        conn: &mut SqliteConnection,
        row: OutboxRecord,
    ) -> Result<String, OutboxError> {
        let now = now_ms();
        // Writers are serialized, so max + 1 is taken by one transaction at a time.
        let result = sqlx::query(
            "INSERT INTO ferry_outbox \
             (id, seq, event_type, exchange, routing_key, properties, headers, body, \
              partition_key, next_attempt_at, created_at) \
             VALUES (?1, (SELECT coalesce(max(seq), 0) + 1 FROM ferry_outbox), \
                     ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
        )
        .bind(&row.id)
        .bind(&row.event_type)
        .bind(&row.exchange)
        .bind(&row.routing_key)
        .bind(row.properties.to_string())
        .bind(row.headers.to_string())
        .bind(&row.body)
        .bind(&row.partition_key)
        .bind(now)
        .execute(conn)
        .await;
        match result {
            Ok(_) => {
                self.wakeup.added();
                Ok(row.id)
            }
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(OutboxError::Database(format!(
                    "an outbox row with id `{}` already exists; event ids must be unique",
                    row.id
                )))
            }
            Err(e) => Err(db_error(e)),
        }
    }
}
