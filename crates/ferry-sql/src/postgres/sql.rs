//! The statements of the PostgreSQL dialect.

use crate::{dialect::HeldClaim, statement::Statements};

// The relay's own bookkeeping (claims, marks) commits with `synchronous_commit = off`, set
// for that statement's transaction only: it does not wait for the WAL flush. A database crash
// may forget the last few claims or marks; the rows are then published again, which
// at-least-once delivery allows (the inbox makes it harmless), and an event added by the
// application is never lost: its transaction keeps the application's own durability.

/// Claims due rows in order, skipping rows other relays are claiming (`SKIP LOCKED`), and
/// leases them. A row with a partition key is taken only if every earlier pending row of its
/// partition is taken in the same statement: an earlier row that is leased, backing off, or
/// being claimed by another relay (skipped) holds the partition back.
pub(super) const CLAIM: &str = "
WITH candidates AS MATERIALIZED (
    SELECT seq, partition_key FROM ferry_outbox
    WHERE status = 'pending'
      AND next_attempt_at <= now()
      AND (locked_until IS NULL OR locked_until <= now())
    ORDER BY seq
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), claimable AS (
    SELECT c.seq FROM candidates c
    WHERE c.partition_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM ferry_outbox e
        WHERE e.partition_key = c.partition_key
          AND e.status = 'pending'
          AND e.seq < c.seq
          AND NOT EXISTS (SELECT 1 FROM candidates c2 WHERE c2.seq = e.seq)
    )
)
UPDATE ferry_outbox o
SET locked_until = now() + $2 * interval '1 millisecond', locked_by = $3
FROM claimable
WHERE o.seq = claimable.seq
  AND (SELECT set_config('synchronous_commit', 'off', true)) IS NOT NULL
RETURNING o.seq, o.id, o.exchange, o.routing_key, o.properties, o.headers, o.body,
          o.attempts, o.partition_key, o.created_at";

/// Claims due rows in order as [`CLAIM`] does, in a transaction left open while the relay
/// publishes them: the row locks taken here hold the rows, and nothing is written until the
/// mark (`outbox/held.rs`). The transaction skips the WAL flush at commit (as the lease's
/// statements do) and is cut off by the server if it stays idle longer than the lease (`$2`
/// ms): a relay that hangs holding its connection gives its rows back. A row leased to a
/// relay (handed to it at commit) is skipped until its lease ends. Every candidate is locked,
/// including those a partition holds back: `candidates` counts them.
const CLAIM_HELD: &str = "
WITH candidates AS MATERIALIZED (
    SELECT seq, partition_key FROM ferry_outbox
    WHERE status = 'pending'
      AND next_attempt_at <= now()
      AND (locked_until IS NULL OR locked_until <= now())
      AND (SELECT set_config('synchronous_commit', 'off', true)) IS NOT NULL
      AND (SELECT set_config('idle_in_transaction_session_timeout',
                             greatest(ceil($2::float8), 1)::bigint::text, true)) IS NOT NULL
    ORDER BY seq
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
SELECT o.seq, o.id, o.exchange, o.routing_key, o.properties, o.headers, o.body,
       o.attempts, o.partition_key, o.created_at,
       (SELECT count(*) FROM candidates) AS candidates
FROM candidates c JOIN ferry_outbox o ON o.seq = c.seq
WHERE c.partition_key IS NULL OR NOT EXISTS (
    SELECT 1 FROM ferry_outbox e
    WHERE e.partition_key = c.partition_key
      AND e.status = 'pending'
      AND e.seq < c.seq
      AND NOT EXISTS (SELECT 1 FROM candidates c2 WHERE c2.seq = e.seq)
)";

/// Locks the rows a held claim found claimable (`$1`, ids), in a transaction of their own, when
/// the claim also locked rows a partition held back; the relay checks the order again.
const RELOCK_HELD: &str = "
SELECT seq, id, exchange, routing_key, properties, headers, body, attempts, partition_key,
       created_at
FROM ferry_outbox
WHERE id = ANY($1)
  AND status = 'pending'
  AND next_attempt_at <= now()
  AND (locked_until IS NULL OR locked_until <= now())
  AND (SELECT set_config('synchronous_commit', 'off', true)) IS NOT NULL
  AND (SELECT set_config('idle_in_transaction_session_timeout',
                         greatest(ceil($2::float8), 1)::bigint::text, true)) IS NOT NULL
ORDER BY seq
FOR UPDATE SKIP LOCKED";

/// The claims held by row locks.
pub(super) const HELD_CLAIM: HeldClaim = HeldClaim {
    claim: CLAIM_HELD,
    relock: RELOCK_HELD,
};

/// One statement for the batch; a row published after another relay took it over (its lease
/// expired) is still published.
pub(super) const MARK_PUBLISHED: &str = "
UPDATE ferry_outbox
SET status = 'published', published_at = now(), locked_until = NULL, locked_by = NULL
WHERE id = ANY($1) AND status <> 'published'
  AND (SELECT set_config('synchronous_commit', 'off', true)) IS NOT NULL";

/// Deletes published rows at once, for an outbox that keeps no history.
pub(super) const DELETE_SENT: &str = "
DELETE FROM ferry_outbox
WHERE id = ANY($1)
  AND (SELECT set_config('synchronous_commit', 'off', true)) IS NOT NULL";

/// Raises attempts, backs off `base * 2^(attempts - 1)` capped at `max`, and marks rows past
/// `max_attempts` dead. Only rows this relay still leases (`$6`), or, `$6` being `NULL`, rows
/// locked by the claim's transaction the statement runs in.
pub(super) const MARK_FAILED: &str = "
UPDATE ferry_outbox o
SET attempts = o.attempts + 1,
    last_error = f.error,
    status = CASE WHEN o.attempts + 1 >= $3 THEN 'dead' ELSE 'pending' END,
    next_attempt_at = now() + least($4::float8 * power(2::float8, least(o.attempts, 40)), $5::float8)
                              * interval '1 millisecond',
    locked_until = NULL,
    locked_by = NULL
FROM unnest($1::text[], $2::text[]) AS f(id, error)
WHERE o.id = f.id AND o.status = 'pending' AND ($6::text IS NULL OR o.locked_by = $6)
RETURNING o.id, o.status";

pub(super) const RELEASE: &str = "
UPDATE ferry_outbox SET locked_until = NULL, locked_by = NULL
WHERE id = ANY($1) AND status = 'pending' AND locked_by = $2";

pub(super) const STATS: &str = "
SELECT
    (SELECT count(*) FROM ferry_outbox WHERE status = 'pending') AS pending,
    (SELECT count(*) FROM ferry_outbox WHERE status = 'published') AS published,
    (SELECT count(*) FROM ferry_outbox WHERE status = 'dead') AS dead,
    (SELECT EXTRACT(EPOCH FROM now() - created_at)::float8 FROM ferry_outbox
     WHERE status = 'pending' ORDER BY seq LIMIT 1) AS oldest_pending_age_s";

/// The insert; `$9`, `$10`: the lease and the relay when the row is handed over at commit.
pub(super) const INSERT: &str = "INSERT INTO ferry_outbox \
     (id, event_type, exchange, routing_key, properties, headers, body, partition_key, \
      locked_until, locked_by) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
             clock_timestamp() + $9 * interval '1 millisecond', $10)";

/// The columns `ferry outbox` shows.
macro_rules! row_columns {
    () => {
        "id, seq, status, attempts, last_error, event_type, exchange, routing_key, \
         partition_key, created_at, next_attempt_at, published_at, locked_until, \
         octet_length(body)::int8 AS body_bytes"
    };
}

pub(super) const LIST: &str = concat!(
    "SELECT ",
    row_columns!(),
    " FROM ferry_outbox WHERE ($1::text IS NULL OR status = $1) ORDER BY seq DESC LIMIT $2"
);

pub(super) const ROW: &str = concat!(
    "SELECT ",
    row_columns!(),
    " FROM ferry_outbox WHERE id = $1"
);

pub(super) const RETRY: &str = "WITH retried AS (
    UPDATE ferry_outbox
    SET status = 'pending', attempts = 0, next_attempt_at = now(),
        locked_until = CASE WHEN status = 'dead' THEN NULL ELSE locked_until END,
        locked_by = CASE WHEN status = 'dead' THEN NULL ELSE locked_by END
    WHERE id = $1 AND status IN ('dead', 'pending')
    RETURNING id
)
SELECT id FROM retried";

pub(super) const RETRY_ALL_DEAD: &str = "WITH retried AS (
    UPDATE ferry_outbox
    SET status = 'pending', attempts = 0, next_attempt_at = now(),
        locked_until = NULL, locked_by = NULL
    WHERE status = 'dead'
    RETURNING id, seq
)
SELECT seq, id FROM retried";

pub(super) const DELETE_PUBLISHED: &str = "DELETE FROM ferry_outbox WHERE id IN (
    SELECT id FROM ferry_outbox
    WHERE status = 'published'
      AND published_at < now() - $1 * interval '1 millisecond'
    LIMIT $2
)";

pub(super) const INSERT_INBOX: &str = "INSERT INTO ferry_inbox (consumer, message_id) VALUES ($1, $2) \
    ON CONFLICT (consumer, message_id) DO NOTHING";

pub(super) const INBOX_CONTAINS: &str =
    "SELECT 1 FROM ferry_inbox WHERE consumer = $1 AND message_id = $2";

pub(super) const DELETE_INBOX: &str = "DELETE FROM ferry_inbox WHERE (consumer, message_id) IN (
    SELECT consumer, message_id FROM ferry_inbox
    WHERE processed_at < now() - $1 * interval '1 millisecond'
    LIMIT $2
)";

/// Which messages of the group are already recorded: one primary-key probe per message (the
/// lateral subquery keeps the planner from hashing a scan of the whole inbox, which it does
/// for a plain join or `IN`, not knowing how few messages the arrays hold).
pub(super) const LOOKUP: &str = "
SELECT c.consumer, c.message_id
FROM unnest($1::text[], $2::text[]) AS c(consumer, message_id)
CROSS JOIN LATERAL (
    SELECT 1 FROM ferry_inbox i
    WHERE i.consumer = c.consumer AND i.message_id = c.message_id
    LIMIT 1
) AS found";

/// Records the group; returns the ones it inserted (the others were recorded already). The
/// group is sorted, so two groups holding the same keys (copies handled at the same moment)
/// take their locks in the same order and cannot deadlock.
pub(super) const RECORD: &str = "
INSERT INTO ferry_inbox (consumer, message_id)
SELECT * FROM unnest($1::text[], $2::text[])
ON CONFLICT (consumer, message_id) DO NOTHING
RETURNING consumer, message_id";

pub(super) const APPLIED_VERSIONS: &str = "SELECT version FROM ferry_migrations";

pub(super) const RECORD_MIGRATION: &str =
    "INSERT INTO ferry_migrations (version, description) VALUES ($1, $2)";

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
