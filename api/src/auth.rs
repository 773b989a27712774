//! `/auth/*` (seed 003): built-in sign-in, invitation sign-up, rotating refresh tokens,
//! sign-out. Public: the credentials are in the body. The tokens' own machinery
//! (signing, verifying, the caller) is `tokens`.

use crate::app::{AppState, Routes};
use crate::error::{ApiError, Problem};
use crate::extract::{Ids, JsonBody};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
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
    /// Opaque; exchange at `/auth/refresh` (rotates) or revoke at `/auth/signout`.
    refresh_token: String,
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
        refresh_token: s.refresh_token,
        refresh_expires_at: s.refresh_expires_at,
    })
}

pub(crate) fn no_store() -> [(header::HeaderName, HeaderValue); 1] {
    [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))]
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    tenant_id: TenantId,
    email: Email,
    password: Secret,
}

#[utoipa::path(post, path = "/auth/signin", tag = "auth", operation_id = "SignIn", request_body = SignIn,
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
    let signed_in = state
        .access
        .sign_in(ids, &tenant, &email, b.password.as_str().to_owned())
        .await?;
    Ok((no_store(), Json(tokens(&state, signed_in)?)).into_response())
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
    responses((status = 201, body = TokenResponse),
        (status = 403, body = Problem, description = "the invitation code is unknown, used or expired; max_users is reached; the tenant is suspended or deleted"),
        (status = 409, body = Problem, description = "the email is already registered, or the invitation is for another address")),
    security(()))]
pub async fn sign_up(
    State(state): State<AppState>,
    Ids(ids): Ids,
    body: JsonBody<SignUp>,
) -> Result<Response, ApiError> {
    let b = body.value;
    let signed_in = state
        .access
        .signup(
            ids,
            &b.tenant_id,
            b.invitation_code.as_str(),
            b.email,
            b.password.into_string(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        no_store(),
        Json(tokens(&state, signed_in)?),
    )
        .into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    refresh_token: Secret,
}

#[utoipa::path(post, path = "/auth/refresh", tag = "auth", operation_id = "RefreshToken", request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse, description = "new tokens; the presented refresh token is retired"),
        (status = 401, body = Problem, description = "unknown, expired or revoked; a retired token revokes its whole family",
            headers(("WWW-Authenticate" = String))),
        (status = 403, body = Problem, description = "the tenant is suspended or deleted")),
    security(()))]
pub async fn refresh(
    State(state): State<AppState>,
    Ids(ids): Ids,
    body: JsonBody<RefreshRequest>,
) -> Result<Response, ApiError> {
    let signed_in = state
        .access
        .refresh(ids, body.value.refresh_token.as_str())
        .await?;
    Ok((no_store(), Json(tokens(&state, signed_in)?)).into_response())
}

#[utoipa::path(post, path = "/auth/signout", tag = "auth", operation_id = "SignOut", request_body = RefreshRequest,
    responses((status = 204, description = "the refresh token's family is revoked (also answered for unknown tokens)")),
    security(()))]
pub async fn sign_out(
    State(state): State<AppState>,
    Ids(ids): Ids,
    body: JsonBody<RefreshRequest>,
) -> Result<Response, ApiError> {
    state
        .access
        .sign_out(ids, body.value.refresh_token.as_str())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The routes of `/auth`.
pub fn routes() -> Routes {
    Routes::new()
        .routes(utoipa_axum::routes!(sign_up))
        .routes(utoipa_axum::routes!(sign_in))
        .routes(utoipa_axum::routes!(refresh))
        .routes(utoipa_axum::routes!(sign_out))
}
