//! Liveness, readiness and Prometheus metrics.

use crate::app::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The process is up.
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The store answers and the projector runs.
pub async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state
        .views
        .checkpoint(projections::tasks::VIEW)
        .await
        .map_err(|e| ApiError::Unavailable(format!("the read-model store does not answer: {e}")))?;
    if !state.freshness.is_running() {
        return Err(ApiError::Unavailable("the projector is not running".into()));
    }
    Ok(Json(json!({ "status": "ready" })))
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => {
            ApiError::NotFound("metrics are not enabled in this process".into()).into_response()
        }
    }
}
