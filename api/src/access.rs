//! Tenants, users and built-in sign-in (seed 003): `/tenants`, `/users`, `/auth/*`.
//!
//! Passwords arrive in request bodies and go nowhere but the argon2 hasher: request bodies
//! are never logged, and the events hold only the hash.

use crate::app::AppState;
use crate::app::Routes;
use crate::auth::Principal;
use crate::error::{ApiError, Problem};
use crate::extract::{Consistency, IdempotencyKey, Ids, IfMatch, JsonBody, PathId, QueryParams};
use crate::query::{Cursor, PageLimit, meta, page_of, row_of, write_headers};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use commands::access::tenant_stream;
use commands::{SignedIn, UserState};
use domain::tenant::{CompanyName, Settings, Tenant, TenantCommand};
use domain::user::{Email, Password, Secret};
use domain::{Role, TenantId, Tier, UserId};
use projections::users::{UserView, VIEW as USERS};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// Lifetime of an access token issued at sign-in.
pub const ACCESS_TTL: Duration = Duration::from_secs(15 * 60);

// ------------------------------------------------------------------ tokens

/// Tokens for a signed-in user.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    tenant_id: String,
    user_id: String,
    /// ADMIN or MEMBER.
    role: String,
    /// Bearer JWT for every other call.
    access_token: String,
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: u64,
    /// Opaque; exchange at `/auth/refresh` (rotates) or revoke at `/auth/signout`.
    refresh_token: String,
    refresh_expires_at: DateTime<Utc>,
}

fn tokens(state: &AppState, s: SignedIn) -> Result<TokenResponse, ApiError> {
    let access_token = state
        .keys
        .mint_with_tier(&s.tenant_id, &s.user_id, s.role, s.tier, ACCESS_TTL)
        .map_err(ApiError::internal)?;
    Ok(TokenResponse {
        tenant_id: s.tenant_id.to_string(),
        user_id: s.user_id.to_string(),
        role: s.role.as_str().to_owned(),
        access_token,
        token_type: "Bearer",
        expires_in: ACCESS_TTL.as_secs(),
        refresh_token: s.refresh_token,
        refresh_expires_at: s.refresh_expires_at,
    })
}

fn no_store() -> [(header::HeaderName, HeaderValue); 1] {
    [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))]
}

// ------------------------------------------------------------------ tenants

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterTenant {
    company_name: CompanyName,
    admin_email: Email,
    admin_password: Password,
    /// Default basic.
    #[serde(default)]
    tier: Option<Tier>,
}

#[utoipa::path(post, path = "/tenants", tag = "tenants", operation_id = "RegisterTenant",
    request_body = RegisterTenant,
    responses((status = 201, body = TokenResponse, description = "the tenant, its first ADMIN, and their tokens",
        headers(("Location" = String, description = "the tenant's path")))),
    security(()))]
pub async fn register_tenant(
    State(state): State<AppState>,
    Ids(ids): Ids,
    body: JsonBody<RegisterTenant>,
) -> Result<Response, ApiError> {
    let b = body.value;
    let signed_in = state
        .access
        .register_tenant(
            ids,
            b.company_name,
            b.admin_email,
            b.admin_password.into_string(),
            b.tier.unwrap_or_default(),
        )
        .await?;
    let location = format!("/tenants/{}", signed_in.tenant_id);
    let body = tokens(&state, signed_in)?;
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, v);
    }
    Ok((StatusCode::CREATED, headers, Json(body)).into_response())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TierLimits {
    max_products: u32,
    max_orders: u32,
    max_users: u32,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TierFeatures {
    advanced_analytics: bool,
    custom_branding: bool,
    api_access: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantUsage {
    /// Active (not disabled) users: what `max_users` counts.
    users: u32,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Tenant)]
pub struct TenantView {
    tenant_id: String,
    company_name: String,
    admin_email: String,
    /// basic, premium or enterprise.
    tier: String,
    /// active, suspended or deleted.
    status: String,
    #[schema(value_type = Object)]
    settings: Value,
    limits: TierLimits,
    features: TierFeatures,
    usage: TenantUsage,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: u64,
}

fn tenant_view(t: &Tenant, version: u64) -> Result<TenantView, ApiError> {
    let r = t
        .registered
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("no such tenant".into()))?;
    let limits = t.limits();
    let features = t.tier.features();
    Ok(TenantView {
        tenant_id: r.tenant_id.clone(),
        company_name: t
            .company_name
            .as_ref()
            .map_or_else(String::new, |n| n.as_str().to_owned()),
        admin_email: r.admin_email.clone(),
        tier: t.tier.as_str().to_owned(),
        status: t.status.as_str().to_owned(),
        settings: t.settings.as_value().clone(),
        limits: TierLimits {
            max_products: limits.max_products,
            max_orders: limits.max_orders,
            max_users: limits.max_users,
        },
        features: TierFeatures {
            advanced_analytics: features.advanced_analytics,
            custom_branding: features.custom_branding,
            api_access: features.api_access,
        },
        usage: TenantUsage {
            users: u32::try_from(t.seats.len()).unwrap_or(u32::MAX),
        },
        created_at: r.registered_at,
        updated_at: t.updated_at.unwrap_or(r.registered_at),
        version,
    })
}

/// The caller's own tenant; any other id is 404, whether it exists or not.
fn own_tenant(p: &Principal, id: &str) -> Result<TenantId, ApiError> {
    if id != p.tenant_id.as_str() {
        return Err(ApiError::NotFound("no such tenant".into()));
    }
    Ok(p.tenant_id.clone())
}

#[utoipa::path(get, path = "/tenants/{id}", tag = "tenants", operation_id = "GetTenant",
    params(("id" = TenantId, Path, description = "the caller's own tenant; any other is 404")),
    responses((status = 200, body = TenantView, headers(("ETag" = String, description = "the tenant's version")))),
    security(("bearer" = [])))]
pub async fn get_tenant(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let tenant = own_tenant(&principal, &id)?;
    let (t, version) = state.access.tenant(&tenant).await?;
    Ok((
        write_headers(None, version),
        Json(tenant_view(&t, version)?),
    )
        .into_response())
}

/// Absent fields stay as they are.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct UpdateTenant {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    company_name: Option<CompanyName>,
    /// Replaces the current settings.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    settings: Option<Settings>,
    /// A downgrade below the users in use is refused (403 limit-reached).
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    tier: Option<Tier>,
}

/// A field that is present: `null` is refused, never taken for "absent".
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[utoipa::path(put, path = "/tenants/{id}", tag = "tenants", operation_id = "UpdateTenant",
    request_body = UpdateTenant,
    params(("id" = TenantId, Path, description = "the caller's own tenant; any other is 404"), IfMatch),
    responses((status = 200, body = TenantView, headers(("ETag" = String, description = "the tenant's version"))),
        (status = 403, body = Problem, description = "not ADMIN; a feature or a limit of the tier (feature-unavailable, limit-reached)")),
    security(("bearer" = ["ADMIN"])))]
pub async fn update_tenant(
    State(state): State<AppState>,
    principal: Principal,
    Ids(ids): Ids,
    PathId(id): PathId,
    IfMatch(if_match): IfMatch,
    body: JsonBody<UpdateTenant>,
) -> Result<Response, ApiError> {
    let tenant = own_tenant(&principal, &id)?;
    let b = body.value;
    if b.company_name.is_none() && b.settings.is_none() && b.tier.is_none() {
        return Err(ApiError::Validation {
            field: "body".into(),
            detail: "send at least one of company_name, settings, tier".into(),
        });
    }
    let command = TenantCommand::Update {
        company_name: b.company_name,
        settings: b.settings,
        tier: b.tier,
    };
    let done = state
        .commands
        .execute::<Tenant>(
            &meta(&principal, ids, None),
            &tenant_stream(&tenant),
            &command,
            if_match,
        )
        .await?;
    state.tenants.remember(&tenant, &done.state);
    Ok((
        write_headers(None, done.version),
        Json(tenant_view(&done.state, done.version)?),
    )
        .into_response())
}

#[utoipa::path(delete, path = "/tenants/{id}", tag = "tenants", operation_id = "DeleteTenant",
    params(("id" = TenantId, Path, description = "the caller's own tenant; any other is 404")),
    responses((status = 204, description = "deleted (soft): the events stay; every later call with the tenant's tokens is 403")),
    security(("bearer" = ["ADMIN"])))]
pub async fn delete_tenant(
    State(state): State<AppState>,
    principal: Principal,
    Ids(ids): Ids,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let tenant = own_tenant(&principal, &id)?;
    let done = state
        .commands
        .execute::<Tenant>(
            &meta(&principal, ids, None),
            &tenant_stream(&tenant),
            &TenantCommand::Delete,
            None,
        )
        .await?;
    state.tenants.remember(&tenant, &done.state);
    tracing::warn!(tenant_id = %tenant, user_id = %principal.actor.user_id, "tenant deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ------------------------------------------------------------------ users

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    email: Email,
    password: Password,
    /// Default MEMBER.
    #[serde(default)]
    role: Option<Role>,
}

fn user_view(p: &Principal, done: &UserState) -> Result<UserView, ApiError> {
    UserView::from_state(p.tenant_id.as_str(), &done.user, done.version)
        .ok_or_else(|| ApiError::internal("a user command left no user to show"))
}

fn user_headers(done: &UserState) -> HeaderMap {
    write_headers(done.token.as_ref(), done.version)
}

#[utoipa::path(post, path = "/users", tag = "users", operation_id = "RegisterUser",
    request_body = CreateUser, params(IdempotencyKey),
    responses((status = 201, body = UserView, description = "created", headers(
            ("X-Consistency-Token" = String, description = "send it with a query to read this write"),
            ("ETag" = String, description = "the user's version"),
            ("Location" = String, description = "the user's path"))),
        (status = 403, body = Problem, description = "not ADMIN, or the tier's max_users is reached"),
        (status = 409, body = Problem, description = "the email is already registered")),
    security(("bearer" = ["ADMIN"])))]
pub async fn create_user(
    State(state): State<AppState>,
    principal: Principal,
    Ids(ids): Ids,
    idempotency: IdempotencyKey,
    body: JsonBody<CreateUser>,
) -> Result<Response, ApiError> {
    let b = body.value;
    let email = b.email;
    let role = b.role.unwrap_or(Role::Member);
    // The request is identified by email and role: the password must not be part of a
    // fast hash kept in the store.
    let identity = format!("{}\n{}", email.as_str(), role.as_str());
    let idem = idempotency.with_request(
        "POST /users",
        principal.actor.user_id.as_str(),
        identity.as_bytes(),
    );
    let done = state
        .access
        .register_user(
            &meta(&principal, ids, idem),
            email,
            b.password.into_string(),
            role,
        )
        .await?;
    let view = user_view(&principal, &done)?;
    let mut headers = user_headers(&done);
    if let Ok(v) = HeaderValue::from_str(&format!("/users/{}", view.user_id)) {
        headers.insert(header::LOCATION, v);
    }
    Ok((StatusCode::CREATED, headers, Json(view)).into_response())
}

/// Absent fields stay as they are.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct UpdateUser {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    role: Option<Role>,
    /// A disabled user cannot sign in, and frees a seat.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    disabled: Option<bool>,
}

fn user_id(id: &str) -> Result<UserId, ApiError> {
    UserId::parse(id).map_err(|_| ApiError::NotFound("no such user".into()))
}

#[utoipa::path(put, path = "/users/{id}", tag = "users", operation_id = "UpdateUser",
    request_body = UpdateUser, params(("id" = UserId, Path)),
    responses((status = 200, body = UserView, headers(
            ("X-Consistency-Token" = String, description = "send it with a query to read this write"),
            ("ETag" = String, description = "the user's version"))),
        (status = 409, body = Problem, description = "an ADMIN demoting or disabling themselves")),
    security(("bearer" = ["ADMIN"])))]
pub async fn update_user(
    State(state): State<AppState>,
    principal: Principal,
    Ids(ids): Ids,
    PathId(id): PathId,
    body: JsonBody<UpdateUser>,
) -> Result<Response, ApiError> {
    let user = user_id(&id)?;
    let b = body.value;
    if b.role.is_none() && b.disabled.is_none() {
        return Err(ApiError::Validation {
            field: "body".into(),
            detail: "send at least one of role, disabled".into(),
        });
    }
    let done = state
        .access
        .update_user(&meta(&principal, ids, None), &user, b.role, b.disabled)
        .await?;
    let view = user_view(&principal, &done)?;
    Ok((StatusCode::OK, user_headers(&done), Json(view)).into_response())
}

#[utoipa::path(get, path = "/users/{id}", tag = "users", operation_id = "GetUser",
    params(("id" = UserId, Path), Consistency),
    responses((status = 200, body = UserView)),
    security(("bearer" = [])))]
pub async fn get_user(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    Consistency(token): Consistency,
) -> Result<Json<UserView>, ApiError> {
    user_id(&id)?;
    let user = row_of(&state, &principal, USERS, &id, token, "no such user").await?;
    Ok(Json(user))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserListParams {
    #[param(inline)]
    role: Option<Role>,
    #[param(inline)]
    limit: Option<PageLimit>,
    #[param(inline)]
    cursor: Option<Cursor>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserPage {
    items: Vec<UserView>,
    next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/users", tag = "users", operation_id = "ListUsers",
    params(UserListParams, Consistency),
    responses((status = 200, body = UserPage)),
    security(("bearer" = [])))]
pub async fn list_users(
    State(state): State<AppState>,
    principal: Principal,
    QueryParams(params): QueryParams<UserListParams>,
    Consistency(token): Consistency,
) -> Result<Json<UserPage>, ApiError> {
    let mut filters = Vec::new();
    if let Some(r) = params.role {
        filters.push(("role".to_owned(), r.as_str().to_owned()));
    }
    let (items, next_cursor) = page_of(
        &state,
        &principal,
        USERS,
        filters,
        params.limit,
        params.cursor,
        token,
    )
    .await?;
    Ok(Json(UserPage { items, next_cursor }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInvitation {
    /// Default MEMBER.
    #[serde(default)]
    role: Option<Role>,
    /// When given, only this address may accept.
    #[serde(default)]
    email: Option<Email>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InvitationView {
    invitation_id: String,
    /// Shown once: pass it to `/auth/signup` with the tenant id. Single use.
    code: String,
    tenant_id: String,
    role: String,
    email: Option<String>,
    expires_at: DateTime<Utc>,
}

#[utoipa::path(post, path = "/users/invitations", tag = "users", operation_id = "InviteUser",
    request_body = CreateInvitation,
    responses((status = 201, body = InvitationView)),
    security(("bearer" = ["ADMIN"])))]
pub async fn create_invitation(
    State(state): State<AppState>,
    principal: Principal,
    Ids(ids): Ids,
    body: JsonBody<CreateInvitation>,
) -> Result<Response, ApiError> {
    let b = body.value;
    let role = b.role.unwrap_or(Role::Member);
    let email = b.email;
    let issued = state
        .access
        .issue_invitation(&meta(&principal, ids, None), role, email)
        .await?;
    let view = InvitationView {
        invitation_id: issued.invitation_id,
        code: issued.code,
        tenant_id: principal.tenant_id.to_string(),
        role: issued.role.as_str().to_owned(),
        email: issued.email.map(|e| e.as_str().to_owned()),
        expires_at: issued.expires_at,
    };
    Ok((StatusCode::CREATED, no_store(), Json(view)).into_response())
}

// ------------------------------------------------------------------ auth

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
    /// The code an ADMIN issued at `POST /users/invitations`.
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

/// The routes of `/tenants`, each declared once by its handler's `#[utoipa::path]`.
pub fn tenant_routes() -> Routes {
    Routes::new()
        .routes(utoipa_axum::routes!(register_tenant))
        .routes(utoipa_axum::routes!(
            get_tenant,
            update_tenant,
            delete_tenant
        ))
}

/// The routes of `/users`.
pub fn user_routes() -> Routes {
    Routes::new()
        .routes(utoipa_axum::routes!(list_users, create_user))
        .routes(utoipa_axum::routes!(get_user, update_user))
        .routes(utoipa_axum::routes!(create_invitation))
}

/// The routes of `/auth`.
pub fn auth_routes() -> Routes {
    Routes::new()
        .routes(utoipa_axum::routes!(sign_up))
        .routes(utoipa_axum::routes!(sign_in))
        .routes(utoipa_axum::routes!(refresh))
        .routes(utoipa_axum::routes!(sign_out))
}
