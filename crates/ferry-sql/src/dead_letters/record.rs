//! What the dead-letter store returns, and how its rows are read.

use chrono::{DateTime, Utc};
use ferry_core::wire::{Headers, Properties, WireMessage};
use serde::Serialize;

use super::{DeadLetterDialect, DeadLetterStoreError};
use crate::dialect::Row;

/// Where a stored dead letter stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterStatus {
    /// Recorded, not acted on.
    Dead,
    /// Sent back to its queue.
    Replayed,
    /// Deleted by an operator (the row stays).
    Deleted,
}

impl DeadLetterStatus {
    /// The status as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterStatus::Dead => "dead",
            DeadLetterStatus::Replayed => "replayed",
            DeadLetterStatus::Deleted => "deleted",
        }
    }

    /// Parses a stored status.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Dead, Self::Replayed, Self::Deleted]
            .into_iter()
            .find(|status| status.as_str() == s)
    }
}

/// A stored dead letter, without what it carried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetterRecord {
    /// The store's own key.
    pub id: String,
    /// The message id, where it has one.
    pub message_id: Option<String>,
    /// The event type, where it could be read.
    pub event_type: Option<String>,
    /// The queue it failed on.
    pub queue: Option<String>,
    /// The exchange it was first published to.
    pub exchange: Option<String>,
    /// The routing key it was first published with.
    pub routing_key: Option<String>,
    /// The fault kind (`handler`, `decode`, …).
    pub fault_kind: String,
    /// The fault message.
    pub fault_message: String,
    /// Delivery attempts made.
    pub attempts: u32,
    /// When it was dead-lettered.
    pub failed_at: DateTime<Utc>,
    /// Where it stands.
    pub status: DeadLetterStatus,
    /// When it was replayed.
    pub replayed_at: Option<DateTime<Utc>>,
    /// Its group's key.
    pub group: String,
}

/// A stored dead letter with what it carried, as received.
#[derive(Debug, Clone)]
pub struct StoredDeadLetter {
    /// The row.
    pub record: DeadLetterRecord,
    /// The properties, headers (fault headers included) and body, as received.
    pub message: WireMessage,
}

/// A group of `dead` rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetterGroup {
    /// The group's opaque key.
    pub group: String,
    /// The fault kind.
    pub fault_kind: String,
    /// The queue.
    pub queue: Option<String>,
    /// The event type.
    pub event_type: Option<String>,
    /// The fault message with ids and numbers taken out.
    pub fault_message: String,
    /// How many `dead` rows.
    pub count: u64,
    /// The first failure.
    pub first_failed_at: DateTime<Utc>,
    /// The last failure.
    pub last_failed_at: DateTime<Utc>,
}

/// Rows by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DeadLetterCounts {
    /// `dead` rows.
    pub dead: u64,
    /// `replayed` rows.
    pub replayed: u64,
    /// `deleted` rows.
    pub deleted: u64,
    /// Groups of `dead` rows.
    pub groups: u64,
}

/// How many of something happened in one minute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RatePoint {
    /// `published`, `dead_lettered` or `handled`.
    pub source: String,
    /// The minute's start.
    pub minute: DateTime<Utc>,
    /// How many.
    pub count: u64,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayOutcome {
    /// Rows replayed (and marked so).
    pub replayed: Vec<String>,
    /// Rows not found, or not `dead`.
    pub not_found: Vec<String>,
    /// Rows whose replay failed, with why; unchanged.
    pub failed: Vec<(String, String)>,
}

fn missing(id: &str, column: &str) -> DeadLetterStoreError {
    DeadLetterStoreError::Corrupt {
        id: id.to_owned(),
        reason: format!("column `{column}` is empty"),
    }
}

fn count<D: DeadLetterDialect>(row: &Row<D>, column: &str) -> Result<u64, DeadLetterStoreError> {
    Ok(D::int(row, column)?
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0))
}

pub(super) fn read_record<D: DeadLetterDialect>(
    row: &Row<D>,
) -> Result<DeadLetterRecord, DeadLetterStoreError> {
    let id = D::text(row, "id")?.unwrap_or_default();
    let status = D::text(row, "status")?.unwrap_or_default();
    Ok(DeadLetterRecord {
        message_id: D::text(row, "message_id")?,
        event_type: D::text(row, "event_type")?,
        queue: D::text(row, "queue")?,
        exchange: D::text(row, "exchange")?,
        routing_key: D::text(row, "routing_key")?,
        fault_kind: D::text(row, "fault_kind")?.unwrap_or_default(),
        fault_message: D::text(row, "fault_message")?.unwrap_or_default(),
        attempts: D::int(row, "attempts")?
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
        failed_at: D::time(row, "failed_at")?.ok_or_else(|| missing(&id, "failed_at"))?,
        status: DeadLetterStatus::parse(&status).ok_or_else(|| DeadLetterStoreError::Corrupt {
            id: id.clone(),
            reason: format!("unknown status `{status}`"),
        })?,
        replayed_at: D::time(row, "replayed_at")?,
        group: D::text(row, "group_key")?.unwrap_or_default(),
        id,
    })
}

pub(super) fn read_stored<D: DeadLetterDialect>(
    row: &Row<D>,
) -> Result<StoredDeadLetter, DeadLetterStoreError> {
    let record = read_record::<D>(row)?;
    let corrupt = |what: &str, e: serde_json::Error| DeadLetterStoreError::Corrupt {
        id: record.id.clone(),
        reason: format!("its {what} are not the JSON the store writes: {e}"),
    };
    let headers: Headers = serde_json::from_str(&D::text(row, "headers")?.unwrap_or_default())
        .map_err(|e| corrupt("headers", e))?;
    let properties: Properties =
        serde_json::from_str(&D::text(row, "properties")?.unwrap_or_default())
            .map_err(|e| corrupt("properties", e))?;
    let body = D::bytes(row, "body")?;
    Ok(StoredDeadLetter {
        message: WireMessage {
            properties,
            headers,
            body: body.into(),
        },
        record,
    })
}

pub(super) fn read_group<D: DeadLetterDialect>(
    row: &Row<D>,
) -> Result<DeadLetterGroup, DeadLetterStoreError> {
    let group = D::text(row, "group_key")?.unwrap_or_default();
    Ok(DeadLetterGroup {
        fault_kind: D::text(row, "fault_kind")?.unwrap_or_default(),
        queue: D::text(row, "queue")?,
        event_type: D::text(row, "event_type")?,
        fault_message: D::text(row, "fault_group")?.unwrap_or_default(),
        count: count::<D>(row, "n")?,
        first_failed_at: D::time(row, "first_failed_at")?
            .ok_or_else(|| missing(&group, "failed_at"))?,
        last_failed_at: D::time(row, "last_failed_at")?
            .ok_or_else(|| missing(&group, "failed_at"))?,
        group,
    })
}

pub(super) fn read_counts<D: DeadLetterDialect>(
    row: &Row<D>,
) -> Result<DeadLetterCounts, DeadLetterStoreError> {
    Ok(DeadLetterCounts {
        dead: count::<D>(row, "dead")?,
        replayed: count::<D>(row, "replayed")?,
        deleted: count::<D>(row, "deleted")?,
        groups: count::<D>(row, "groups")?,
    })
}

pub(super) fn read_rate<D: DeadLetterDialect>(
    row: &Row<D>,
) -> Result<RatePoint, DeadLetterStoreError> {
    let minute = D::int(row, "minute")?.unwrap_or(0);
    Ok(RatePoint {
        source: D::text(row, "source")?.unwrap_or_default(),
        minute: DateTime::from_timestamp(minute.saturating_mul(60), 0).unwrap_or_default(),
        count: count::<D>(row, "n")?,
    })
}
