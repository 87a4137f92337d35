//! ferry's tables on PostgreSQL (`docs/tables.md`).

use crate::dialect::Migration;

/// The history table.
pub(super) const HISTORY_TABLE: &str = "CREATE TABLE IF NOT EXISTS ferry_migrations (
    version     BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
)";

/// A key for `pg_advisory_xact_lock`, so concurrent starts apply the migrations once
/// (the bytes of "ferrymig").
pub(super) const LOCK_KEY: i64 = 0x6665_7272_796d_6967;

pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "outbox and inbox",
        sql: r#"
CREATE TABLE ferry_outbox (
    id              TEXT PRIMARY KEY,
    seq             BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'published', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at    TIMESTAMPTZ,
    event_type      TEXT,
    exchange        TEXT,
    routing_key     TEXT NOT NULL,
    properties      JSONB NOT NULL,
    headers         JSONB NOT NULL,
    body            BYTEA NOT NULL,
    partition_key   TEXT,
    locked_until    TIMESTAMPTZ,
    locked_by       TEXT
);
CREATE INDEX ferry_outbox_pending_idx ON ferry_outbox (seq) WHERE status = 'pending';
CREATE INDEX ferry_outbox_partition_idx ON ferry_outbox (partition_key, seq)
    WHERE status = 'pending' AND partition_key IS NOT NULL;
CREATE INDEX ferry_outbox_published_idx ON ferry_outbox (published_at) WHERE status = 'published';
CREATE INDEX ferry_outbox_dead_idx ON ferry_outbox (seq) WHERE status = 'dead';

CREATE FUNCTION ferry_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ferry_outbox', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER ferry_outbox_notify AFTER INSERT ON ferry_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION ferry_outbox_notify();

CREATE TABLE ferry_inbox (
    consumer     TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
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
    failed_at     TIMESTAMPTZ NOT NULL,
    headers       TEXT NOT NULL,
    properties    TEXT NOT NULL,
    body          BYTEA NOT NULL,
    status        TEXT NOT NULL DEFAULT 'dead'
                  CHECK (status IN ('dead', 'replayed', 'deleted')),
    replayed_at   TIMESTAMPTZ,
    group_key     TEXT NOT NULL,
    fault_group   TEXT NOT NULL,
    recorded_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX ferry_dead_letters_group_idx ON ferry_dead_letters (status, group_key, failed_at);
CREATE INDEX ferry_dead_letters_failed_at_idx ON ferry_dead_letters (failed_at);
CREATE INDEX ferry_dead_letters_queue_idx ON ferry_dead_letters (queue);

CREATE TABLE ferry_audit (
    id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at     TIMESTAMPTZ NOT NULL,
    role   TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    count  BIGINT NOT NULL
);
"#,
    },
];
