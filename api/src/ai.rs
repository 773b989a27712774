//! `/ai` (seed 000's asynchronous AI processing, seed 002's `generate`): submit a query,
//! answered 202 at once; the AI worker calls the model and the client polls the query's
//! status. A MEMBER sees their own queries, an ADMIN the whole tenant's.

use crate::app::{AppState, Routes};
use crate::error::{ApiError, Problem};
use crate::extract::{Consistency, IdempotencyKey, Ids, JsonBody, PathId, QueryParams};
use crate::query::{Cursor, PageLimit, meta, page_of, row_of, write_headers};
use crate::tokens::Principal;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use commands::ai::{SubmitAiQuery, query_stream};
use domain::ai_query::{AiQueryStatus, ModelName, Prompt};
use projections::ai_queries::{AiQueryView, VIEW};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The model provider, when one is configured.
#[derive(Debug, Clone)]
pub struct AiProvider {
    /// The model a query gets when it names none (`CHRONICLE_AI_MODEL`).
    pub default_model: ModelName,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitQuery {
    prompt: Prompt,
    #[serde(default)]
    model: Option<ModelName>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Submitted {
    query_id: String,
    /// QUEUED: poll `GET /ai/query/{id}` (the `Location`) for the answer.
    status: AiQueryStatus,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    #[param(inline)]
    status: Option<AiQueryStatus>,
    #[param(inline)]
    limit: Option<PageLimit>,
    #[param(inline)]
    cursor: Option<Cursor>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AiQueryPage {
    items: Vec<AiQueryView>,
    next_cursor: Option<String>,
}

fn query_id(id: &str) -> Result<String, ApiError> {
    crate::extract::canonical_uuid(id, "no such query")
}

#[utoipa::path(post, path = "/ai/query", tag = "ai", operation_id = "SubmitAIQuery",
    request_body = SubmitQuery, params(IdempotencyKey),
    responses((status = 202, body = Submitted, description = "queued for the AI worker", headers(
            ("X-Consistency-Token" = String, description = "send it with a query to read this write"),
            ("Location" = String, description = "the query's path, to poll"))),
        (status = 422, body = Problem, description = "an invalid field, or a prompt past the tier's max_prompt_chars"),
        (status = 429, body = Problem, description = "the month's AI token budget is used up (quota-exceeded, with the budget and when it resets), or the rate limit"),
        (status = 503, body = Problem, description = "no AI provider is configured (not-configured)")),
    security(("bearer" = [])))]
pub async fn submit(
    State(state): State<AppState>,
    principal: Principal,
    Ids(ids): Ids,
    idempotency: IdempotencyKey,
    body: JsonBody<SubmitQuery>,
) -> Result<Response, ApiError> {
    let idem = idempotency.with_request(
        "POST /ai/query",
        principal.actor.user_id.as_str(),
        &body.bytes,
    );
    let b = body.value;
    let command = submission(&state, &principal, b.prompt, b.model)?;
    submit_query(&state, &principal, ids, idem, &command).await
}

/// 503 unless an AI provider is configured.
pub(crate) fn provider(state: &AppState) -> Result<&AiProvider, ApiError> {
    state.ai.as_ref().ok_or_else(|| {
        ApiError::NotConfigured(
            "no AI provider is configured: the server needs OPENAI_API_KEY (and OPENAI_BASE_URL for a server other than OpenAI)".into(),
        )
    })
}

/// SubmitAIQuery of a new query, with the provider's default model unless one is named.
pub(crate) fn submission(
    state: &AppState,
    principal: &Principal,
    prompt: Prompt,
    model: Option<ModelName>,
) -> Result<SubmitAiQuery, ApiError> {
    let provider = provider(state)?;
    Ok(SubmitAiQuery {
        query_id: Uuid::now_v7().to_string(),
        tier: principal.tier,
        prompt,
        model: model.unwrap_or_else(|| provider.default_model.clone()),
    })
}

/// Runs `command`: 202 with the query's id, its `Location` and the write's consistency
/// token (`POST /ai/query`, and `POST /llm` with `generate`).
pub(crate) async fn submit_query(
    state: &AppState,
    principal: &Principal,
    ids: commands::RequestIds,
    idem: Option<commands::Idempotency>,
    command: &SubmitAiQuery,
) -> Result<Response, ApiError> {
    let ran = state
        .commands
        .run(&meta(principal, ids, idem), command)
        .await?;
    let id = ran
        .output
        .submitted
        .as_ref()
        .map_or_else(|| command.query_id.clone(), |s| s.query_id.clone());
    let stream = query_stream(&id);
    let version = ran.version_of(&stream).unwrap_or(1);
    let mut headers = write_headers(ran.token_for(&stream).as_ref(), version);
    if let Ok(v) = HeaderValue::from_str(&format!("/ai/query/{id}")) {
        headers.insert(header::LOCATION, v);
    }
    let status = ran.output.status.unwrap_or(AiQueryStatus::Queued);
    tracing::info!(tenant_id = %principal.tenant_id, query_id = %id, replayed = ran.replayed, "AI query submitted");
    Ok((
        StatusCode::ACCEPTED,
        headers,
        Json(Submitted {
            query_id: id,
            status,
        }),
    )
        .into_response())
}

#[utoipa::path(get, path = "/ai/query/{id}", tag = "ai", operation_id = "GetAIQuery",
    params(("id" = Uuid, Path), Consistency),
    responses((status = 200, body = AiQueryView, headers(("ETag" = String, description = "the query's version"))),
        (status = 404, body = Problem, description = "no such query, or (for a MEMBER) another user's")),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    Consistency(token): Consistency,
) -> Result<Response, ApiError> {
    let id = query_id(&id)?;
    let view: AiQueryView = row_of(&state, &principal, VIEW, &id, token, "no such query").await?;
    if !principal.actor.role.is_admin() && view.submitted_by != principal.actor.user_id.as_str() {
        return Err(ApiError::NotFound("no such query".into()));
    }
    Ok((write_headers(None, view.version), Json(view)).into_response())
}

#[utoipa::path(get, path = "/ai/queries", tag = "ai", operation_id = "ListAIQueries",
    params(ListParams, Consistency),
    responses((status = 200, body = AiQueryPage, description = "a MEMBER's own queries; an ADMIN's, the tenant's")),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    QueryParams(params): QueryParams<ListParams>,
    Consistency(token): Consistency,
) -> Result<Json<AiQueryPage>, ApiError> {
    let mut filters = Vec::new();
    if !principal.actor.role.is_admin() {
        filters.push((
            "submitted_by".to_owned(),
            principal.actor.user_id.to_string(),
        ));
    }
    if let Some(s) = params.status {
        filters.push(("status".to_owned(), s.as_str().to_owned()));
    }
    let (items, next_cursor) = page_of(
        &state,
        &principal,
        VIEW,
        filters,
        None,
        params.limit,
        params.cursor,
        token,
    )
    .await?;
    Ok(Json(AiQueryPage { items, next_cursor }))
}

/// The routes of `/ai`, each declared once by its handler's `#[utoipa::path]`.
pub fn routes() -> Routes {
    Routes::new()
        .routes(utoipa_axum::routes!(submit))
        .routes(utoipa_axum::routes!(get))
        .routes(utoipa_axum::routes!(list))
}
