//! The outbox endpoints: rows by status, stuck rows, retry (audited).

use std::sync::Arc;

use axum::{
    Extension, Json,
    extract::{Query, State, rejection::JsonRejection},
};
use chrono::Utc;
use ferry_core::{OutboxRow, OutboxStatus, outbox::RetryOutcome};
use ferry_sql::dead_letters::DeadLetterDialect;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, Selection, bad_json, dead_letters::role, limit};
use crate::{AppState, auth::Access};

/// A pending row is stuck when its lease ran out this long ago and no relay took it again.
const LEASE_LONG_EXPIRED: chrono::Duration = chrono::Duration::minutes(5);
/// A pending row is stuck after this many failed publishes.
const REPEATED_FAILURES: u32 = 3;

fn parse_status(s: &str) -> Option<OutboxStatus> {
    [
        OutboxStatus::Pending,
        OutboxStatus::Published,
        OutboxStatus::Dead,
    ]
    .into_iter()
    .find(|status| status.as_str() == s)
}

fn row(r: &OutboxRow) -> Value {
    json!({
        "id": r.id,
        "event_type": r.event_type,
        "routing_key": r.routing_key,
        "status": r.status.as_str(),
        "attempts": r.attempts,
        "last_error": r.last_error,
        "created_at": r.created_at,
        "published_at": r.published_at,
    })
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    status: Option<String>,
    limit: Option<u32>,
}

/// `GET /api/outbox?status=S&limit=N` (newest first; default every status, 100 rows).
pub(crate) async fn list<D: DeadLetterDialect>(
    State(state): State<Arc<AppState<D>>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(parse_status(s).ok_or_else(|| {
            ApiError::BadRequest(format!("unknown status `{s}`: pending, published or dead"))
        })?),
    };
    let rows = state.outbox.list(status, limit(query.limit, 100)?).await?;
    Ok(Json(Value::Array(rows.iter().map(row).collect())))
}

/// `GET /api/outbox/stuck`: pending rows whose lease ran out long ago, or that failed
/// repeatedly, with their last error and why they count as stuck.
pub(crate) async fn stuck<D: DeadLetterDialect>(
    State(state): State<Arc<AppState<D>>>,
) -> Result<Json<Value>, ApiError> {
    let now = Utc::now();
    let rows = state
        .outbox
        .list(Some(OutboxStatus::Pending), super::MAX_LIMIT)
        .await?;
    let stuck = rows
        .iter()
        .filter_map(|r| {
            let reason = if r
                .locked_until
                .is_some_and(|until| until + LEASE_LONG_EXPIRED < now)
            {
                "lease expired long ago"
            } else if r.attempts >= REPEATED_FAILURES {
                "repeated failures"
            } else {
                return None;
            };
            let mut value = row(r);
            if let Value::Object(map) = &mut value {
                map.insert("reason".into(), json!(reason));
                map.insert("next_attempt_at".into(), json!(r.next_attempt_at));
            }
            Some(value)
        })
        .collect();
    Ok(Json(Value::Array(stuck)))
}

/// `POST /api/outbox/retry` with `{"ids":[…]}` or `{"all_dead":true}` → `{"retried":n}`.
pub(crate) async fn retry<D: DeadLetterDialect>(
    State(state): State<Arc<AppState<D>>>,
    Extension(access): Extension<Access>,
    body: Result<Json<Selection>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(selection) = body.map_err(bad_json)?;
    let (n, target) = match selection {
        Selection {
            ids: Some(ids),
            group: None,
            all_dead: None,
        } if !ids.is_empty() => {
            let mut n = 0;
            for id in &ids {
                match state.outbox.retry(id).await {
                    Ok(RetryOutcome::Retried) => n += 1,
                    Ok(_) | Err(ferry_core::OutboxError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            (n, ids.join(","))
        }
        Selection {
            ids: None,
            group: None,
            all_dead: Some(true),
        } => (
            state.outbox.retry_all_dead().await?.len(),
            "all_dead".to_owned(),
        ),
        _ => {
            return Err(ApiError::BadRequest(
                "send {\"ids\":[…]} or {\"all_dead\":true}".into(),
            ));
        }
    };
    state
        .audit
        .record(role(&access), "retry", &target, n as i64)
        .await?;
    Ok(Json(json!({ "retried": n })))
}
