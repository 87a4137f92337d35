//! `GET /api/overview`, `/api/rates` and `/api/audit`.

use std::{collections::BTreeSet, sync::Arc};

use axum::{
    Json,
    extract::{Query, State},
};
use ferry_core::OutboxStore;
use ferry_sql::dead_letters::DeadLetterDialect;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, limit};
use crate::AppState;

/// `GET /api/overview`.
pub(crate) async fn overview<D: DeadLetterDialect>(
    State(state): State<Arc<AppState<D>>>,
) -> Result<Json<Value>, ApiError> {
    let outbox = state.outbox.stats().await?;
    let dead = state.store.counts().await?;
    let mut names: BTreeSet<String> = state.queues.iter().cloned().collect();
    names.extend(state.store.queues().await?);
    let mut queues = Vec::with_capacity(names.len());
    for name in names {
        // A queue the broker does not have (or no broker) shows no depth rather than failing
        // the whole overview.
        let counts = match &state.bus {
            Some(bus) => bus.queue_counts(&name).await.ok(),
            None => None,
        };
        queues.push(json!({
            "name": name,
            "ready": counts.map(|(ready, _)| ready),
            "consumers": counts.map(|(_, consumers)| consumers),
        }));
    }
    Ok(Json(json!({
        "outbox": {
            "pending": outbox.pending,
            "dead": outbox.dead,
            "published": outbox.published,
            "oldest_pending_age_s": outbox.oldest_pending_age_s,
        },
        "dead_letters": {
            "dead": dead.dead,
            "replayed": dead.replayed,
            "deleted": dead.deleted,
            "groups": dead.groups,
        },
        "queues": queues,
    })))
}

#[derive(Deserialize)]
pub(crate) struct RatesQuery {
    minutes: Option<u32>,
}

/// `GET /api/rates?minutes=N` (default 30, at most 1,440): per minute, oldest first,
/// `{"minute","published","dead_lettered","handled"}` (handled: messages an inbox recorded).
pub(crate) async fn rates<D: DeadLetterDialect>(
    State(state): State<Arc<AppState<D>>>,
    Query(query): Query<RatesQuery>,
) -> Result<Json<Value>, ApiError> {
    let minutes = i64::from(query.minutes.unwrap_or(30).clamp(1, 1440));
    let now = chrono::Utc::now().timestamp() / 60;
    let first = now - minutes + 1;
    let since = chrono::DateTime::from_timestamp(first * 60, 0).unwrap_or_default();
    let points = state.store.rates(since).await?;
    let mut out = Vec::with_capacity(minutes as usize);
    for minute in first..=now {
        let count = |source: &str| -> u64 {
            points
                .iter()
                .filter(|p| p.source == source && p.minute.timestamp() / 60 == minute)
                .map(|p| p.count)
                .sum()
        };
        out.push(json!({
            "minute": chrono::DateTime::from_timestamp(minute * 60, 0).unwrap_or_default(),
            "published": count("published"),
            "dead_lettered": count("dead_lettered"),
            "handled": count("handled"),
        }));
    }
    Ok(Json(Value::Array(out)))
}

#[derive(Deserialize)]
pub(crate) struct AuditQuery {
    limit: Option<u32>,
}

/// `GET /api/audit?limit=N`.
pub(crate) async fn audit<D: DeadLetterDialect>(
    State(state): State<Arc<AppState<D>>>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let entries = state.audit.list(limit(query.limit, 100)?).await?;
    let rows = entries
        .into_iter()
        .map(|e| {
            json!({
                "at": e.at,
                "role": e.role,
                "action": e.action,
                "target": e.target,
                "count": e.count,
            })
        })
        .collect();
    Ok(Json(Value::Array(rows)))
}
