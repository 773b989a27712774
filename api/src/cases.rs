//! `/cases` (seed 001, the staff's side): every case of the tenant, from every customer,
//! and the staff's changes (status, comments). The customers' own side is
//! `customer_cases`.

use crate::app::{AppState, Routes};
use crate::error::{ApiError, Problem};
use crate::extract::{
    Consistency, IdempotencyKey, Ids, IfMatch, JsonBody, PathId, QueryParams, present,
};
use crate::query::{Cursor, PageLimit, meta, page_of, row_of, write_headers};
use crate::tokens::Principal;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use commands::cases::case_stream;
use domain::StreamId;
use domain::case::{Case, CaseCommand, CaseComment, CaseStatus};
use projections::cases::{CaseView, VIEW};
use serde::{Deserialize, Serialize};

/// The case's stream, for a canonical case id; anything else names no case.
pub(crate) fn stream_of(id: &str) -> Result<StreamId, ApiError> {
    crate::extract::canonical_uuid(id, "no such case").map(|u| case_stream(&u.to_string()))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CasePage {
    pub(crate) items: Vec<CaseView>,
    pub(crate) next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    #[param(inline)]
    status: Option<CaseStatus>,
    /// The customer's Salesforce Account Id.
    customer_id: Option<String>,
    #[param(inline)]
    limit: Option<PageLimit>,
    #[param(inline)]
    cursor: Option<Cursor>,
}

/// The filters of a case listing.
pub(crate) fn filters(
    status: Option<CaseStatus>,
    customer: Option<String>,
) -> Vec<(String, String)> {
    status
        .map(|s| ("status".to_owned(), s.as_str().to_owned()))
        .into_iter()
        .chain(customer.map(|c| ("customer_id".to_owned(), c)))
        .collect()
}

#[utoipa::path(get, path = "/cases", tag = "cases", operation_id = "ListCases",
    params(ListParams, Consistency),
    responses((status = 200, body = CasePage)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    QueryParams(params): QueryParams<ListParams>,
    Consistency(token): Consistency,
) -> Result<Json<CasePage>, ApiError> {
    let (items, next_cursor) = page_of(
        &state,
        &principal,
        VIEW,
        filters(params.status, params.customer_id),
        None,
        params.limit,
        params.cursor,
        token,
    )
    .await?;
    Ok(Json(CasePage { items, next_cursor }))
}

#[utoipa::path(get, path = "/cases/{id}", tag = "cases", operation_id = "GetCase",
    params(("id" = Uuid, Path), Consistency),
    responses((status = 200, body = CaseView, headers(("ETag" = String, description = "the case's version")))),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    Consistency(token): Consistency,
) -> Result<Response, ApiError> {
    stream_of(&id)?;
    let view: CaseView = row_of(&state, &principal, VIEW, &id, token, "no such case").await?;
    Ok((write_headers(None, view.version), Json(view)).into_response())
}

/// A staff change: a status, a comment, or both.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct UpdateCase {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    status: Option<CaseStatus>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    comment: Option<CaseComment>,
}

#[utoipa::path(put, path = "/cases/{id}", tag = "cases", operation_id = "UpdateCase",
    request_body = UpdateCase, params(("id" = Uuid, Path), IfMatch, IdempotencyKey),
    responses((status = 200, body = CaseView, headers(
            ("X-Consistency-Token" = String, description = "send it with a query to read this write"),
            ("ETag" = String, description = "the case's version"))),
        (status = 404, body = Problem, description = "no such case in this tenant")),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    IfMatch(if_match): IfMatch,
    Ids(ids): Ids,
    idempotency: IdempotencyKey,
    body: JsonBody<UpdateCase>,
) -> Result<Response, ApiError> {
    let stream = stream_of(&id)?;
    let UpdateCase { status, comment } = body.value;
    if status.is_none() && comment.is_none() {
        return Err(ApiError::Validation {
            field: "body".into(),
            detail: "send at least one of status, comment".into(),
        });
    }
    if principal.scope != crate::scope::ClientScope::All {
        // A case's customer never changes: the case as the store has it names it.
        let (case, _) = state
            .commands
            .state::<Case>(&principal.tenant_id, &stream)
            .await?;
        let customer = case.opened.as_ref().map(|o| o.customer_id.as_str());
        if !crate::scope::sees(&state, &principal, customer.unwrap_or_default()).await? {
            return Err(ApiError::NotFound("no such case".into()));
        }
    }
    let route = format!("PUT /cases/{id}");
    let idem = idempotency.with_request(&route, principal.actor.user_id.as_str(), &body.bytes);
    let done = state
        .commands
        .execute::<Case>(
            &meta(&principal, ids, idem),
            &stream,
            &CaseCommand::Update { status, comment },
            if_match,
        )
        .await?;
    let view = CaseView::from_state(principal.tenant_id.as_str(), &done.state, done.version)
        .ok_or_else(|| ApiError::NotFound("no such case".into()))?;
    Ok((write_headers(done.token.as_ref(), done.version), Json(view)).into_response())
}

/// The routes of `/cases`, each declared once by its handler's `#[utoipa::path]`.
pub fn routes() -> Routes {
    Routes::new()
        .routes(utoipa_axum::routes!(list))
        .routes(utoipa_axum::routes!(get, update))
}
