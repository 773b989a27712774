//! Liveness, readiness and Prometheus metrics.

use crate::app::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The process is up.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, description = "up")))]
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The store answers and the projector runs.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, description = "ready"), (status = 503, body = crate::error::Problem)))]
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

/// Prometheus text: requests, errors and latency by route, projection lag, DynamoDB requests.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "text/plain", body = String)))]
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
