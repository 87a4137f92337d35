//! The dead-letter store's and the audit log's statements on SQLite (times in milliseconds
//! since the Unix epoch).

use super::{Sqlite, sql::now};
use crate::dead_letters::{self, DeadLetterDialect, DeadLetterStatements, list_columns};

impl DeadLetterDialect for Sqlite {
    const DEAD_LETTER_SQL: &'static DeadLetterStatements = &DeadLetterStatements {
        insert: concat!(
            "INSERT INTO ferry_dead_letters (id, message_id, event_type, queue, exchange, \
             routing_key, fault_kind, fault_message, attempts, failed_at, headers, properties, \
             body, group_key, fault_group, recorded_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ",
            now!(),
            ")"
        ),
        list: concat!(
            "SELECT ",
            list_columns!(),
            " FROM ferry_dead_letters \
             WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR group_key = ?2) \
             ORDER BY failed_at DESC, id DESC LIMIT ?3"
        ),
        get: concat!(
            "SELECT ",
            list_columns!(),
            ", headers, properties, body FROM ferry_dead_letters WHERE id = ?1"
        ),
        mark_replayed: concat!(
            "UPDATE ferry_dead_letters SET status = 'replayed', replayed_at = ",
            now!(),
            " WHERE id = ?1 AND status = 'dead'"
        ),
        delete: "UPDATE ferry_dead_letters SET status = 'deleted' \
                 WHERE id IN (SELECT value FROM json_each(?1)) AND status <> 'deleted'",
        counts: dead_letters::COUNTS,
        groups: dead_letters::GROUPS,
        queues: dead_letters::QUEUES,
        rates: "SELECT 'published' AS source, published_at / 60000 AS minute, count(*) AS n \
                FROM ferry_outbox WHERE status = 'published' AND published_at >= ?1 GROUP BY 2 \
                UNION ALL \
                SELECT 'dead_lettered', failed_at / 60000, count(*) \
                FROM ferry_dead_letters WHERE failed_at >= ?1 GROUP BY 2 \
                UNION ALL \
                SELECT 'handled', processed_at / 60000, count(*) \
                FROM ferry_inbox WHERE processed_at >= ?1 GROUP BY 2",
        audit_insert: concat!(
            "INSERT INTO ferry_audit (at, role, action, target, count) VALUES (",
            now!(),
            ", ?1, ?2, ?3, ?4)"
        ),
        audit_list: "SELECT at, role, action, target, count FROM ferry_audit \
                     ORDER BY id DESC LIMIT ?1",
    };
}
