//! Liveness, readiness and Prometheus metrics.

use crate::app::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The answer of `/health` and `/ready`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Status {
    /// `ok` (health) or `ready`.
    status: &'static str,
    /// How the outside services fare (`/ready` of a server with Salesforce configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<Detail>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Detail {
    salesforce: SalesforceHealth,
}

/// Salesforce as this process sees it. An open circuit degrades reads (served from the
/// read models, `X-Last-Synced` saying how fresh) without making the server unready.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SalesforceHealth {
    /// Tenant orgs not called for now after repeated failures.
    open_circuits: usize,
    /// `ok`, or `degraded` while a circuit is open.
    status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/health", tag = "operations", operation_id = "Health",
    responses((status = 200, description = "up", body = Status)), security(()))]
pub async fn health() -> Json<Status> {
    Json(Status {
        status: "ok",
        detail: None,
    })
}

/// The store answers and the projector runs.
#[utoipa::path(get, path = "/ready", tag = "operations", operation_id = "Ready",
    responses((status = 200, description = "ready", body = Status),
        (status = 503, body = crate::error::Problem, description = "the store does not answer or the projector is not running",
            headers(("Retry-After" = u64)))),
    security(()))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    state
        .views
        .checkpoint(projections::tasks::VIEW)
        .await
        .map_err(|e| ApiError::Unavailable(format!("the read-model store does not answer: {e}")))?;
    if !state.freshness.is_running() {
        return Err(ApiError::Unavailable("the projector is not running".into()));
    }
    let detail = state.salesforce.as_ref().map(|sf| {
        let open_circuits = sf.breaker.open_circuits();
        Detail {
            salesforce: SalesforceHealth {
                open_circuits,
                status: if open_circuits == 0 { "ok" } else { "degraded" },
            },
        }
    });
    Ok(Json(Status {
        status: "ready",
        detail,
    }))
}

/// Prometheus text: requests, errors and latency by route, projection lag, DynamoDB requests.
#[utoipa::path(get, path = "/metrics", tag = "operations", operation_id = "Metrics",
    responses((status = 200, content_type = "text/plain", body = String, description = "Prometheus text format 0.0.4"),
        (status = 404, body = crate::error::Problem, description = "metrics are not enabled in this process")),
    security(()))]
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

/// The operations routes.
pub fn routes() -> crate::app::Routes {
    crate::app::Routes::new()
        .routes(utoipa_axum::routes!(health))
        .routes(utoipa_axum::routes!(ready))
        .routes(utoipa_axum::routes!(metrics))
        .routes(utoipa_axum::routes!(crate::openapi::openapi_json))
}
