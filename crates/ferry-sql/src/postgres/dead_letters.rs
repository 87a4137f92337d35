//! The dead-letter store and audit log on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, postgres::PgRow};

use super::Postgres;
use crate::dead_letters::{
    LIST_COLUMNS,
    dialect::{DeadLetterDialect, NewDeadLetterRow},
};

#[async_trait]
impl DeadLetterDialect for Postgres {
    async fn dl_insert(
        conn: &mut PgConnection,
        row: &NewDeadLetterRow<'_>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO ferry_dead_letters (id, message_id, event_type, queue, exchange, \
             routing_key, fault_kind, fault_message, attempts, failed_at, headers, properties, \
             body, group_key, fault_group) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(row.id)
        .bind(row.message_id)
        .bind(row.event_type)
        .bind(row.queue)
        .bind(row.exchange)
        .bind(row.routing_key)
        .bind(row.fault_kind)
        .bind(row.fault_message)
        .bind(i32::try_from(row.attempts).unwrap_or(i32::MAX))
        .bind(row.failed_at)
        .bind(row.headers)
        .bind(row.properties)
        .bind(row.body)
        .bind(row.group_key)
        .bind(row.fault_group)
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn dl_list(
        pool: &PgPool,
        status: Option<&str>,
        group: Option<&str>,
        limit: i64,
    ) -> Result<Vec<PgRow>, sqlx::Error> {
        let sql = format!(
            "SELECT {LIST_COLUMNS} FROM ferry_dead_letters \
             WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR group_key = $2) \
             ORDER BY failed_at DESC, id DESC LIMIT $3"
        );
        sqlx::query(&sql)
            .bind(status)
            .bind(group)
            .bind(limit)
            .fetch_all(pool)
            .await
    }

    async fn dl_get(pool: &PgPool, id: &str) -> Result<Option<PgRow>, sqlx::Error> {
        let sql = format!(
            "SELECT {LIST_COLUMNS}, headers, properties, body FROM ferry_dead_letters \
             WHERE id = $1"
        );
        sqlx::query(&sql).bind(id).fetch_optional(pool).await
    }

    async fn dl_mark_replayed(pool: &PgPool, id: &str) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE ferry_dead_letters SET status = 'replayed', replayed_at = now() \
             WHERE id = $1 AND status = 'dead'",
        )
        .bind(id)
        .execute(pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn dl_delete(pool: &PgPool, ids: &[String]) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE ferry_dead_letters SET status = 'deleted' \
             WHERE id = ANY($1) AND status <> 'deleted'",
        )
        .bind(ids)
        .execute(pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn dl_counts(pool: &PgPool) -> Result<PgRow, sqlx::Error> {
        sqlx::query(
            "SELECT count(*) FILTER (WHERE status = 'dead') AS dead, \
                    count(*) FILTER (WHERE status = 'replayed') AS replayed, \
                    count(*) FILTER (WHERE status = 'deleted') AS deleted, \
                    count(DISTINCT group_key) FILTER (WHERE status = 'dead') AS groups \
             FROM ferry_dead_letters",
        )
        .fetch_one(pool)
        .await
    }

    async fn dl_groups(pool: &PgPool) -> Result<Vec<PgRow>, sqlx::Error> {
        sqlx::query(
            "SELECT group_key, min(fault_kind) AS fault_kind, min(queue) AS queue, \
                    min(event_type) AS event_type, min(fault_group) AS fault_group, \
                    count(*) AS n, min(failed_at) AS first_failed_at, \
                    max(failed_at) AS last_failed_at \
             FROM ferry_dead_letters WHERE status = 'dead' \
             GROUP BY group_key ORDER BY n DESC, last_failed_at DESC",
        )
        .fetch_all(pool)
        .await
    }

    async fn dl_queues(pool: &PgPool) -> Result<Vec<PgRow>, sqlx::Error> {
        sqlx::query(
            "SELECT DISTINCT queue FROM ferry_dead_letters WHERE queue IS NOT NULL ORDER BY queue",
        )
        .fetch_all(pool)
        .await
    }

    async fn rates(pool: &PgPool, since: DateTime<Utc>) -> Result<Vec<PgRow>, sqlx::Error> {
        sqlx::query(
            "SELECT 'published' AS source, \
                    floor(extract(epoch FROM published_at) / 60)::bigint AS minute, count(*) AS n \
             FROM ferry_outbox WHERE status = 'published' AND published_at >= $1 GROUP BY 2 \
             UNION ALL \
             SELECT 'dead_lettered', floor(extract(epoch FROM failed_at) / 60)::bigint, count(*) \
             FROM ferry_dead_letters WHERE failed_at >= $1 GROUP BY 2 \
             UNION ALL \
             SELECT 'handled', floor(extract(epoch FROM processed_at) / 60)::bigint, count(*) \
             FROM ferry_inbox WHERE processed_at >= $1 GROUP BY 2",
        )
        .bind(since)
        .fetch_all(pool)
        .await
    }

    async fn audit_insert(
        pool: &PgPool,
        role: &str,
        action: &str,
        target: &str,
        count: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO ferry_audit (at, role, action, target, count) \
             VALUES (now(), $1, $2, $3, $4)",
        )
        .bind(role)
        .bind(action)
        .bind(target)
        .bind(count)
        .execute(pool)
        .await?;
        Ok(())
    }

    async fn audit_list(pool: &PgPool, limit: i64) -> Result<Vec<PgRow>, sqlx::Error> {
        sqlx::query(
            "SELECT at, role, action, target, count FROM ferry_audit ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(pool)
        .await
    }
}
