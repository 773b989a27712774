//! `/auth/*` (seed 003): built-in sign-in, invitation sign-up, rotating refresh tokens,
//! sign-out. Public: the credentials are in the body. The tokens' own machinery
//! (signing, verifying, the caller) is `tokens`.
//!
//! A browser client (the console) asks with `X-Refresh-Cookie: 1` to have its refresh
//! token kept where page scripts cannot read it: the answer then sets it as an HttpOnly,
//! `SameSite=Strict` cookie scoped to `/auth` (`Secure` when the request came over TLS, as
//! `X-Forwarded-Proto` says behind a proxy) and leaves it out of the JSON. `/auth/refresh`
//! and `/auth/signout` then take it from the cookie, and only with that header too: a
//! cross-site page can neither send the header without a CORS preflight this server never
//! allows, nor the cookie at all (SameSite=Strict).

use crate::app::{AppState, Routes};
use crate::error::{ApiError, Problem};
use crate::extract::{Ids, JsonBody};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use commands::SignedIn;
use domain::TenantId;
use domain::user::{Email, Password, Secret};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Lifetime of an access token issued at sign-in.
pub const ACCESS_TTL: Duration = Duration::from_secs(15 * 60);

/// Tokens for a signed-in user.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    tenant_id: String,
    user_id: String,
    /// OWNER, ADMIN, MEMBER or CUSTOMER.
    role: String,
    /// A CUSTOMER's customer: the `{id}` of the portal routes they may call.
    #[serde(skip_serializing_if = "Option::is_none")]
    customer_id: Option<String>,
    /// Bearer JWT for every other call.
    access_token: String,
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: u64,
    /// Opaque; exchange at `/auth/refresh` (rotates) or revoke at `/auth/signout`. Absent
    /// when the request asked for it as a cookie (`X-Refresh-Cookie: 1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    refresh_expires_at: DateTime<Utc>,
}

pub(crate) fn tokens(state: &AppState, s: SignedIn) -> Result<TokenResponse, ApiError> {
    let access_token = state
        .keys
        .mint_for(
            &s.tenant_id,
            &s.user_id,
            (s.role, s.customer_id.as_deref()),
            s.tier,
            ACCESS_TTL,
        )
        .map_err(ApiError::internal)?;
    Ok(TokenResponse {
        tenant_id: s.tenant_id.to_string(),
        user_id: s.user_id.to_string(),
        role: s.role.as_str().to_owned(),
        customer_id: s.customer_id,
        access_token,
        token_type: "Bearer",
        expires_in: ACCESS_TTL.as_secs(),
        refresh_token: Some(s.refresh_token),
        refresh_expires_at: s.refresh_expires_at,
    })
}

pub(crate) fn no_store() -> [(header::HeaderName, HeaderValue); 1] {
    [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))]
}

/// The header by which a browser client keeps its refresh token in a cookie.
pub const REFRESH_COOKIE_HEADER: &str = "x-refresh-cookie";

/// The cookie that holds the refresh token, and the only path it is sent to.
pub const REFRESH_COOKIE: &str = "chronicle_refresh";
const COOKIE_PATH: &str = "/auth";

fn wants_cookie(headers: &HeaderMap) -> bool {
    headers
        .get(REFRESH_COOKIE_HEADER)
        .and_then(|v| v.to_str().ok())
        == Some("1")
}

fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

fn cookie(headers: &HeaderMap, value: &str, max_age: i64) -> Result<HeaderValue, ApiError> {
    let secure = if over_tls(headers) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{REFRESH_COOKIE}={value}; Path={COOKIE_PATH}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    ))
    .map_err(ApiError::internal)
}

/// The refresh token of the request's cookie, if it has one.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == REFRESH_COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// The answer of a sign-in (sign-up, refresh): the tokens, with the refresh token in a
/// cookie when the request asked for one.
pub(crate) fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    s: SignedIn,
) -> Result<Response, ApiError> {
    let mut body = tokens(state, s)?;
    let mut response = (status, no_store()).into_response();
    if wants_cookie(headers) {
        let token = body.refresh_token.take().unwrap_or_default();
        let max_age = (body.refresh_expires_at - Utc::now()).num_seconds().max(0);
        response
            .headers_mut()
            .insert(header::SET_COOKIE, cookie(headers, &token, max_age)?);
    }
    let (parts, _) = response.into_parts();
    Ok((parts, Json(body)).into_response())
}

/// The refresh token a refresh or sign-out presents: the body's, or (with the header) the
/// cookie's.
fn presented(headers: &HeaderMap, body: &RefreshRequest) -> Result<String, ApiError> {
    if let Some(t) = &body.refresh_token {
        return Ok(t.as_str().to_owned());
    }
    let refused = |detail: &str| ApiError::Unauthenticated {
        detail: detail.into(),
        challenge: "Bearer".into(),
    };
    if !wants_cookie(headers) {
        return Err(refused(
            "no refresh_token: send it in the body, or its cookie with X-Refresh-Cookie: 1",
        ));
    }
    cookie_token(headers).ok_or_else(|| refused("no refresh cookie"))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    tenant_id: TenantId,
    email: Email,
    password: Secret,
}

#[utoipa::path(post, path = "/auth/signin", tag = "auth", operation_id = "SignIn", request_body = SignIn,
    params(("X-Refresh-Cookie" = Option<String>, Header, description = "`1`: the refresh token is set as an HttpOnly cookie for `/auth`, not in the body")),
    responses((status = 200, body = TokenResponse),
        (status = 401, body = Problem, description = "the same answer for an unknown email and a wrong password",
            headers(("WWW-Authenticate" = String))),
        (status = 403, body = Problem, description = "the tenant is suspended or deleted"),
        (status = 429, body = Problem, description = "too many attempts for this email",
            headers(("Retry-After" = u64, description = "seconds until the next attempt is allowed")))),
    security(()))]
pub async fn sign_in(
    State(state): State<AppState>,
    Ids(ids): Ids,
    headers: HeaderMap,
    body: JsonBody<SignIn>,
) -> Result<Response, ApiError> {
    let b = body.value;
    let (tenant, email) = (b.tenant_id, b.email);
    if let Err(refused) = state.signin_throttle.check(&tenant, email.as_str()) {
        metrics::counter!("chronicle_auth_total", "action" => "signin", "outcome" => "throttled")
            .increment(1);
        return Err(ApiError::TooManyAttempts {
            retry_after_secs: refused.retry_after_secs,
        });
    }
    let signed = state
        .access
        .sign_in(ids, &tenant, &email, b.password.as_str().to_owned())
        .await?;
    signed_in(&state, &headers, StatusCode::OK, signed)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignUp {
    tenant_id: TenantId,
    /// The code an ADMIN issued at `POST /users/invitations`, or (signing up a portal user
    /// of a customer) at `POST /customers/{id}/portal-invitations`.
    invitation_code: Secret,
    email: Email,
    password: Password,
}

#[utoipa::path(post, path = "/auth/signup", tag = "auth", operation_id = "SignUp", request_body = SignUp,
    params(("X-Refresh-Cookie" = Option<String>, Header, description = "`1`: the refresh token is set as an HttpOnly cookie for `/auth`, not in the body")),
    responses((status = 201, body = TokenResponse),
        (status = 403, body = Problem, description = "the invitation code is unknown, used or expired; max_users is reached; the tenant is suspended or deleted"),
        (status = 409, body = Problem, description = "the email is already registered, or the invitation is for another address")),
    security(()))]
pub async fn sign_up(
    State(state): State<AppState>,
    Ids(ids): Ids,
    headers: HeaderMap,
    body: JsonBody<SignUp>,
) -> Result<Response, ApiError> {
    let b = body.value;
    let signed = state
        .access
        .signup(
            ids,
            &b.tenant_id,
            b.invitation_code.as_str(),
            b.email,
            b.password.into_string(),
        )
        .await?;
    signed_in(&state, &headers, StatusCode::CREATED, signed)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token; leave it out (send `{}`) to present the cookie instead, with
    /// `X-Refresh-Cookie: 1`.
    #[serde(default)]
    refresh_token: Option<Secret>,
}

#[utoipa::path(post, path = "/auth/refresh", tag = "auth", operation_id = "RefreshToken", request_body = RefreshRequest,
    params(("X-Refresh-Cookie" = Option<String>, Header, description = "`1`: the refresh token is the cookie's, and the new one is set as the cookie")),
    responses((status = 200, body = TokenResponse, description = "new tokens; the presented refresh token is retired"),
        (status = 401, body = Problem, description = "unknown, expired or revoked; a retired token revokes its whole family",
            headers(("WWW-Authenticate" = String))),
        (status = 403, body = Problem, description = "the tenant is suspended or deleted")),
    security(()))]
pub async fn refresh(
    State(state): State<AppState>,
    Ids(ids): Ids,
    headers: HeaderMap,
    body: JsonBody<RefreshRequest>,
) -> Result<Response, ApiError> {
    let token = presented(&headers, &body.value)?;
    let signed = state.access.refresh(ids, &token).await?;
    signed_in(&state, &headers, StatusCode::OK, signed)
}

#[utoipa::path(post, path = "/auth/signout", tag = "auth", operation_id = "SignOut", request_body = RefreshRequest,
    params(("X-Refresh-Cookie" = Option<String>, Header, description = "`1`: the refresh token is the cookie's, which the answer clears")),
    responses((status = 204, description = "the refresh token's family is revoked (also answered for unknown tokens)"),
        (status = 401, body = Problem, description = "neither a refresh_token nor, with X-Refresh-Cookie: 1, the cookie",
            headers(("WWW-Authenticate" = String)))),
    security(()))]
pub async fn sign_out(
    State(state): State<AppState>,
    Ids(ids): Ids,
    headers: HeaderMap,
    body: JsonBody<RefreshRequest>,
) -> Result<Response, ApiError> {
    let mut response = StatusCode::NO_CONTENT.into_response();
    match presented(&headers, &body.value) {
        Ok(token) => state.access.sign_out(ids, &token).await?,
        // Nothing to revoke: signed out already.
        Err(_) if wants_cookie(&headers) => {}
        Err(e) => return Err(e),
    }
    if wants_cookie(&headers) {
        response
            .headers_mut()
            .insert(header::SET_COOKIE, cookie(&headers, "", 0)?);
    }
    Ok(response)
}

/// The routes of `/auth`.
pub fn routes() -> Routes {
    Routes::new()
        .routes(utoipa_axum::routes!(sign_up))
        .routes(utoipa_axum::routes!(sign_in))
        .routes(utoipa_axum::routes!(refresh))
        .routes(utoipa_axum::routes!(sign_out))
}
