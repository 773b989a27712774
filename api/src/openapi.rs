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
        Access: `security` names the bearer JWT; `ADMIN` in it means ADMIN only, none means the \
        tenant's staff (ADMIN or MEMBER), `CUSTOMER` marks a portal route of one customer \
        (`/customer/{id}/...`: its CUSTOMER users, or staff), `ADMIN, MEMBER, CUSTOMER` anyone of the \
        tenant (the route narrows what each sees); an empty `security` marks a public route."),
    components(schemas(Problem)),
    modifiers(&Bearer),
    tags((name = "tasks", description = "Tasks of the caller's tenant"),
         (name = "products", description = "The tenant's catalogue: prices, SKUs, stock"),
         (name = "orders", description = "Orders: placing them reserves stock; their workflow"),
         (name = "analytics", description = "Figures of the tenant's business"),
         (name = "salesforce", description = "The tenant's Salesforce org: its connection and customer syncs"),
         (name = "customers", description = "Customers as synced from the tenant's Salesforce org"),
         (name = "cases", description = "For staff: every customer's support cases, and their workflow"),
         (name = "accounts", description = "A client's bank accounts, balances and transaction logs"),
         (name = "transactions", description = "Postings on accounts: deposits, withdrawals, transfers, fees, interest, reversals"),
         (name = "portal", description = "A customer's portal: their own cases, opened and read by their CUSTOMER users"),
         (name = "audit", description = "For ADMINs: the tenant's event timeline, state as of a point, the history's digest"),
         (name = "ai", description = "AI queries: submitted at once, answered by the AI worker; poll for the answer. `POST /llm` is seed 002's service: generate, or send an email"),
         (name = "integrations", description = "For ADMINs: the tenant's SFTP server, and the runs of its import into the ledger"),
         (name = "messages", description = "Emails: queued at once, sent over SMTP by the mail worker with retries; suppressed recipients"),
         (name = "events", description = "The tenant's events, live, as Server-Sent Events once the read models show them, filtered by what the caller may see"),
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

/// The response headers the shared machinery sends, declared once in
/// `components.headers` and referenced where they apply.
const SHARED_HEADERS: &[(&str, &str, &str)] = &[
    (
        "RateLimit-Limit",
        "requests per second the tenant's tier allows",
        "integer",
    ),
    (
        "RateLimit-Remaining",
        "requests left in the current window",
        "integer",
    ),
    (
        "RateLimit-Reset",
        "seconds until the window resets",
        "integer",
    ),
    ("Retry-After", "seconds to wait before retrying", "integer"),
    (
        "WWW-Authenticate",
        "the bearer challenge (RFC 6750)",
        "string",
    ),
];

const RATE_LIMIT: &[&str] = &["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"];

/// References to shared headers, by name.
fn headers(names: &[&str]) -> Map<String, Value> {
    names
        .iter()
        .map(|n| {
            (
                (*n).to_owned(),
                json!({ "$ref": format!("#/components/headers/{n}") }),
            )
        })
        .collect()
}

/// Where a piece of the shared machinery applies to an operation.
#[derive(Clone, Copy)]
enum When {
    /// It takes a body (`JsonBody`).
    Body,
    /// It reads any header parameter.
    AnyHeader,
    /// It reads this header parameter.
    Header(&'static str),
    /// It reads query parameters (`QueryParams`).
    Query,
    /// It names a resource in its path (`PathId`).
    Path,
    /// It needs a token (`policy::authorize`).
    Protected,
    /// It reaches the store: protected, or a public command.
    Store,
    /// It changes something: any method but GET.
    Command,
    Always,
}

/// What the shared machinery answers, where it applies: status, meaning, response headers.
const MACHINERY: &[(When, u16, &str, &[&str])] = &[
    (
        When::Body,
        400,
        "the body is not JSON (malformed-json)",
        &[],
    ),
    (
        When::Body,
        413,
        "the body is larger than 64 KiB (payload-too-large)",
        &[],
    ),
    (
        When::Body,
        415,
        "the body is not sent as application/json (unsupported-media-type)",
        &[],
    ),
    (
        When::Body,
        422,
        "a field is invalid; `field` names it (validation-failed)",
        &[],
    ),
    (
        When::AnyHeader,
        400,
        "a malformed header (bad-request)",
        &[],
    ),
    (
        When::Query,
        422,
        "a query parameter is invalid; `field` names it (validation-failed)",
        &[],
    ),
    (
        When::Path,
        404,
        "no such resource in the caller's tenant (not-found)",
        &[],
    ),
    (
        When::Header("If-Match"),
        412,
        "If-Match names another version (precondition-failed)",
        &[],
    ),
    (
        When::Header("Idempotency-Key"),
        422,
        "the Idempotency-Key was used with another request (idempotency-key-reused)",
        &[],
    ),
    (
        When::Header("X-Consistency-Token"),
        503,
        "the read model did not catch up within the wait (unavailable)",
        &["Retry-After"],
    ),
    (
        When::Protected,
        401,
        "no, an expired or a wrongly signed token (unauthenticated)",
        &["WWW-Authenticate"],
    ),
    (
        When::Protected,
        403,
        "the caller's role may not do this (forbidden), or the tenant is suspended or deleted",
        &[],
    ),
    (
        When::Protected,
        429,
        "the tenant's rate limit is used up (rate-limited)",
        &["Retry-After"],
    ),
    (
        When::Store,
        503,
        "the store is briefly unavailable; retry (unavailable)",
        &["Retry-After"],
    ),
    (
        When::Command,
        409,
        "the resource changed concurrently too often to apply the command; retry (conflict)",
        &[],
    ),
    (
        When::Always,
        500,
        "an internal error; the cause is logged, never sent (internal)",
        &[],
    ),
];

/// What the shared machinery answers on `op` (`method` in lower case).
fn machinery_answers(
    op: &Value,
    method: &str,
    access: Access,
) -> impl Iterator<Item = (u16, &'static str, &'static [&'static str])> {
    let params: Vec<(String, String)> = op["parameters"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| {
                    Some((
                        p["in"].as_str()?.to_owned(),
                        p["name"].as_str()?.to_ascii_lowercase(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let has_body = op.get("requestBody").is_some();
    let protected = access != Access::Public;
    let is_command = method != "get";
    let applies = move |when: When| match when {
        When::Body => has_body,
        When::AnyHeader => params.iter().any(|(i, _)| i == "header"),
        When::Header(name) => params
            .iter()
            .any(|(i, n)| i == "header" && n.eq_ignore_ascii_case(name)),
        When::Query => params.iter().any(|(i, _)| i == "query"),
        When::Path => params.iter().any(|(i, _)| i == "path"),
        When::Protected => protected,
        When::Store => protected || (is_command && has_body),
        When::Command => is_command,
        When::Always => true,
    };
    MACHINERY
        .iter()
        .filter(move |(when, ..)| applies(*when))
        .map(|(_, status, description, headers)| (*status, *description, *headers))
}

/// Completes the document the routes declared: every error answer is a Problem, and
/// every answer the shared machinery gives is listed on the operations it applies to.
/// Public operations carry an empty `security` (no credentials), the others the bearer
/// scheme; `policy` was read from the same declarations.
pub fn finish(doc: &mut Value, policy: &Policy) {
    doc["components"]["headers"] = SHARED_HEADERS
        .iter()
        .map(|(name, description, ty)| {
            (
                (*name).to_owned(),
                json!({ "description": description, "schema": if *ty == "integer" {
                    json!({ "type": "integer", "minimum": 0 })
                } else {
                    json!({ "type": ty })
                } }),
            )
        })
        .collect::<Map<String, Value>>()
        .into();
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
            for (status, description, names) in machinery_answers(op, method, access) {
                let entry = responses
                    .entry(status.to_string())
                    .or_insert_with(|| json!({ "description": description }));
                add_headers(entry, headers(names));
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
                    add_headers(response, headers(RATE_LIMIT));
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
