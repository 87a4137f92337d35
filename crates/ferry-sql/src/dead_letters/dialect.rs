//! What each database does its own way for the dead-letter store and the audit log: the SQL
//! text and how times are written. Implemented next to each [`Dialect`]
//! (`postgres/dead_letters.rs`, `sqlite/dead_letters.rs`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::dialect::{Conn, Dialect, Pool, Row};

/// A dead letter to insert, as the columns of `ferry_dead_letters` hold it.
#[derive(Debug)]
pub struct NewDeadLetterRow<'a> {
    /// The store's own key.
    pub id: &'a str,
    /// The message id, where it has one.
    pub message_id: Option<&'a str>,
    /// The event type, where it could be read.
    pub event_type: Option<&'a str>,
    /// The queue it failed on.
    pub queue: Option<&'a str>,
    /// The exchange it was first published to.
    pub exchange: Option<&'a str>,
    /// The routing key it was first published with.
    pub routing_key: Option<&'a str>,
    /// The fault kind.
    pub fault_kind: &'a str,
    /// The fault message.
    pub fault_message: &'a str,
    /// Delivery attempts made.
    pub attempts: i64,
    /// When it was dead-lettered.
    pub failed_at: DateTime<Utc>,
    /// The header table as JSON text.
    pub headers: &'a str,
    /// The basic properties as JSON text.
    pub properties: &'a str,
    /// The body, byte for byte.
    pub body: &'a [u8],
    /// The group's key.
    pub group_key: &'a str,
    /// The normalized fault message.
    pub fault_group: &'a str,
}

/// The dead-letter store's and audit log's statements for one database.
#[async_trait]
pub trait DeadLetterDialect: Dialect {
    /// Inserts a dead letter.
    async fn dl_insert(
        conn: &mut Conn<Self>,
        row: &NewDeadLetterRow<'_>,
    ) -> Result<(), sqlx::Error>;

    /// Rows (without headers, properties and body), newest first.
    async fn dl_list(
        pool: &Pool<Self>,
        status: Option<&str>,
        group: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Row<Self>>, sqlx::Error>;

    /// One row with every column.
    async fn dl_get(pool: &Pool<Self>, id: &str) -> Result<Option<Row<Self>>, sqlx::Error>;

    /// Marks a `dead` row replayed; whether it was `dead`.
    async fn dl_mark_replayed(pool: &Pool<Self>, id: &str) -> Result<bool, sqlx::Error>;

    /// Marks rows that are not yet deleted as deleted; how many.
    async fn dl_delete(pool: &Pool<Self>, ids: &[String]) -> Result<u64, sqlx::Error>;

    /// One row: `dead`, `replayed`, `deleted` (counts) and `groups` (groups of dead rows).
    async fn dl_counts(pool: &Pool<Self>) -> Result<Row<Self>, sqlx::Error>;

    /// The groups of `dead` rows: `group_key`, `fault_kind`, `queue`, `event_type`,
    /// `fault_group`, `n`, `first_failed_at`, `last_failed_at`; largest first.
    async fn dl_groups(pool: &Pool<Self>) -> Result<Vec<Row<Self>>, sqlx::Error>;

    /// The distinct queues dead letters failed on (`queue`).
    async fn dl_queues(pool: &Pool<Self>) -> Result<Vec<Row<Self>>, sqlx::Error>;

    /// Per-minute counts since `since`: `source` (`published`, `dead_lettered`, `handled`),
    /// `minute` (minutes since the Unix epoch), `n`.
    async fn rates(pool: &Pool<Self>, since: DateTime<Utc>) -> Result<Vec<Row<Self>>, sqlx::Error>;

    /// Appends an audit row.
    async fn audit_insert(
        pool: &Pool<Self>,
        role: &str,
        action: &str,
        target: &str,
        count: i64,
    ) -> Result<(), sqlx::Error>;

    /// The newest audit rows: `at`, `role`, `action`, `target`, `count`.
    async fn audit_list(pool: &Pool<Self>, limit: i64) -> Result<Vec<Row<Self>>, sqlx::Error>;
}
