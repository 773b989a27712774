//! `/messages` (seed 002's `send`): queue an email, answered 202 at once; the mail worker
//! sends it over SMTP and the client reads its status. A MEMBER sees the messages they
//! queued, an ADMIN the whole tenant's. A recipient a server refused for good is
//! suppressed until an ADMIN lifts it (`/messages/suppressions/{recipient}`).

use crate::app::{AppState, Routes};
use crate::error::{ApiError, Problem};
use crate::extract::{Consistency, IdempotencyKey, Ids, JsonBody, PathId, QueryParams};
use crate::query::{Cursor, PageLimit, meta, page_of, row_of, write_headers};
use crate::tokens::Principal;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use commands::Command;
use commands::messages::{
    LiftSuppression, SendGeneratedMessage, SendMessage, message_stream, suppression_of,
};
use domain::message::{Body, Message, MessageStatus, Subject};
use domain::user::Email;
use projections::messages::{MessageView, VIEW};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The mail server, when one is configured.
#[derive(Debug, Clone)]
pub struct MailProvider {
    /// The `From` of every message (`CHRONICLE_SMTP_FROM`).
    pub from: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueMessage {
    recipient: Email,
    subject: Subject,
    body: Body,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Queued {
    message_id: String,
    /// QUEUED: read `GET /messages/{id}` (the `Location`) for how it went.
    status: MessageStatus,
    /// The AI query writing the body, when one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    ai_query_id: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    #[param(inline)]
    status: Option<MessageStatus>,
    #[param(inline)]
    recipient: Option<Email>,
    #[param(inline)]
    limit: Option<PageLimit>,
    #[param(inline)]
    cursor: Option<Cursor>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MessagePage {
    items: Vec<MessageView>,
    next_cursor: Option<String>,
}

/// A recipient mail is held back from.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SuppressionView {
    recipient: String,
    /// The message a server refused for good.
    message_id: String,
    /// What the server said.
    reply: String,
    since: chrono::DateTime<chrono::Utc>,
}

fn message_id(id: &str) -> Result<String, ApiError> {
    crate::extract::canonical_uuid(id, "no such message")
}

/// 503 unless a mail server is configured.
pub(crate) fn mail_configured(state: &AppState) -> Result<&MailProvider, ApiError> {
    state.mail.as_ref().ok_or_else(|| {
        ApiError::NotConfigured(
            "no mail server is configured: the server needs CHRONICLE_SMTP_URL and CHRONICLE_SMTP_FROM".into(),
        )
    })
}

/// A message the caller queued (`SendMessage` or `SendGeneratedMessage`): 202 with its
/// id, its `Location` and the consistency token of its write.
pub(crate) async fn queue<C>(
    state: &AppState,
    principal: &Principal,
    ids: commands::RequestIds,
    idempotency: Option<commands::Idempotency>,
    command: &C,
) -> Result<Response, ApiError>
where
    C: Command<Output = Message>,
    ApiError: From<commands::CommandError<C::Error>>,
{
    let ran = state
        .commands
        .run(&meta(principal, ids, idempotency), command)
        .await?;
    let queued = ran
        .output
        .queued
        .as_ref()
        .ok_or_else(|| ApiError::internal("a send left no message"))?;
    let id = queued.message_id.clone();
    let stream = message_stream(&id);
    let version = ran.version_of(&stream).unwrap_or(1);
    let mut headers = write_headers(ran.token_for(&stream).as_ref(), version);
    if let Ok(v) = HeaderValue::from_str(&format!("/messages/{id}")) {
        headers.insert(header::LOCATION, v);
    }
    tracing::info!(tenant_id = %principal.tenant_id, message_id = %id, replayed = ran.replayed, "message queued");
    let body = Queued {
        message_id: id,
        status: ran.output.status.unwrap_or(MessageStatus::Queued),
        ai_query_id: queued.ai_query_id.clone(),
    };
    Ok((StatusCode::ACCEPTED, headers, Json(body)).into_response())
}

/// SendMessage, as `POST /messages` and `POST /llm` (`send` with a body) run it.
pub(crate) fn send_message(
    principal: &Principal,
    recipient: Email,
    subject: Subject,
    body: Body,
) -> SendMessage {
    SendMessage {
        message_id: Uuid::now_v7().to_string(),
        tier: principal.tier,
        recipient,
        subject,
        body: Some(body),
        ai_query_id: None,
    }
}

/// SendGeneratedMessage, as `POST /llm` (`send` with a prompt) runs it.
pub(crate) fn send_generated(
    query: commands::ai::SubmitAiQuery,
    recipient: Email,
    subject: Subject,
) -> SendGeneratedMessage {
    SendGeneratedMessage {
        query,
        recipient,
        subject,
    }
}

#[utoipa::path(post, path = "/messages", tag = "messages", operation_id = "SendMessage",
    request_body = QueueMessage, params(IdempotencyKey),
    responses((status = 202, body = Queued, description = "queued for the mail worker", headers(
            ("X-Consistency-Token" = String, description = "send it with a query to read this write"),
            ("Location" = String, description = "the message's path"))),
        (status = 422, body = Problem, description = "an invalid field, or a suppressed recipient (field `recipient`)"),
        (status = 429, body = Problem, description = "the day's messages_per_day are queued (quota-exceeded, with when it resets), or the rate limit"),
        (status = 503, body = Problem, description = "no mail server is configured (not-configured); nothing is written")),
    security(("bearer" = [])))]
pub async fn send(
    State(state): State<AppState>,
    principal: Principal,
    Ids(ids): Ids,
    idempotency: IdempotencyKey,
    body: JsonBody<QueueMessage>,
) -> Result<Response, ApiError> {
    mail_configured(&state)?;
    let idem = idempotency.with_request(
        "POST /messages",
        principal.actor.user_id.as_str(),
        &body.bytes,
    );
    let QueueMessage {
        recipient,
        subject,
        body,
    } = body.value;
    let command = send_message(&principal, recipient, subject, body);
    queue(&state, &principal, ids, idem, &command).await
}

#[utoipa::path(get, path = "/messages/{id}", tag = "messages", operation_id = "GetMessage",
    params(("id" = Uuid, Path), Consistency),
    responses((status = 200, body = MessageView, headers(("ETag" = String, description = "the message's version"))),
        (status = 404, body = Problem, description = "no such message, or (for a MEMBER) another user's")),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    Consistency(token): Consistency,
) -> Result<Response, ApiError> {
    let id = message_id(&id)?;
    let view: MessageView = row_of(&state, &principal, VIEW, &id, token, "no such message").await?;
    if !principal.actor.role.is_admin() && view.queued_by != principal.actor.user_id.as_str() {
        return Err(ApiError::NotFound("no such message".into()));
    }
    Ok((write_headers(None, view.version), Json(view)).into_response())
}

#[utoipa::path(get, path = "/messages", tag = "messages", operation_id = "ListMessages",
    params(ListParams, Consistency),
    responses((status = 200, body = MessagePage, description = "a MEMBER's own messages; an ADMIN's, the tenant's, newest last")),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    QueryParams(params): QueryParams<ListParams>,
    Consistency(token): Consistency,
) -> Result<Json<MessagePage>, ApiError> {
    let mut filters = Vec::new();
    if !principal.actor.role.is_admin() {
        filters.push(("queued_by".to_owned(), principal.actor.user_id.to_string()));
    }
    if let Some(s) = params.status {
        filters.push(("status".to_owned(), s.as_str().to_owned()));
    }
    if let Some(r) = params.recipient {
        filters.push(("recipient".to_owned(), r.as_str().to_owned()));
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
    Ok(Json(MessagePage { items, next_cursor }))
}

fn recipient_of(raw: &str) -> Result<Email, ApiError> {
    Email::parse(raw).map_err(ApiError::validation)
}

#[utoipa::path(get, path = "/messages/suppressions/{recipient}", tag = "messages",
    operation_id = "GetSuppression",
    params(("recipient" = Email, Path, description = "an email address")),
    responses((status = 200, body = SuppressionView, description = "the recipient is suppressed"),
        (status = 404, body = Problem, description = "the recipient is not suppressed"),
        (status = 422, body = Problem, description = "not an email address")),
    security(("bearer" = ["ADMIN"])))]
pub async fn suppression(
    State(state): State<AppState>,
    principal: Principal,
    axum::extract::Path(recipient): axum::extract::Path<String>,
) -> Result<Json<SuppressionView>, ApiError> {
    let recipient = recipient_of(&recipient)?;
    let s = suppression_of(&state.commands, &principal.tenant_id, &recipient).await?;
    let held = s
        .suppressed
        .ok_or_else(|| ApiError::NotFound("the recipient is not suppressed".into()))?;
    Ok(Json(SuppressionView {
        recipient: recipient.as_str().to_owned(),
        message_id: held.message_id,
        reply: held.reply,
        since: held.at,
    }))
}

#[utoipa::path(delete, path = "/messages/suppressions/{recipient}", tag = "messages",
    operation_id = "LiftSuppression",
    params(("recipient" = Email, Path, description = "an email address")),
    responses((status = 204, description = "lifted: mail to the recipient is sent again"),
        (status = 404, body = Problem, description = "the recipient is not suppressed"),
        (status = 422, body = Problem, description = "not an email address")),
    security(("bearer" = ["ADMIN"])))]
pub async fn lift(
    State(state): State<AppState>,
    principal: Principal,
    Ids(ids): Ids,
    axum::extract::Path(recipient): axum::extract::Path<String>,
) -> Result<StatusCode, ApiError> {
    let recipient = recipient_of(&recipient)?;
    state
        .commands
        .run(
            &meta(&principal, ids, None),
            &LiftSuppression {
                recipient: recipient.clone(),
            },
        )
        .await?;
    tracing::info!(tenant_id = %principal.tenant_id, "recipient suppression lifted");
    Ok(StatusCode::NO_CONTENT)
}

/// The routes of `/messages`, each declared once by its handler's `#[utoipa::path]`.
pub fn routes() -> Routes {
    Routes::new()
        .routes(utoipa_axum::routes!(send))
        .routes(utoipa_axum::routes!(get))
        .routes(utoipa_axum::routes!(list))
        .routes(utoipa_axum::routes!(suppression, lift))
}
