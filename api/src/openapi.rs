//! The OpenAPI 3.1 document at `/openapi.json`. Each route's entry comes from its handler's
//! `#[utoipa::path]` (path, method, operation id, access, body, parameters, the answers only
//! that handler gives) and the request and response types themselves; `finish` then adds
//! the answers that the shared machinery gives every route it applies to (the access
//! policy, the body, path, query and header extractors, the store), so the document says
//! what the server does without each handler repeating it.

use crate::app::AppState;
use crate::error::Problem;
use crate::policy::{Access, Policy};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Chronicle", description = "Event-sourced CQRS backend for multi-tenant SaaS. \
        Errors are application/problem+json (RFC 9457). Commands return X-Consistency-Token; \
        queries that send it back wait until the read model shows the write. \
        Access: `security` names the bearer JWT; a role in it (`ADMIN`) is required, none means any \
        user of the tenant; an empty `security` marks a public route."),
    components(schemas(Problem)),
    modifiers(&Bearer),
    tags((name = "tasks", description = "Tasks of the caller's tenant"),
         (name = "tenants", description = "Sign-up, plan, settings and lifecycle of the caller's tenant"),
         (name = "users", description = "Users of the caller's tenant and invitations"),
         (name = "auth", description = "Built-in sign-in: access and rotating refresh tokens"),
         (name = "operations", description = "Health, readiness, metrics, this document"))
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

const PROBLEM: &str = "application/problem+json";

fn header(description: &str, schema: Value) -> Value {
    json!({ "description": description, "schema": schema })
}

fn rate_limit_headers() -> Map<String, Value> {
    let int = json!({"type": "integer", "minimum": 0});
    let mut h = Map::new();
    h.insert(
        "RateLimit-Limit".into(),
        header("requests per second the tenant's tier allows", int.clone()),
    );
    h.insert(
        "RateLimit-Remaining".into(),
        header("requests left in the current window", int.clone()),
    );
    h.insert(
        "RateLimit-Reset".into(),
        header("seconds until the window resets", int),
    );
    h
}

fn retry_after() -> (String, Value) {
    (
        "Retry-After".into(),
        header(
            "seconds to wait before retrying",
            json!({"type": "integer", "minimum": 0}),
        ),
    )
}

/// What the shared machinery answers on `op`, by status: (description, extra headers).
fn machinery_answers(op: &Value, access: Access) -> Vec<(u16, &'static str, Map<String, Value>)> {
    let none = Map::new;
    let params: Vec<(&str, &str)> = op["parameters"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| Some((p["in"].as_str()?, p["name"].as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    let has = |place: &str, name: Option<&str>| {
        params
            .iter()
            .any(|(i, n)| *i == place && name.is_none_or(|name| name.eq_ignore_ascii_case(n)))
    };
    let mut answers = Vec::new();
    if op.get("requestBody").is_some() {
        answers.push((400, "the body is not JSON (malformed-json)", none()));
        answers.push((
            413,
            "the body is larger than 64 KiB (payload-too-large)",
            none(),
        ));
        answers.push((415, "the body is not sent as application/json", none()));
        answers.push((
            422,
            "a field is invalid; `field` names it (validation-failed)",
            none(),
        ));
    }
    if has("header", None) {
        answers.push((400, "a malformed header (bad-request)", none()));
    }
    if has("query", None) {
        answers.push((
            422,
            "a query parameter is invalid; `field` names it",
            none(),
        ));
    }
    if has("path", None) {
        answers.push((
            404,
            "no such resource in the caller's tenant (not-found)",
            none(),
        ));
    }
    if has("header", Some("If-Match")) {
        answers.push((
            412,
            "If-Match names another version (precondition-failed)",
            none(),
        ));
    }
    if has("header", Some("Idempotency-Key")) {
        answers.push((
            422,
            "the Idempotency-Key was used with another request (idempotency-key-reused)",
            none(),
        ));
    }
    if has("header", Some("X-Consistency-Token")) {
        answers.push((
            503,
            "the read model did not catch up within the wait (unavailable)",
            [retry_after()].into_iter().collect(),
        ));
    }
    if access != Access::Public {
        let challenge: Map<String, Value> = [(
            "WWW-Authenticate".to_owned(),
            header("the bearer challenge", json!({"type": "string"})),
        )]
        .into_iter()
        .collect();
        answers.push((
            401,
            "no, an expired or a wrongly signed token (unauthenticated)",
            challenge,
        ));
        answers.push((
            403,
            "the caller's role may not do this (forbidden), or the tenant is suspended or deleted",
            none(),
        ));
        let mut limited = rate_limit_headers();
        limited.extend([retry_after()]);
        answers.push((
            429,
            "the tenant's rate limit is used up (rate-limited)",
            limited,
        ));
    }
    if access != Access::Public || op.get("requestBody").is_some() {
        answers.push((
            503,
            "the store is briefly unavailable; retry (unavailable)",
            [retry_after()].into_iter().collect(),
        ));
    }
    answers.push((
        500,
        "an internal error; the cause is logged, never sent (internal)",
        none(),
    ));
    answers
}

/// Completes the document the routes declared: every error answer is a Problem, and
/// every answer the shared machinery gives is listed on the operations it applies to.
/// Public operations carry an empty `security` (no credentials), the others the bearer
/// scheme; `policy` was read from the same declarations.
pub fn finish(doc: &mut Value, policy: &Policy) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            let Some(rule) = policy.rule(method, path) else {
                continue;
            };
            let access = rule.access;
            if access == Access::Public {
                op["security"] = json!([]);
            }
            let mut responses = op["responses"]
                .as_object_mut()
                .map(std::mem::take)
                .unwrap_or_default();
            for (status, description, headers) in machinery_answers(op, access) {
                let entry = responses
                    .entry(status.to_string())
                    .or_insert_with(|| json!({ "description": description }));
                add_headers(entry, headers);
            }
            for (status, response) in responses.iter_mut() {
                let is_error = status
                    .as_bytes()
                    .first()
                    .is_some_and(|c| *c == b'4' || *c == b'5');
                if is_error {
                    response["content"] = json!({ PROBLEM: { "schema": { "$ref": "#/components/schemas/Problem" } } });
                }
                if access != Access::Public {
                    add_headers(response, rate_limit_headers());
                }
            }
            op["responses"] = Value::Object(responses);
        }
    }
}

/// Adds `headers` to a response's, keeping any it already declares.
fn add_headers(response: &mut Value, headers: Map<String, Value>) {
    if headers.is_empty() {
        return;
    }
    let Some(r) = response.as_object_mut() else {
        return;
    };
    if let Some(h) = r
        .entry("headers")
        .or_insert_with(|| json!({}))
        .as_object_mut()
    {
        for (name, value) in headers {
            h.entry(name).or_insert(value);
        }
    }
}

/// The served document, rendered once.
#[derive(Clone)]
pub struct Document(pub axum::body::Bytes);

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", operation_id = "OpenApi",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object)),
    security(()))]
pub async fn openapi_json(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        state.openapi.0.clone(),
    )
        .into_response()
}
