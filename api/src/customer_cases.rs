//! `/customer/{id}/cases` (seed 001's portal): a customer's own cases, read and opened by
//! their contacts (CUSTOMER users bound to that customer by their token) or by the
//! tenant's staff for them. Opening is limited per customer and hour
//! (`cases_per_customer_per_hour`); the case goes to the tenant's Salesforce org in the
//! background, and its answer shows how far that got (`salesforce`).

use crate::app::{AppState, Routes};
use crate::cases::{CasePage, filters, stream_of};
use crate::customers::tenant_customer;
use crate::error::{ApiError, Problem};
use crate::extract::{Consistency, IdempotencyKey, Ids, JsonBody, QueryParams};
use crate::query::{Cursor, PageLimit, meta, page_of, row_of, write_headers};
use crate::salesforce::last_synced;
use crate::tokens::Principal;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use commands::cases::{OpenCase, case_stream};
use domain::case::{CaseDescription, CasePriority, CaseStatus, CaseSubject};
use projections::cases::{CaseView, VIEW};
use serde::Deserialize;
use uuid::Uuid;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    #[param(inline)]
    status: Option<CaseStatus>,
    #[param(inline)]
    limit: Option<PageLimit>,
    #[param(inline)]
    cursor: Option<Cursor>,
}

#[utoipa::path(get, path = "/customer/{id}/cases", tag = "portal", operation_id = "ListCustomerCases",
    params(("id" = String, Path, description = "the customer's Salesforce Account Id"), ListParams, Consistency),
    responses((status = 200, body = CasePage, headers(
        ("X-Last-Synced" = String, description = "when the last complete Salesforce sync ended (RFC 3339), or `never`")))),
    security(("bearer" = ["CUSTOMER"])))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    QueryParams(params): QueryParams<ListParams>,
    Consistency(token): Consistency,
) -> Result<Response, ApiError> {
    let id = tenant_customer(&state, &principal, &id).await?;
    let (items, next_cursor) = page_of(
        &state,
        &principal,
        VIEW,
        filters(params.status, Some(id)),
        None,
        params.limit,
        params.cursor,
        token,
    )
    .await?;
    let synced = last_synced(&state, &principal.tenant_id).await;
    Ok((synced, Json(CasePage { items, next_cursor })).into_response())
}

#[utoipa::path(get, path = "/customer/{id}/cases/{case_id}", tag = "portal", operation_id = "GetCustomerCase",
    params(("id" = String, Path, description = "the customer's Salesforce Account Id"),
        ("case_id" = Uuid, Path), Consistency),
    responses((status = 200, body = CaseView, headers(("ETag" = String, description = "the case's version"),
        ("X-Last-Synced" = String, description = "when the last complete Salesforce sync ended (RFC 3339), or `never`")))),
    security(("bearer" = ["CUSTOMER"])))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, case_id)): Path<(String, String)>,
    Consistency(token): Consistency,
) -> Result<Response, ApiError> {
    let id = tenant_customer(&state, &principal, &id).await?;
    stream_of(&case_id)?;
    let view: CaseView = row_of(&state, &principal, VIEW, &case_id, token, "no such case").await?;
    // Another customer's case is as unknown here as one never opened.
    if view.customer_id != id {
        return Err(ApiError::NotFound("no such case".into()));
    }
    let synced = last_synced(&state, &principal.tenant_id).await;
    Ok((write_headers(None, view.version), synced, Json(view)).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenCaseBody {
    subject: CaseSubject,
    #[serde(default)]
    description: Option<CaseDescription>,
    /// Default medium.
    #[serde(default)]
    priority: Option<CasePriority>,
}

#[utoipa::path(post, path = "/customer/{id}/cases", tag = "portal", operation_id = "OpenCase",
    request_body = OpenCaseBody,
    params(("id" = String, Path, description = "the customer's Salesforce Account Id"), IdempotencyKey),
    responses((status = 201, body = CaseView, description = "opened, NEW; delivery to Salesforce follows", headers(
            ("X-Consistency-Token" = String, description = "send it with a query to read this write"),
            ("ETag" = String, description = "the case's version"),
            ("Location" = String, description = "the case's path"))),
        (status = 404, body = Problem, description = "no such customer in this tenant"),
        (status = 429, body = Problem, description = "the customer opened the tier's cases_per_customer_per_hour in the last hour",
            headers(("Retry-After" = u64, description = "seconds until the next case may be opened")))),
    security(("bearer" = ["CUSTOMER"])))]
pub async fn open(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Ids(ids): Ids,
    idempotency: IdempotencyKey,
    body: JsonBody<OpenCaseBody>,
) -> Result<Response, ApiError> {
    let id = tenant_customer(&state, &principal, &id).await?;
    let OpenCaseBody {
        subject,
        description,
        priority,
    } = body.value;
    let route = format!("POST /customer/{id}/cases");
    let idem = idempotency.with_request(&route, principal.actor.user_id.as_str(), &body.bytes);
    let command = OpenCase {
        case_id: Uuid::now_v7().to_string(),
        customer_id: id.clone(),
        tier: principal.tier,
        subject,
        description: description.unwrap_or_default(),
        priority: priority.unwrap_or_default(),
    };
    let ran = state
        .commands
        .run(&meta(&principal, ids, idem), &command)
        .await?;
    let opened = ran
        .output
        .opened
        .as_ref()
        .map_or_else(|| command.case_id.clone(), |o| o.case_id.clone());
    let stream = case_stream(&opened);
    let version = ran.version_of(&stream).unwrap_or(1);
    let view = CaseView::from_state(principal.tenant_id.as_str(), &ran.output, version)
        .ok_or_else(|| ApiError::internal("OpenCase left no case to show"))?;
    let mut headers = write_headers(ran.token_for(&stream).as_ref(), version);
    if let Ok(v) = HeaderValue::from_str(&format!("/customer/{id}/cases/{opened}")) {
        headers.insert(header::LOCATION, v);
    }
    tracing::info!(tenant_id = %principal.tenant_id, customer_id = %id, case_id = %opened, replayed = ran.replayed, "case opened");
    Ok((StatusCode::CREATED, headers, Json(view)).into_response())
}

/// The routes of `/customer/{id}/cases`, each declared once by its handler's
/// `#[utoipa::path]`.
pub fn routes() -> Routes {
    Routes::new()
        .routes(utoipa_axum::routes!(list, open))
        .routes(utoipa_axum::routes!(get))
}
