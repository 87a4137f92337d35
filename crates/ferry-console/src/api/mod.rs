//! The JSON API (`docs/command.md`, § console): every answer `application/json`, times RFC 3339.

mod dead_letters;
mod outbox;
mod overview;

use std::sync::Arc;

use axum::{
    Json, Router,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use ferry_sql::dead_letters::DeadLetterDialect;
use serde_json::json;

use crate::AppState;

/// The API's routes.
pub(crate) fn routes<D: DeadLetterDialect>() -> Router<Arc<AppState<D>>> {
    Router::new()
        .route("/api/overview", get(overview::overview::<D>))
        .route("/api/rates", get(overview::rates::<D>))
        .route("/api/audit", get(overview::audit::<D>))
        .route("/api/dead-letters", get(dead_letters::list::<D>))
        .route("/api/dead-letters/groups", get(dead_letters::groups::<D>))
        .route("/api/dead-letters/replay", post(dead_letters::replay::<D>))
        .route("/api/dead-letters/delete", post(dead_letters::delete::<D>))
        .route("/api/dead-letters/{id}", get(dead_letters::show::<D>))
        .route("/api/outbox", get(outbox::list::<D>))
        .route("/api/outbox/stuck", get(outbox::stuck::<D>))
        .route("/api/outbox/retry", post(outbox::retry::<D>))
}

/// Why a request failed, as the API says it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// The request is wrong (400).
    #[error("{0}")]
    BadRequest(String),
    /// The body was refused before it was read (400, 413, 415: axum's rejection).
    #[error("{1}")]
    Rejected(StatusCode, String),
    /// Nothing with that id (404).
    #[error("{0}")]
    NotFound(String),
    /// The console has no broker (503).
    #[error("the console is not connected to RabbitMQ")]
    NoBroker,
    /// The dead-letter store failed (500).
    #[error(transparent)]
    Store(#[from] ferry_sql::dead_letters::DeadLetterStoreError),
    /// The outbox failed (500).
    #[error(transparent)]
    Outbox(#[from] ferry_core::OutboxError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Rejected(status, _) => *status,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::NoBroker => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(_) | ApiError::Outbox(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            // The details (and their sources) go to the log, not to the client.
            tracing::error!(error = %self, source = ?std::error::Error::source(&self), "console request failed");
            "the console's database failed; see its log".to_owned()
        } else {
            self.to_string()
        };
        (status, Json(json!({ "error": message }))).into_response()
    }
}

/// The most rows a list returns.
pub(crate) const MAX_LIMIT: u32 = 10_000;

/// `limit`, bounded; `default` when absent.
pub(crate) fn limit(given: Option<u32>, default: u32) -> Result<u32, ApiError> {
    match given {
        None => Ok(default),
        Some(0) => Err(ApiError::BadRequest("limit must be at least 1".into())),
        Some(n) => Ok(n.min(MAX_LIMIT)),
    }
}

/// `GET /healthz`: 200 without credentials.
pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Anything else: 404.
pub(crate) async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": "no such page" })),
    )
        .into_response()
}

/// The body of an action: some ids, a group, or (the outbox) every dead row.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Selection {
    #[serde(default)]
    pub(crate) ids: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) group: Option<String>,
    #[serde(default)]
    pub(crate) all_dead: Option<bool>,
}

/// A JSON body refused (malformed 400, too large 413, not JSON 415), in the API's shape.
pub(crate) fn bad_json(e: axum::extract::rejection::JsonRejection) -> ApiError {
    // A body of the wrong shape is bad input like any other: 400, not axum's 422.
    let status = match e.status() {
        StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
        other => other,
    };
    ApiError::Rejected(status, e.body_text())
}
