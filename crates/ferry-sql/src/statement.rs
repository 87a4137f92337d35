//! The store's statements, written once: each binds its arguments as [`Arg`]s and reads its
//! rows through the [`Dialect`]'s column readers; only the SQL text ([`Statements`]) is the
//! database's own. What differs beyond the text (marking failures, counting, the grouped
//! inbox calls) stays in the dialects.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_core::NewOutboxRow;

use crate::dialect::{Conn, Dialect, Migration, Pool, Row};

/// A statement's argument, bound as each database stores it.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    /// Text.
    Text(&'a str),
    /// Text or `NULL`.
    OptText(Option<&'a str>),
    /// An integer.
    Int(i64),
    /// Bytes, exactly as given.
    Bytes(&'a [u8]),
    /// A JSON document (`jsonb` on PostgreSQL, text on SQLite).
    Json(&'a serde_json::Value),
    /// A list of ids (an array on PostgreSQL, a JSON array on SQLite).
    Ids(&'a [String]),
    /// A span of time in milliseconds, or `NULL`.
    Millis(Option<Duration>),
    /// A moment (`timestamptz` on PostgreSQL, milliseconds since the Unix epoch on SQLite).
    Time(DateTime<Utc>),
}

/// The SQL text of the statements the store runs the same way on every database. Arguments
/// are numbered (`$1` or `?1`) in the order each field's comment gives.
#[derive(Debug)]
pub struct Statements {
    /// Inserts an outbox row: id, event type, exchange, routing key, properties, headers, body,
    /// partition key, lease, relay (the last two `NULL` unless it is handed to a relay).
    pub insert: &'static str,
    /// Claims due rows: limit, lease, relay; returns the columns `outbox::rows::claimed` reads.
    pub claim: &'static str,
    /// Marks rows published: ids.
    pub mark_published: &'static str,
    /// Deletes rows as they are published, for an outbox that keeps no history (retention
    /// zero): ids.
    pub delete_sent: &'static str,
    /// Gives back rows a relay holds: ids, relay.
    pub release: &'static str,
    /// Rows newest first: status (or `NULL` for all), limit; the columns
    /// `outbox::rows::listed` reads.
    pub list: &'static str,
    /// One row: id; the columns `outbox::rows::listed` reads.
    pub row: &'static str,
    /// Brings a dead or pending row back to pending, due now: id; returns `id` if it did.
    pub retry: &'static str,
    /// Brings every dead row back; returns `seq` and `id` of each.
    pub retry_all_dead: &'static str,
    /// Deletes rows published longer ago than: age, at most: batch.
    pub delete_published: &'static str,
    /// Inserts an inbox row, doing nothing when it is there: consumer, message id.
    pub insert_inbox: &'static str,
    /// Returns a row if the inbox holds: consumer, message id.
    pub inbox_contains: &'static str,
    /// Deletes inbox rows processed longer ago than: age, at most: batch.
    pub delete_inbox: &'static str,
    /// The versions of ferry's migrations applied, as `version`.
    pub applied_versions: &'static str,
    /// Records a migration: version, description.
    pub record_migration: &'static str,
}

/// Inserts an outbox row; `leased` to a relay (the lease, the relay's id) when it is handed
/// over.
pub(crate) async fn insert<D: Dialect>(
    conn: &mut Conn<D>,
    row: &NewOutboxRow,
    leased: Option<(Duration, &str)>,
) -> Result<(), sqlx::Error> {
    let args = [
        Arg::Text(&row.id),
        Arg::Text(&row.event_type),
        Arg::OptText(row.exchange.as_deref()),
        Arg::Text(&row.routing_key),
        Arg::Json(&row.properties),
        Arg::Json(&row.headers),
        Arg::Bytes(&row.body),
        Arg::OptText(row.partition_key.as_deref()),
        Arg::Millis(leased.map(|(lease, _)| lease)),
        Arg::OptText(leased.map(|(_, relay)| relay)),
    ];
    D::execute(conn, D::SQL.insert, &args).await?;
    Ok(())
}

/// Claims up to `limit` due rows for `relay`, leased for `lease`.
pub(crate) async fn claim<D: Dialect>(
    pool: &Pool<D>,
    limit: i64,
    lease: Duration,
    relay: &str,
) -> Result<Vec<Row<D>>, sqlx::Error> {
    let args = [Arg::Int(limit), Arg::Millis(Some(lease)), Arg::Text(relay)];
    D::fetch_all(&mut *pool.acquire().await?, D::SQL.claim, &args).await
}

/// Marks rows published with `sql` ([`Statements::mark_published`] or
/// [`Statements::delete_sent`]).
pub(crate) async fn mark_published<D: Dialect>(
    pool: &Pool<D>,
    sql: &'static str,
    ids: &[String],
) -> Result<(), sqlx::Error> {
    let args = [Arg::Ids(ids)];
    D::execute(&mut *pool.acquire().await?, sql, &args).await?;
    Ok(())
}

/// Gives back rows `relay` holds, without counting an attempt.
pub(crate) async fn release<D: Dialect>(
    pool: &Pool<D>,
    ids: &[String],
    relay: &str,
) -> Result<(), sqlx::Error> {
    let args = [Arg::Ids(ids), Arg::Text(relay)];
    D::execute(&mut *pool.acquire().await?, D::SQL.release, &args).await?;
    Ok(())
}

/// Rows with `status` (all without), newest first.
pub(crate) async fn list<D: Dialect>(
    pool: &Pool<D>,
    status: Option<&str>,
    limit: i64,
) -> Result<Vec<Row<D>>, sqlx::Error> {
    let args = [Arg::OptText(status), Arg::Int(limit)];
    D::fetch_all(&mut *pool.acquire().await?, D::SQL.list, &args).await
}

/// One row.
pub(crate) async fn row<D: Dialect>(
    pool: &Pool<D>,
    id: &str,
) -> Result<Option<Row<D>>, sqlx::Error> {
    let rows = D::fetch_all(&mut *pool.acquire().await?, D::SQL.row, &[Arg::Text(id)]).await?;
    Ok(rows.into_iter().next())
}

/// Brings a dead or pending row back to pending, due now; whether one was.
pub(crate) async fn retry<D: Dialect>(pool: &Pool<D>, id: &str) -> Result<bool, sqlx::Error> {
    let rows = D::fetch_all(&mut *pool.acquire().await?, D::SQL.retry, &[Arg::Text(id)]).await?;
    Ok(!rows.is_empty())
}

/// Brings every dead row back; their ids in the order they were added.
pub(crate) async fn retry_all_dead<D: Dialect>(pool: &Pool<D>) -> Result<Vec<String>, sqlx::Error> {
    let rows = D::fetch_all(&mut *pool.acquire().await?, D::SQL.retry_all_dead, &[]).await?;
    let mut retried = rows
        .iter()
        .map(|row| Ok((D::int(row, "seq")?, D::text(row, "id")?.unwrap_or_default())))
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    // RETURNING has no order.
    retried.sort_unstable();
    Ok(retried.into_iter().map(|(_, id)| id).collect())
}

/// Deletes at most `batch` rows published more than `age` ago; how many.
pub(crate) async fn delete_published<D: Dialect>(
    pool: &Pool<D>,
    age: Duration,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let args = [Arg::Millis(Some(age)), Arg::Int(batch)];
    D::execute(&mut *pool.acquire().await?, D::SQL.delete_published, &args).await
}

/// Inserts the inbox row; `false` when it is already there.
pub(crate) async fn insert_inbox<D: Dialect>(
    conn: &mut Conn<D>,
    consumer: &str,
    message_id: &str,
) -> Result<bool, sqlx::Error> {
    let args = [Arg::Text(consumer), Arg::Text(message_id)];
    Ok(D::execute(conn, D::SQL.insert_inbox, &args).await? == 1)
}

/// Whether the inbox row is there.
pub(crate) async fn inbox_contains<D: Dialect>(
    pool: &Pool<D>,
    consumer: &str,
    message_id: &str,
) -> Result<bool, sqlx::Error> {
    let args = [Arg::Text(consumer), Arg::Text(message_id)];
    let rows = D::fetch_all(&mut *pool.acquire().await?, D::SQL.inbox_contains, &args).await?;
    Ok(!rows.is_empty())
}

/// Deletes at most `batch` inbox rows processed more than `age` ago; how many.
pub(crate) async fn delete_inbox<D: Dialect>(
    pool: &Pool<D>,
    age: Duration,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let args = [Arg::Millis(Some(age)), Arg::Int(batch)];
    D::execute(&mut *pool.acquire().await?, D::SQL.delete_inbox, &args).await
}

/// The versions of ferry's migrations applied.
pub(crate) async fn applied_versions<D: Dialect>(
    conn: &mut Conn<D>,
) -> Result<Vec<i64>, sqlx::Error> {
    let rows = D::fetch_all(conn, D::SQL.applied_versions, &[]).await?;
    rows.iter()
        .filter_map(|row| D::int(row, "version").transpose())
        .collect()
}

/// Records a migration as applied.
pub(crate) async fn record_migration<D: Dialect>(
    conn: &mut Conn<D>,
    migration: &Migration,
) -> Result<(), sqlx::Error> {
    let args = [
        Arg::Int(migration.version),
        Arg::Text(migration.description),
    ];
    D::execute(conn, D::SQL.record_migration, &args).await?;
    Ok(())
}
