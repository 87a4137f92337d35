//! ferry's tables on SQLite (`docs/tables.md`).

use crate::dialect::Migration;

/// The history table.
pub(super) const HISTORY_TABLE: &str = "CREATE TABLE IF NOT EXISTS ferry_migrations (
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  INTEGER NOT NULL
)";

pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "outbox and inbox",
        sql: r#"
CREATE TABLE ferry_outbox (
    id              TEXT NOT NULL PRIMARY KEY,
    seq             INTEGER NOT NULL UNIQUE,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'published', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    next_attempt_at INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    published_at    INTEGER,
    event_type      TEXT,
    exchange        TEXT,
    routing_key     TEXT NOT NULL,
    properties      TEXT NOT NULL,
    headers         TEXT NOT NULL,
    body            BLOB NOT NULL,
    partition_key   TEXT,
    locked_until    INTEGER,
    locked_by       TEXT
);
CREATE INDEX ferry_outbox_pending_idx ON ferry_outbox (seq) WHERE status = 'pending';
CREATE INDEX ferry_outbox_partition_idx ON ferry_outbox (partition_key, seq)
    WHERE status = 'pending' AND partition_key IS NOT NULL;
CREATE INDEX ferry_outbox_published_idx ON ferry_outbox (published_at) WHERE status = 'published';
CREATE INDEX ferry_outbox_dead_idx ON ferry_outbox (seq) WHERE status = 'dead';

CREATE TABLE ferry_inbox (
    consumer     TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    processed_at INTEGER NOT NULL,
    PRIMARY KEY (consumer, message_id)
);
CREATE INDEX ferry_inbox_processed_at_idx ON ferry_inbox (processed_at);
"#,
    },
    Migration {
        version: 2,
        description: "dead-letter store and console audit",
        sql: r#"
CREATE TABLE ferry_dead_letters (
    id            TEXT NOT NULL PRIMARY KEY,
    message_id    TEXT,
    event_type    TEXT,
    queue         TEXT,
    exchange      TEXT,
    routing_key   TEXT,
    fault_kind    TEXT NOT NULL,
    fault_message TEXT NOT NULL,
    attempts      INTEGER NOT NULL,
    failed_at     INTEGER NOT NULL,
    headers       TEXT NOT NULL,
    properties    TEXT NOT NULL,
    body          BLOB NOT NULL,
    status        TEXT NOT NULL DEFAULT 'dead'
                  CHECK (status IN ('dead', 'replayed', 'deleted')),
    replayed_at   INTEGER,
    group_key     TEXT NOT NULL,
    fault_group   TEXT NOT NULL,
    recorded_at   INTEGER NOT NULL
);
CREATE INDEX ferry_dead_letters_group_idx ON ferry_dead_letters (status, group_key, failed_at);
CREATE INDEX ferry_dead_letters_failed_at_idx ON ferry_dead_letters (failed_at);
CREATE INDEX ferry_dead_letters_queue_idx ON ferry_dead_letters (queue);

CREATE TABLE ferry_audit (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    role   TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    count  BIGINT NOT NULL
);
"#,
    },
];
