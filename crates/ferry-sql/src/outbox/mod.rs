//! The outbox: adding events inside the caller's transaction, and the options.

mod admin;
mod handoff;
mod held;
pub(crate) mod rows;
mod store;
mod transaction;

use crate::statement;
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use ferry_core::{
    ClaimedOutboxRow, IntegrationEvent, NewOutboxRow, OutboxError, OutgoingMessage, PublishOptions,
    outbox::OutboxOptions,
};
use tokio_util::sync::CancellationToken;

use crate::{
    db_error,
    dialect::{Conn, Dialect, Pool, Tx},
    wakeup::Wakeup,
};
use handoff::Handoff;
use held::Held;
pub use transaction::OutboxTransaction;

/// Shared by the clones of an outbox. Stops the listener task when the last clone is dropped.
#[derive(Debug)]
struct Shared<D: Dialect> {
    wakeup: Arc<Wakeup>,
    stop: CancellationToken,
    handoff: Handoff,
    held: Held<D>,
}

impl<D: Dialect> Drop for Shared<D> {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The transactional outbox on a SQL database: add events in your transaction; run
/// [`ferry_core::OutboxRelay`] on it to publish them. Named [`crate::postgres::PgOutbox`] and
/// [`crate::sqlite::SqliteOutbox`] for each database.
///
/// Cloning is cheap (clones share the pool and the wake-up signal). Each value made by
/// [`SqlOutbox::new`] has its own relay id, recorded in `locked_by` on the rows it leases.
/// On PostgreSQL the relay's claims are held by this value (clones share them): a claim's
/// transaction stays open, holding a pool connection, until its rows are marked or released,
/// and is rolled back when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct SqlOutbox<D: Dialect> {
    pool: Pool<D>,
    options: OutboxOptions,
    source: Option<Arc<str>>,
    relay_id: Arc<str>,
    shared: Arc<Shared<D>>,
}

impl<D: Dialect> SqlOutbox<D> {
    /// An outbox on `pool` with the default options. Run the database's `migrate` once first.
    pub fn new(pool: Pool<D>) -> Self {
        let wakeup = D::wakeup(&pool);
        Self {
            pool,
            options: OutboxOptions::default(),
            source: None,
            relay_id: ferry_core::envelope::new_id().into(),
            shared: Arc::new(Shared {
                wakeup,
                stop: CancellationToken::new(),
                handoff: Handoff::default(),
                held: Held::default(),
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

    /// Sets how long published rows are kept. Zero keeps no history: the relay deletes each
    /// row as it marks it published (a write fewer per row than a later deletion; `ferry
    /// outbox status|list` and the console then show no published rows).
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
    pub fn pool(&self) -> &Pool<D> {
        &self.pool
    }

    /// The id this outbox writes in `locked_by` when it leases rows.
    pub fn relay_id(&self) -> &str {
        &self.relay_id
    }

    /// The source given to events that name none.
    pub(crate) fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// Adds `event` in the caller's transaction, routed by its name; returns its id.
    ///
    /// Pass the transaction as `&mut *tx`: the row commits or rolls back with the caller's
    /// other writes, and relays are woken when it commits.
    pub async fn add<E: IntegrationEvent>(
        &self,
        conn: &mut Conn<D>,
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
        conn: &mut Conn<D>,
        event: &E,
        options: PublishOptions,
    ) -> Result<String, OutboxError> {
        let row = NewOutboxRow::from_event(event, options, self.source())?;
        self.insert(conn, row, None).await
    }

    /// Adds a message that is already encoded (its `message_id` is the row's id) in the
    /// caller's transaction; returns its id.
    pub async fn add_message(
        &self,
        conn: &mut Conn<D>,
        message: OutgoingMessage,
        partition_key: Option<String>,
    ) -> Result<String, OutboxError> {
        let row = NewOutboxRow::from_message(message, partition_key)?;
        self.insert(conn, row, None).await
    }

    /// Begins a transaction whose events go to this process's relay once it commits: see
    /// [`OutboxTransaction`]. On SQLite it is `BEGIN IMMEDIATE`: it takes the write lock at
    /// once, so two such transactions that read before they write wait for each other instead
    /// of failing with "database is locked" when both try to upgrade.
    pub async fn begin(&self) -> Result<OutboxTransaction<D>, OutboxError> {
        let tx = D::begin(&self.pool).await.map_err(db_error)?;
        Ok(self.transaction(tx))
    }

    /// Makes a transaction you began (on any pool of this database) an [`OutboxTransaction`]
    /// of this outbox.
    pub fn transaction(&self, tx: Tx<D>) -> OutboxTransaction<D> {
        OutboxTransaction::new(tx, self.clone())
    }

    /// Wakes every relay listening on this database (on PostgreSQL `NOTIFY ferry_outbox`; on
    /// SQLite the relays of this process).
    pub async fn notify_relays(&self) -> Result<(), OutboxError> {
        D::notify_relays(&self.pool, self.wakeup())
            .await
            .map_err(db_error)
    }

    /// Starts listening for the database's notifications now rather than at the relay's first
    /// wait (a database without them: nothing to do).
    pub fn listen(&self) {
        D::listen(&self.shared.wakeup, &self.pool, self.shared.stop.clone());
    }

    pub(crate) fn wakeup(&self) -> &Wakeup {
        &self.shared.wakeup
    }

    fn handoff(&self) -> &Handoff {
        &self.shared.handoff
    }

    fn held(&self) -> &Held<D> {
        &self.shared.held
    }

    /// Inserts a row; `leased` to this outbox's relay for that long when it will be handed
    /// over.
    async fn insert(
        &self,
        conn: &mut Conn<D>,
        row: NewOutboxRow,
        leased: Option<Duration>,
    ) -> Result<String, OutboxError> {
        let lease = leased.map(|lease| (lease, self.relay_id()));
        match statement::insert::<D>(conn, &row, lease).await {
            Ok(()) => {
                if D::WAKES_ON_ADD {
                    self.wakeup().added();
                }
                Ok(row.id)
            }
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(OutboxError::DuplicateId {
                    id: row.id,
                    source: Box::new(sqlx::Error::Database(e)),
                })
            }
            Err(e) => Err(db_error(e)),
        }
    }

    /// Hands committed rows to the relay and wakes it; gives the lease of rows the relay can
    /// no longer take back to the table.
    async fn hand(&self, rows: Vec<ClaimedOutboxRow>, leased_at: Instant) {
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
            tracing::warn!(
                error = &e as &dyn std::error::Error,
                rows = ids.len(),
                "could not give handed rows back to the table; they wait for their lease to run out"
            );
        }
    }
}
