//! The dead-letter store: every dead letter a dead-letter consumer records, byte for byte, with
//! its fault, in `ferry_dead_letters` (`docs/tables.md`), so they can be searched, grouped,
//! replayed and deleted without consuming the dead-letter queue.
//!
//! - Recording: [`DeadLetterStore::recorder`] is a callback for a dead-letter consumer
//!   (`.on_dead_letter(store.recorder())`); [`DeadLetterStore::record_in`] records inside a
//!   transaction of the caller's (with an inbox row, say).
//! - Reading: [`DeadLetterStore::list`], [`DeadLetterStore::get`] (headers, properties and body
//!   as received), [`DeadLetterStore::groups`] (by fault kind, queue, event type and the fault
//!   message with ids and numbers taken out), [`DeadLetterStore::counts`].
//! - Acting: [`DeadLetterStore::replay`] republishes through a transport (with RabbitMQ,
//!   `RabbitMq::replay_dead_letter`, what `ferry dlq replay` does) and marks the row replayed
//!   only once the broker confirmed; [`DeadLetterStore::delete`] is soft (status `deleted`).

pub(crate) mod dialect;
mod group;
mod record;
pub(crate) mod statement;

use std::future::Future;

use chrono::{DateTime, Utc};
use ferry_core::{DeadLetter, HandlerError};

use crate::dialect::{Conn, Pool};
pub use dialect::{DeadLetterDialect, DeadLetterStatements, NewDeadLetterRow};
pub use group::{group_key, normalize_fault_message};
pub use record::{
    DeadLetterCounts, DeadLetterGroup, DeadLetterRecord, DeadLetterStatus, RatePoint,
    ReplayOutcome, StoredDeadLetter,
};

/// The columns of a listed row.
macro_rules! list_columns {
    () => {
        "id, message_id, event_type, queue, exchange, routing_key, fault_kind, fault_message, \
         attempts, failed_at, status, replayed_at, group_key"
    };
}
pub(crate) use list_columns;

/// The counts by status, the same SQL on every database.
pub(crate) const COUNTS: &str = "SELECT count(*) FILTER (WHERE status = 'dead') AS dead, \
    count(*) FILTER (WHERE status = 'replayed') AS replayed, \
    count(*) FILTER (WHERE status = 'deleted') AS deleted, \
    count(DISTINCT group_key) FILTER (WHERE status = 'dead') AS groups \
    FROM ferry_dead_letters";

/// The groups of `dead` rows, the same SQL on every database.
pub(crate) const GROUPS: &str = "SELECT group_key, min(fault_kind) AS fault_kind, \
    min(queue) AS queue, min(event_type) AS event_type, min(fault_group) AS fault_group, \
    count(*) AS n, min(failed_at) AS first_failed_at, max(failed_at) AS last_failed_at \
    FROM ferry_dead_letters WHERE status = 'dead' \
    GROUP BY group_key ORDER BY n DESC, last_failed_at DESC";

/// The queues dead letters failed on, the same SQL on every database.
pub(crate) const QUEUES: &str =
    "SELECT DISTINCT queue FROM ferry_dead_letters WHERE queue IS NOT NULL ORDER BY queue";

/// Why the dead-letter store failed.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterStoreError {
    /// The database failed.
    #[error("the dead-letter store's database failed")]
    Database(#[from] sqlx::Error),
    /// A dead letter's headers or properties could not be written as JSON.
    #[error("cannot write a dead letter's headers as JSON")]
    Encode(#[from] serde_json::Error),
    /// A stored row cannot be read back.
    #[error("dead letter `{id}` in the store cannot be read: {reason}")]
    Corrupt {
        /// The row's id.
        id: String,
        /// What is wrong.
        reason: String,
    },
}

/// The dead-letter store on a SQL database (`ferry_dead_letters`); run the database's `migrate`
/// first. Cloning is cheap.
///
/// ```no_run
/// use ferry_sql::{dead_letters::DeadLetterStore, postgres::Postgres};
/// # async fn demo(pool: sqlx::PgPool, bus: ferry_rabbitmq::RabbitMq) -> Result<(), Box<dyn std::error::Error>> {
/// let store = DeadLetterStore::<Postgres>::new(pool);
/// // Record every dead letter of `app.dlq`.
/// bus.dead_letter_consumer("app.dlq")
///     .exchange("app.dlx")
///     .on_dead_letter(store.recorder())
///     .start()
///     .await?;
/// // Later: replay a group, confirmed, to the queues its messages failed on.
/// let bus = &bus;
/// for group in store.groups().await? {
///     let ids = store.ids_in_group(&group.group).await?;
///     let outcome = store.replay(&ids, |dead| async move { bus.replay_dead_letter(&dead).await }).await?;
///     println!("{} replayed", outcome.replayed.len());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DeadLetterStore<D: DeadLetterDialect> {
    pool: Pool<D>,
}

impl<D: DeadLetterDialect> DeadLetterStore<D> {
    /// A store on `pool`.
    pub fn new(pool: Pool<D>) -> Self {
        Self { pool }
    }

    /// The pool.
    pub fn pool(&self) -> &Pool<D> {
        &self.pool
    }

    /// Records a dead letter; returns the row's id.
    pub async fn record(&self, dead: &DeadLetter) -> Result<String, DeadLetterStoreError> {
        let mut conn = self.pool.acquire().await?;
        Self::record_in(&mut conn, dead).await
    }

    /// Records a dead letter on a connection or in a transaction of the caller's (it commits
    /// with the caller's writes); returns the row's id.
    pub async fn record_in(
        conn: &mut Conn<D>,
        dead: &DeadLetter,
    ) -> Result<String, DeadLetterStoreError> {
        let id = ferry_core::envelope::new_id();
        let headers = serde_json::to_string(&dead.message.headers)?;
        let properties = serde_json::to_string(&dead.message.properties)?;
        let fault = &dead.fault;
        let queue = fault.original_queue.as_deref();
        let event_type = dead.event_type();
        let fault_group = normalize_fault_message(&fault.message);
        let key = group_key(fault.kind.as_str(), queue, event_type, &fault_group);
        let row = NewDeadLetterRow {
            id: &id,
            message_id: dead.message_id(),
            event_type,
            queue,
            exchange: fault.original_exchange.as_deref(),
            routing_key: fault
                .original_routing_key
                .as_deref()
                .or(Some(dead.routing_key.as_str())),
            fault_kind: fault.kind.as_str(),
            fault_message: &fault.message,
            attempts: i64::from(fault.attempts),
            failed_at: fault.at,
            headers: &headers,
            properties: &properties,
            body: &dead.message.body,
            group_key: &key,
            fault_group: &fault_group,
        };
        statement::insert::<D>(conn, &row).await?;
        tracing::debug!(id, kind = %fault.kind, queue, "dead letter recorded in the store");
        Ok(id)
    }

    /// A dead-letter consumer's callback that records each dead letter (a failure to record
    /// is transient: the dead letter stays on its queue and comes back).
    pub fn recorder(
        &self,
    ) -> impl Fn(
        DeadLetter,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>>
    + Send
    + Sync
    + 'static {
        let store = self.clone();
        move |dead| {
            let store = store.clone();
            Box::pin(async move {
                store
                    .record(&dead)
                    .await
                    .map(drop)
                    .map_err(HandlerError::transient)
            })
        }
    }

    /// Rows, newest first: those with `status` and in `group` when given; at most `limit`.
    pub async fn list(
        &self,
        status: Option<DeadLetterStatus>,
        group: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeadLetterRecord>, DeadLetterStoreError> {
        let rows = statement::list::<D>(
            &self.pool,
            status.map(DeadLetterStatus::as_str),
            group,
            i64::from(limit),
        )
        .await?;
        rows.iter().map(record::read_record::<D>).collect()
    }

    /// One dead letter with its headers, properties and body.
    pub async fn get(&self, id: &str) -> Result<Option<StoredDeadLetter>, DeadLetterStoreError> {
        let row = statement::get::<D>(&self.pool, id).await?;
        row.as_ref().map(record::read_stored::<D>).transpose()
    }

    /// The ids of the `dead` rows of a group.
    pub async fn ids_in_group(&self, group: &str) -> Result<Vec<String>, DeadLetterStoreError> {
        let rows = self
            .list(Some(DeadLetterStatus::Dead), Some(group), u32::MAX)
            .await?;
        Ok(rows.into_iter().map(|r| r.id).collect())
    }

    /// The groups of `dead` rows, largest first.
    pub async fn groups(&self) -> Result<Vec<DeadLetterGroup>, DeadLetterStoreError> {
        let rows = statement::groups::<D>(&self.pool).await?;
        rows.iter().map(record::read_group::<D>).collect()
    }

    /// Rows by status, and the number of groups of `dead` rows.
    pub async fn counts(&self) -> Result<DeadLetterCounts, DeadLetterStoreError> {
        let row = statement::counts::<D>(&self.pool).await?;
        record::read_counts::<D>(&row)
    }

    /// The queues dead letters failed on.
    pub async fn queues(&self) -> Result<Vec<String>, DeadLetterStoreError> {
        let rows = statement::queues::<D>(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(queue) = D::text(row, "queue")? {
                out.push(queue);
            }
        }
        Ok(out)
    }

    /// Per-minute counts since `since` of events published by the outbox, dead letters and
    /// messages handled through an inbox.
    pub async fn rates(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<RatePoint>, DeadLetterStoreError> {
        let rows = statement::rates::<D>(&self.pool, since).await?;
        rows.iter().map(record::read_rate::<D>).collect()
    }

    /// Replays `dead` rows through `replay` (for RabbitMQ `bus.replay_dead_letter(&dead)`),
    /// one at a time, and marks each replayed once `replay` succeeded (the broker confirmed).
    /// A row whose replay fails stays as it was, and is reported with why; rows that are not
    /// `dead` (or not there) are reported as not found.
    pub async fn replay<F, Fut, E>(
        &self,
        ids: &[String],
        replay: F,
    ) -> Result<ReplayOutcome, DeadLetterStoreError>
    where
        F: Fn(DeadLetter) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let mut outcome = ReplayOutcome::default();
        for id in ids {
            let Some(stored) = self.get(id).await? else {
                outcome.not_found.push(id.clone());
                continue;
            };
            if stored.record.status != DeadLetterStatus::Dead {
                outcome.not_found.push(id.clone());
                continue;
            }
            let routing_key = stored.record.routing_key.clone().unwrap_or_default();
            let dead = DeadLetter::from_message(stored.message, routing_key);
            match replay(dead).await {
                Ok(()) => {
                    // Another replay may have marked it meanwhile; the message went out
                    // either way (at least once), so it counts as replayed.
                    statement::mark_replayed::<D>(&self.pool, id).await?;
                    outcome.replayed.push(id.clone());
                }
                Err(e) => {
                    tracing::warn!(id, error = %e, "dead letter could not be replayed");
                    outcome.failed.push((id.clone(), e.to_string()));
                }
            }
        }
        if !outcome.replayed.is_empty() {
            tracing::info!(rows = outcome.replayed.len(), "dead letters replayed");
        }
        Ok(outcome)
    }

    /// Marks rows deleted (soft: they stay in the table, with status `deleted`); how many were
    /// not deleted before.
    pub async fn delete(&self, ids: &[String]) -> Result<u64, DeadLetterStoreError> {
        let n = statement::delete::<D>(&self.pool, ids).await?;
        if n > 0 {
            tracing::info!(rows = n, "dead letters deleted (soft)");
        }
        Ok(n)
    }
}
