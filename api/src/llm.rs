//! `POST /llm`, seed 002's LLM service: one endpoint, two actions. `generate` does what
//! `POST /ai/query` does; `send` what `POST /messages` does, with the body given, or
//! written first by an AI query from `prompt` (the message then has the query's id, and
//! is sent when the query completes).

use crate::app::{AppState, Routes};
use crate::error::{ApiError, Problem};
use crate::extract::{IdempotencyKey, Ids, JsonBody};
use crate::tokens::Principal;
use axum::extract::State;
use axum::response::Response;
use domain::ai_query::{ModelName, Prompt};
use domain::message::{Body, Subject};
use domain::user::Email;
use serde::Deserialize;

/// What `POST /llm` is asked to do.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LlmAction {
    /// Answer `prompt` (with `model`, or the server's default).
    Generate,
    /// Email `recipient` with `subject` and `body`, or with the answer to `prompt` as body.
    Send,
}

/// The fields each action takes: `generate` {prompt, model?}; `send` {recipient, subject,
/// body} or {recipient, subject, prompt, model?}.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LlmRequest {
    action: LlmAction,
    #[serde(default)]
    prompt: Option<Prompt>,
    #[serde(default)]
    model: Option<ModelName>,
    #[serde(default)]
    recipient: Option<Email>,
    #[serde(default)]
    subject: Option<Subject>,
    #[serde(default)]
    body: Option<Body>,
}

/// `POST /llm`'s body as the document shows it, one shape per action; `LlmRequest` reads
/// it and checks the combinations the shapes cannot state (a body or a prompt, not both).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum LlmBody {
    Generate(GenerateBody),
    Send(SendBody),
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GenerateAction {
    Generate,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SendAction {
    Send,
}

/// As `POST /ai/query`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct GenerateBody {
    action: GenerateAction,
    prompt: Prompt,
    #[serde(default)]
    model: Option<ModelName>,
}

/// As `POST /messages` with `body`; or with `prompt` (and `model`), whose answer becomes
/// the body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct SendBody {
    action: SendAction,
    recipient: Email,
    subject: Subject,
    #[serde(default)]
    body: Option<Body>,
    #[serde(default)]
    prompt: Option<Prompt>,
    #[serde(default)]
    model: Option<ModelName>,
}

fn invalid(field: &str, detail: &str) -> ApiError {
    ApiError::Validation {
        field: field.to_owned(),
        detail: format!("{field}: {detail}"),
    }
}

fn required<T>(value: Option<T>, field: &str, action: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| invalid(field, &format!("required with action {action:?}")))
}

#[utoipa::path(post, path = "/llm", tag = "ai", operation_id = "Llm",
    request_body = LlmBody, params(IdempotencyKey),
    responses((status = 202, description = "`generate`: the query, queued, as `POST /ai/query` answers; `send`: the message, queued, as `POST /messages` answers (with `ai_query_id` when a prompt writes the body)", headers(
            ("X-Consistency-Token" = String, description = "send it with a query to read this write"),
            ("Location" = String, description = "the query's or the message's path"))),
        (status = 422, body = Problem, description = "an unknown action (the allowed ones are named), a field the action needs missing or one it does not take, an invalid field, a suppressed recipient, or a prompt past the tier's max_prompt_chars"),
        (status = 429, body = Problem, description = "the month's AI tokens or the day's messages are used up (quota-exceeded), or the rate limit"),
        (status = 503, body = Problem, description = "the AI provider or the mail server the action needs is not configured (not-configured); nothing is written")),
    security(("bearer" = [])))]
pub async fn llm(
    State(state): State<AppState>,
    principal: Principal,
    Ids(ids): Ids,
    idempotency: IdempotencyKey,
    body: JsonBody<LlmRequest>,
) -> Result<Response, ApiError> {
    let idem = idempotency.with_request("POST /llm", principal.actor.user_id.as_str(), &body.bytes);
    let r = body.value;
    match r.action {
        LlmAction::Generate => {
            for (field, given) in [
                ("recipient", r.recipient.is_some()),
                ("subject", r.subject.is_some()),
                ("body", r.body.is_some()),
            ] {
                if given {
                    return Err(invalid(field, "not taken by action \"generate\""));
                }
            }
            let prompt = required(r.prompt, "prompt", "generate")?;
            let command = crate::ai::submission(&state, &principal, prompt, r.model)?;
            crate::ai::submit_query(&state, &principal, ids, idem, &command).await
        }
        LlmAction::Send => {
            crate::messages::mail_configured(&state)?;
            let recipient = required(r.recipient, "recipient", "send")?;
            let subject = required(r.subject, "subject", "send")?;
            match (r.body, r.prompt) {
                (Some(body), None) => {
                    if r.model.is_some() {
                        return Err(invalid("model", "taken only with a prompt"));
                    }
                    let command =
                        crate::messages::send_message(&principal, recipient, subject, body);
                    crate::messages::queue(&state, &principal, ids, idem, &command).await
                }
                (None, Some(prompt)) => {
                    let query = crate::ai::submission(&state, &principal, prompt, r.model)?;
                    let command = crate::messages::send_generated(query, recipient, subject);
                    crate::messages::queue(&state, &principal, ids, idem, &command).await
                }
                (Some(_), Some(_)) => Err(invalid(
                    "body",
                    "give a body or a prompt to write it, not both",
                )),
                (None, None) => Err(invalid(
                    "body",
                    "required with action \"send\", unless a prompt is to write it",
                )),
            }
        }
    }
}

pub fn routes() -> Routes {
    Routes::new().routes(utoipa_axum::routes!(llm))
}
