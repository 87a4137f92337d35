//! The dead-letter endpoints: groups, lists, one message, replay and delete (audited).

use std::sync::Arc;

use axum::{
    Extension, Json,
    extract::{Path, Query, State, rejection::JsonRejection},
};
use base64::Engine;
use ferry_core::wire::HeaderValue;
use ferry_sql::dead_letters::{DeadLetterDialect, DeadLetterRecord, DeadLetterStatus};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{ApiError, Selection, bad_json, limit};
use crate::{AppState, auth::Access};

fn row(r: &DeadLetterRecord) -> Map<String, Value> {
    let value = json!({
        "id": r.id,
        "message_id": r.message_id,
        "event_type": r.event_type,
        "queue": r.queue,
        "routing_key": r.routing_key,
        "fault_kind": r.fault_kind,
        "fault_message": r.fault_message,
        "attempts": r.attempts,
        "failed_at": r.failed_at,
        "status": r.status.as_str(),
    });
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// A header value as plain JSON: strings, numbers, booleans, arrays, objects; bytes as base64.
fn plain(value: &HeaderValue) -> Value {
    match value {
        HeaderValue::String(s) => json!(s),
        HeaderValue::Bytes(b) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        HeaderValue::Bool(b) => json!(b),
        HeaderValue::Int(i) => json!(i),
        HeaderValue::Float(f) => json!(f),
        HeaderValue::Timestamp(t) => json!(t),
        HeaderValue::Array(items) => Value::Array(items.iter().map(plain).collect()),
        HeaderValue::Table(table) => {
            Value::Object(table.iter().map(|(k, v)| (k.clone(), plain(v))).collect())
        }
        HeaderValue::Void => Value::Null,
    }
}

/// `GET /api/dead-letters/groups`.
pub(crate) async fn groups<D: DeadLetterDialect>(
    State(state): State<Arc<AppState<D>>>,
) -> Result<Json<Value>, ApiError> {
    let groups = state.store.groups().await?;
    let rows = groups
        .into_iter()
        .map(|g| {
            json!({
                "group": g.group,
                "fault_kind": g.fault_kind,
                "queue": g.queue,
                "event_type": g.event_type,
                "fault_message": g.fault_message,
                "count": g.count,
                "first_failed_at": g.first_failed_at,
                "last_failed_at": g.last_failed_at,
            })
        })
        .collect();
    Ok(Json(Value::Array(rows)))
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    group: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
}

/// `GET /api/dead-letters?group=G&status=S&limit=N` (default: every status, 100 rows).
pub(crate) async fn list<D: DeadLetterDialect>(
    State(state): State<Arc<AppState<D>>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(DeadLetterStatus::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!("unknown status `{s}`: dead, replayed or deleted"))
        })?),
    };
    let rows = state
        .store
        .list(
            status,
            query.group.as_deref().filter(|g| !g.is_empty()),
            limit(query.limit, 100)?,
        )
        .await?;
    Ok(Json(Value::Array(
        rows.iter().map(|r| Value::Object(row(r))).collect(),
    )))
}

/// `GET /api/dead-letters/{id}`: the row, its headers and its body (a string; base64 with
/// `"body_encoding":"base64"` when it is not UTF-8).
pub(crate) async fn show<D: DeadLetterDialect>(
    State(state): State<Arc<AppState<D>>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let stored = state
        .store
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no dead letter `{id}`")))?;
    let mut out = row(&stored.record);
    let headers = stored
        .message
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), plain(v)))
        .collect();
    out.insert("headers".into(), Value::Object(headers));
    match std::str::from_utf8(&stored.message.body) {
        Ok(text) => {
            out.insert("body".into(), json!(text));
        }
        Err(_) => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(&stored.message.body);
            out.insert("body".into(), json!(encoded));
            out.insert("body_encoding".into(), json!("base64"));
        }
    }
    Ok(Json(Value::Object(out)))
}

/// The ids a selection names, and how the audit names its target.
async fn selected<D: DeadLetterDialect>(
    state: &AppState<D>,
    selection: Selection,
) -> Result<(Vec<String>, String), ApiError> {
    match selection {
        Selection {
            ids: Some(ids),
            group: None,
            all_dead: None,
        } => {
            if ids.is_empty() {
                return Err(ApiError::BadRequest("`ids` is empty".into()));
            }
            let target = ids.join(",");
            Ok((ids, target))
        }
        Selection {
            ids: None,
            group: Some(group),
            all_dead: None,
        } => {
            let ids = state.store.ids_in_group(&group).await?;
            Ok((ids, format!("group:{group}")))
        }
        _ => Err(ApiError::BadRequest(
            "send {\"ids\":[…]} or {\"group\":\"…\"}".into(),
        )),
    }
}

/// `POST /api/dead-letters/replay` with `{"ids":[…]}` or `{"group":G}` → `{"replayed":n}`.
pub(crate) async fn replay<D: DeadLetterDialect>(
    State(state): State<Arc<AppState<D>>>,
    Extension(access): Extension<Access>,
    body: Result<Json<Selection>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(selection) = body.map_err(bad_json)?;
    let bus = state.bus.as_ref().ok_or(ApiError::NoBroker)?;
    let (ids, target) = selected(&state, selection).await?;
    let outcome = state
        .store
        .replay(
            &ids,
            |dead| async move { bus.replay_dead_letter(&dead).await },
        )
        .await?;
    let n = outcome.replayed.len();
    state
        .audit
        .record(role(&access), "replay", &target, n as i64)
        .await?;
    Ok(Json(json!({ "replayed": n })))
}

/// `POST /api/dead-letters/delete` with `{"ids":[…]}` or `{"group":G}` → `{"deleted":n}`.
pub(crate) async fn delete<D: DeadLetterDialect>(
    State(state): State<Arc<AppState<D>>>,
    Extension(access): Extension<Access>,
    body: Result<Json<Selection>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(selection) = body.map_err(bad_json)?;
    let (ids, target) = selected(&state, selection).await?;
    let n = state.store.delete(&ids).await?;
    state
        .audit
        .record(role(&access), "delete", &target, n as i64)
        .await?;
    Ok(Json(json!({ "deleted": n })))
}

/// The role an action is audited under: only operators act.
pub(crate) fn role(access: &Access) -> &'static str {
    match access.role {
        crate::auth::Role::Operator => "operator",
        crate::auth::Role::Read => "read",
    }
}
