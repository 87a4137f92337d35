//! Reading the outbox's rows back, written once: a dialect only says how to read a column of
//! each kind (`docs/tables.md` gives the columns).

use ferry_core::{ClaimedOutboxRow, OutboxError, OutboxRow};

use crate::{
    db_error,
    dialect::{Dialect, Row},
};

fn required<T>(value: Option<T>, column: &str) -> Result<T, OutboxError> {
    value.ok_or_else(|| OutboxError::database(format!("outbox column `{column}` is NULL")))
}

fn count(n: Option<i64>) -> u32 {
    n.and_then(|n| u32::try_from(n).ok()).unwrap_or(0)
}

/// A claimed row (`seq`, `id`, `exchange`, `routing_key`, `properties`, `headers`, `body`,
/// `attempts`, `partition_key`, `created_at`): its `seq` and the message to publish.
pub(crate) fn claimed<D: Dialect>(row: &Row<D>) -> Result<(i64, ClaimedOutboxRow), OutboxError> {
    let seq = required(D::int(row, "seq").map_err(db_error)?, "seq")?;
    let id = required(D::text(row, "id").map_err(db_error)?, "id")?;
    let message = ferry_core::outbox::decode_message(
        &id,
        D::text(row, "exchange").map_err(db_error)?,
        required(
            D::text(row, "routing_key").map_err(db_error)?,
            "routing_key",
        )?,
        D::json(row, "properties").map_err(db_error)?,
        D::json(row, "headers").map_err(db_error)?,
        D::bytes(row, "body").map_err(db_error)?,
    )?;
    let created_at = D::time(row, "created_at").map_err(db_error)?;
    Ok((
        seq,
        ClaimedOutboxRow {
            id,
            message,
            attempts: count(D::int(row, "attempts").map_err(db_error)?),
            partition_key: D::text(row, "partition_key").map_err(db_error)?,
            created_at: created_at.unwrap_or_default(),
        },
    ))
}

/// A listed row, as `ferry outbox` shows it.
pub(crate) fn listed<D: Dialect>(row: &Row<D>) -> Result<OutboxRow, OutboxError> {
    let status = required(D::text(row, "status").map_err(db_error)?, "status")?;
    let time = |column: &str| D::time(row, column).map_err(db_error);
    let text = |column: &str| D::text(row, column).map_err(db_error);
    Ok(OutboxRow {
        id: required(text("id")?, "id")?,
        seq: required(D::int(row, "seq").map_err(db_error)?, "seq")?,
        status: status.parse()?,
        attempts: count(D::int(row, "attempts").map_err(db_error)?),
        last_error: text("last_error")?,
        event_type: text("event_type")?.unwrap_or_default(),
        exchange: text("exchange")?,
        routing_key: required(text("routing_key")?, "routing_key")?,
        partition_key: text("partition_key")?,
        created_at: time("created_at")?.unwrap_or_default(),
        next_attempt_at: time("next_attempt_at")?.unwrap_or_default(),
        published_at: time("published_at")?,
        locked_until: time("locked_until")?,
        body_bytes: D::int(row, "body_bytes").map_err(db_error)?.unwrap_or(0),
    })
}
