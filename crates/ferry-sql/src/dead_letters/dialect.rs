//! What each database does its own way for the dead-letter store and the audit log: the SQL
//! text and how times are written. Implemented next to each [`Dialect`]
//! (`postgres/dead_letters.rs`, `sqlite/dead_letters.rs`).

use chrono::{DateTime, Utc};

use crate::dialect::Dialect;

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

/// The SQL text of the dead-letter store's and the audit log's statements on one database;
/// `dead_letters/statement.rs` binds their arguments (numbered in the order each field's
/// comment gives) and reads their rows the same way on every database.
#[derive(Debug)]
pub struct DeadLetterStatements {
    /// Inserts a dead letter: id, message id, event type, queue, exchange, routing key, fault
    /// kind, fault message, attempts, failed at, headers, properties, body, group key, fault
    /// group.
    pub insert: &'static str,
    /// Rows (without headers, properties and body), newest first: status (or `NULL`), group
    /// key (or `NULL`), limit.
    pub list: &'static str,
    /// One row with every column: id.
    pub get: &'static str,
    /// Marks a `dead` row replayed: id.
    pub mark_replayed: &'static str,
    /// Marks rows that are not yet deleted as deleted: ids.
    pub delete: &'static str,
    /// One row: `dead`, `replayed`, `deleted` (counts) and `groups` (groups of dead rows).
    pub counts: &'static str,
    /// The groups of `dead` rows: `group_key`, `fault_kind`, `queue`, `event_type`,
    /// `fault_group`, `n`, `first_failed_at`, `last_failed_at`; largest first.
    pub groups: &'static str,
    /// The distinct queues dead letters failed on (`queue`).
    pub queues: &'static str,
    /// Per-minute counts since: a moment; `source` (`published`, `dead_lettered`,
    /// `handled`), `minute` (minutes since the Unix epoch), `n`.
    pub rates: &'static str,
    /// Appends an audit row: role, action, target, count.
    pub audit_insert: &'static str,
    /// The newest audit rows (`at`, `role`, `action`, `target`, `count`): limit.
    pub audit_list: &'static str,
}

/// A database the dead-letter store and the audit log run on: a [`Dialect`] and the text of
/// their statements.
pub trait DeadLetterDialect: Dialect {
    /// The statements' text.
    const DEAD_LETTER_SQL: &'static DeadLetterStatements;
}
