//! The statements of the SQLite dialect. Times are milliseconds since the Unix epoch, taken
//! from the database's clock (`now!()`, the same value everywhere in one statement).

use crate::statement::Statements;

/// Now, in milliseconds since the Unix epoch.
macro_rules! now {
    () => {
        "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)"
    };
}
pub(super) use now;

/// Claims due rows in order and leases them. A row with a partition key is taken only if no
/// earlier pending row of its partition is leased or waiting for its next attempt (SQLite has
/// one writer at a time, so the statement sees every claim made before it).
pub(super) const CLAIM: &str = concat!(
    "
UPDATE ferry_outbox
SET locked_until = ",
    now!(),
    " + ?2, locked_by = ?3
WHERE seq IN (
    SELECT o.seq FROM ferry_outbox o
    WHERE o.status = 'pending'
      AND o.next_attempt_at <= ",
    now!(),
    "
      AND (o.locked_until IS NULL OR o.locked_until <= ",
    now!(),
    ")
      AND (o.partition_key IS NULL OR NOT EXISTS (
          SELECT 1 FROM ferry_outbox e
          WHERE e.partition_key = o.partition_key
            AND e.status = 'pending'
            AND e.seq < o.seq
            AND (e.next_attempt_at > ",
    now!(),
    " OR (e.locked_until IS NOT NULL AND e.locked_until > ",
    now!(),
    "))
      ))
    ORDER BY o.seq
    LIMIT ?1
)
RETURNING seq, id, exchange, routing_key, properties, headers, body, attempts,
          partition_key, created_at"
);

pub(super) const MARK_PUBLISHED: &str = concat!(
    "
UPDATE ferry_outbox
SET status = 'published', published_at = ",
    now!(),
    ", locked_until = NULL, locked_by = NULL
WHERE id IN (SELECT value FROM json_each(?1)) AND status <> 'published'"
);

/// Deletes published rows at once, for an outbox that keeps no history.
pub(super) const DELETE_SENT: &str =
    "DELETE FROM ferry_outbox WHERE id IN (SELECT value FROM json_each(?1))";

/// Raises attempts, backs off `base * 2^(attempts - 1)` capped at `max`, and marks rows past
/// `max_attempts` dead. Only a row this relay still holds.
pub(super) const MARK_FAILED: &str = "
UPDATE ferry_outbox
SET attempts = attempts + 1,
    last_error = ?2,
    status = CASE WHEN attempts + 1 >= ?3 THEN 'dead' ELSE 'pending' END,
    next_attempt_at = ?4 + min(?5 * (1 << min(attempts, 30)), ?6),
    locked_until = NULL,
    locked_by = NULL
WHERE id = ?1 AND status = 'pending' AND locked_by = ?7
RETURNING status";

pub(super) const RELEASE: &str = "
UPDATE ferry_outbox SET locked_until = NULL, locked_by = NULL
WHERE id IN (SELECT value FROM json_each(?1)) AND status = 'pending' AND locked_by = ?2";

pub(super) const STATS: &str = "
SELECT
    (SELECT count(*) FROM ferry_outbox WHERE status = 'pending') AS pending,
    (SELECT count(*) FROM ferry_outbox WHERE status = 'published') AS published,
    (SELECT count(*) FROM ferry_outbox WHERE status = 'dead') AS dead,
    (SELECT created_at FROM ferry_outbox WHERE status = 'pending' ORDER BY seq LIMIT 1)
        AS oldest_pending";

/// The insert. Writers are serialized, so max + 1 is taken by one transaction at a time.
pub(super) const INSERT: &str = concat!(
    "INSERT INTO ferry_outbox \
     (id, seq, event_type, exchange, routing_key, properties, headers, body, \
      partition_key, next_attempt_at, created_at, locked_until, locked_by) \
     SELECT ?1, (SELECT coalesce(max(seq), 0) + 1 FROM ferry_outbox), \
            ?2, ?3, ?4, ?5, ?6, ?7, ?8, now, now, now + ?9, ?10 \
     FROM (SELECT ",
    now!(),
    " AS now)"
);

/// The columns `ferry outbox` shows.
macro_rules! row_columns {
    () => {
        "id, seq, status, attempts, last_error, event_type, exchange, routing_key, \
         partition_key, created_at, next_attempt_at, published_at, locked_until, \
         length(body) AS body_bytes"
    };
}

pub(super) const LIST: &str = concat!(
    "SELECT ",
    row_columns!(),
    " FROM ferry_outbox WHERE (?1 IS NULL OR status = ?1) ORDER BY seq DESC LIMIT ?2"
);

pub(super) const ROW: &str = concat!(
    "SELECT ",
    row_columns!(),
    " FROM ferry_outbox WHERE id = ?1"
);

pub(super) const RETRY: &str = concat!(
    "UPDATE ferry_outbox
SET status = 'pending', attempts = 0, next_attempt_at = ",
    now!(),
    ",
    locked_until = CASE WHEN status = 'dead' THEN NULL ELSE locked_until END,
    locked_by = CASE WHEN status = 'dead' THEN NULL ELSE locked_by END
WHERE id = ?1 AND status IN ('dead', 'pending')
RETURNING id"
);

pub(super) const RETRY_ALL_DEAD: &str = concat!(
    "UPDATE ferry_outbox
SET status = 'pending', attempts = 0, next_attempt_at = ",
    now!(),
    ",
    locked_until = NULL, locked_by = NULL
WHERE status = 'dead'
RETURNING seq, id"
);

pub(super) const DELETE_PUBLISHED: &str = concat!(
    "DELETE FROM ferry_outbox WHERE id IN (
    SELECT id FROM ferry_outbox
    WHERE status = 'published' AND published_at < ",
    now!(),
    " - ?1
    LIMIT ?2
)"
);

pub(super) const INSERT_INBOX: &str = concat!(
    "INSERT INTO ferry_inbox (consumer, message_id, processed_at) VALUES (?1, ?2, ",
    now!(),
    ") ON CONFLICT (consumer, message_id) DO NOTHING"
);

pub(super) const INBOX_CONTAINS: &str =
    "SELECT 1 FROM ferry_inbox WHERE consumer = ?1 AND message_id = ?2";

pub(super) const DELETE_INBOX: &str = concat!(
    "DELETE FROM ferry_inbox WHERE rowid IN (
    SELECT rowid FROM ferry_inbox WHERE processed_at < ",
    now!(),
    " - ?1 LIMIT ?2
)"
);

pub(super) const APPLIED_VERSIONS: &str = "SELECT version FROM ferry_migrations";

pub(super) const RECORD_MIGRATION: &str = concat!(
    "INSERT INTO ferry_migrations (version, description, applied_at) VALUES (?1, ?2, ",
    now!(),
    ")"
);

/// The statements the store runs the same way on every database.
pub(super) const STATEMENTS: Statements = Statements {
    insert: INSERT,
    claim: CLAIM,
    mark_published: MARK_PUBLISHED,
    delete_sent: DELETE_SENT,
    release: RELEASE,
    list: LIST,
    row: ROW,
    retry: RETRY,
    retry_all_dead: RETRY_ALL_DEAD,
    delete_published: DELETE_PUBLISHED,
    insert_inbox: INSERT_INBOX,
    inbox_contains: INBOX_CONTAINS,
    delete_inbox: DELETE_INBOX,
    applied_versions: APPLIED_VERSIONS,
    record_migration: RECORD_MIGRATION,
};
