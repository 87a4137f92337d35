//! The dead-letter store's and the audit log's statements, written once: their arguments as
//! [`Arg`]s, their rows read through the [`Dialect`](crate::Dialect)'s column readers; the SQL
//! text is each database's own ([`DeadLetterStatements`](super::DeadLetterStatements)).

use chrono::{DateTime, Utc};

use super::{DeadLetterDialect, NewDeadLetterRow};
use crate::dialect::{Arg, Conn, Pool, Row};

/// Inserts a dead letter.
pub(crate) async fn insert<D: DeadLetterDialect>(
    conn: &mut Conn<D>,
    row: &NewDeadLetterRow<'_>,
) -> Result<(), sqlx::Error> {
    let args = [
        Arg::Text(row.id),
        Arg::OptText(row.message_id),
        Arg::OptText(row.event_type),
        Arg::OptText(row.queue),
        Arg::OptText(row.exchange),
        Arg::OptText(row.routing_key),
        Arg::Text(row.fault_kind),
        Arg::Text(row.fault_message),
        Arg::Int(row.attempts),
        Arg::Time(row.failed_at),
        Arg::Text(row.headers),
        Arg::Text(row.properties),
        Arg::Bytes(row.body),
        Arg::Text(row.group_key),
        Arg::Text(row.fault_group),
    ];
    D::execute(conn, D::DEAD_LETTER_SQL.insert, &args).await?;
    Ok(())
}

/// Rows (without headers, properties and body), newest first.
pub(crate) async fn list<D: DeadLetterDialect>(
    pool: &Pool<D>,
    status: Option<&str>,
    group: Option<&str>,
    limit: i64,
) -> Result<Vec<Row<D>>, sqlx::Error> {
    let args = [Arg::OptText(status), Arg::OptText(group), Arg::Int(limit)];
    D::fetch_all(&mut *pool.acquire().await?, D::DEAD_LETTER_SQL.list, &args).await
}

/// One row with every column.
pub(crate) async fn get<D: DeadLetterDialect>(
    pool: &Pool<D>,
    id: &str,
) -> Result<Option<Row<D>>, sqlx::Error> {
    let rows = D::fetch_all(
        &mut *pool.acquire().await?,
        D::DEAD_LETTER_SQL.get,
        &[Arg::Text(id)],
    )
    .await?;
    Ok(rows.into_iter().next())
}

/// Marks a `dead` row replayed; whether it was `dead`.
pub(crate) async fn mark_replayed<D: DeadLetterDialect>(
    pool: &Pool<D>,
    id: &str,
) -> Result<bool, sqlx::Error> {
    let sql = D::DEAD_LETTER_SQL.mark_replayed;
    Ok(D::execute(&mut *pool.acquire().await?, sql, &[Arg::Text(id)]).await? == 1)
}

/// Marks rows that are not yet deleted as deleted; how many.
pub(crate) async fn delete<D: DeadLetterDialect>(
    pool: &Pool<D>,
    ids: &[String],
) -> Result<u64, sqlx::Error> {
    let sql = D::DEAD_LETTER_SQL.delete;
    D::execute(&mut *pool.acquire().await?, sql, &[Arg::Ids(ids)]).await
}

/// Runs a statement without arguments; its rows.
async fn rows<D: DeadLetterDialect>(
    pool: &Pool<D>,
    sql: &'static str,
) -> Result<Vec<Row<D>>, sqlx::Error> {
    D::fetch_all(&mut *pool.acquire().await?, sql, &[]).await
}

/// The counts by status and of groups, as one row.
pub(crate) async fn counts<D: DeadLetterDialect>(pool: &Pool<D>) -> Result<Row<D>, sqlx::Error> {
    rows::<D>(pool, D::DEAD_LETTER_SQL.counts)
        .await?
        .into_iter()
        .next()
        .ok_or(sqlx::Error::RowNotFound)
}

/// The groups of `dead` rows, largest first.
pub(crate) async fn groups<D: DeadLetterDialect>(
    pool: &Pool<D>,
) -> Result<Vec<Row<D>>, sqlx::Error> {
    rows::<D>(pool, D::DEAD_LETTER_SQL.groups).await
}

/// The distinct queues dead letters failed on.
pub(crate) async fn queues<D: DeadLetterDialect>(
    pool: &Pool<D>,
) -> Result<Vec<Row<D>>, sqlx::Error> {
    rows::<D>(pool, D::DEAD_LETTER_SQL.queues).await
}

/// Per-minute counts since `since`.
pub(crate) async fn rates<D: DeadLetterDialect>(
    pool: &Pool<D>,
    since: DateTime<Utc>,
) -> Result<Vec<Row<D>>, sqlx::Error> {
    let sql = D::DEAD_LETTER_SQL.rates;
    D::fetch_all(&mut *pool.acquire().await?, sql, &[Arg::Time(since)]).await
}

/// Appends an audit row.
pub(crate) async fn audit_insert<D: DeadLetterDialect>(
    pool: &Pool<D>,
    role: &str,
    action: &str,
    target: &str,
    count: i64,
) -> Result<(), sqlx::Error> {
    let args = [
        Arg::Text(role),
        Arg::Text(action),
        Arg::Text(target),
        Arg::Int(count),
    ];
    let sql = D::DEAD_LETTER_SQL.audit_insert;
    D::execute(&mut *pool.acquire().await?, sql, &args).await?;
    Ok(())
}

/// The newest audit rows.
pub(crate) async fn audit_list<D: DeadLetterDialect>(
    pool: &Pool<D>,
    limit: i64,
) -> Result<Vec<Row<D>>, sqlx::Error> {
    let sql = D::DEAD_LETTER_SQL.audit_list;
    D::fetch_all(&mut *pool.acquire().await?, sql, &[Arg::Int(limit)]).await
}
