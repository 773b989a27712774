//! `/customers/{id}/agent` (seed 002): the staff user who serves a customer. Under the
//! tenant's `customer_access: assigned` (tenant settings), a MEMBER sees only the customers
//! whose agent they are, with their accounts, transactions, cases and documents (`scope`);
//! an agent also opens their customers' accounts. ADMINs assign and unassign.

use crate::app::{AppState, Routes};
use crate::error::{ApiError, Problem};
use crate::extract::{Ids, JsonBody, PathId};
use crate::query::{meta, write_headers};
use crate::tokens::Principal;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use commands::agents::AssignAgent;
use commands::customers::customer_stream;
use domain::UserId;
use projections::customers::CustomerView;
use serde::Deserialize;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentBody {
    /// An active staff user of the tenant (an agent is usually a MEMBER).
    user_id: UserId,
}

#[utoipa::path(put, path = "/customers/{id}/agent", tag = "customers", operation_id = "AssignAgent",
    request_body = AgentBody,
    params(("id" = String, Path, description = "the Salesforce Account Id")),
    responses((status = 200, body = CustomerView, description = "the customer with its agent", headers(
            ("X-Consistency-Token" = String, description = "send it with a query to read this write"),
            ("ETag" = String, description = "the customer's version"))),
        (status = 404, body = Problem, description = "no such customer in this tenant"),
        (status = 422, body = Problem, description = "the user is not an active staff user of this tenant")),
    security(("bearer" = ["ADMIN"])))]
pub async fn assign(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    Ids(ids): Ids,
    body: JsonBody<AgentBody>,
) -> Result<Response, ApiError> {
    let customer_id = crate::customers::customer_id(&id)?;
    let (headers, view) = run(
        &state,
        &principal,
        ids,
        customer_id,
        Some(body.value.user_id),
    )
    .await?;
    Ok((headers, Json(view)).into_response())
}

#[utoipa::path(delete, path = "/customers/{id}/agent", tag = "customers", operation_id = "UnassignAgent",
    params(("id" = String, Path, description = "the Salesforce Account Id")),
    responses((status = 204, description = "the customer now has no agent", headers(
            ("X-Consistency-Token" = String, description = "send it with a query to read this write"),
            ("ETag" = String, description = "the customer's version"))),
        (status = 404, body = Problem, description = "no such customer in this tenant")),
    security(("bearer" = ["ADMIN"])))]
pub async fn unassign(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    Ids(ids): Ids,
) -> Result<Response, ApiError> {
    let customer_id = crate::customers::customer_id(&id)?;
    let (headers, _) = run(&state, &principal, ids, customer_id, None).await?;
    Ok((StatusCode::NO_CONTENT, headers).into_response())
}

async fn run(
    state: &AppState,
    principal: &Principal,
    ids: commands::RequestIds,
    customer_id: String,
    agent: Option<UserId>,
) -> Result<(HeaderMap, CustomerView), ApiError> {
    let stream = customer_stream(&customer_id);
    let ran = state
        .commands
        .run(
            &meta(principal, ids, None),
            &AssignAgent { customer_id, agent },
        )
        .await?;
    let (customer, version) = &ran.output;
    let view = CustomerView::from_state(principal.tenant_id.as_str(), customer, *version)
        .ok_or_else(|| ApiError::NotFound("no such customer".into()))?;
    let headers = write_headers(ran.token_for(&stream).as_ref(), *version);
    Ok((headers, view))
}

/// The routes of `/customers/{id}/agent`, each declared once by its handler's
/// `#[utoipa::path]`.
pub fn routes() -> Routes {
    Routes::new().routes(utoipa_axum::routes!(assign, unassign))
}
