//! `/users` (seed 003): the tenant's users, their roles and access, and invitations.
//!
//! Passwords arrive in request bodies and go nowhere but the argon2 hasher: request bodies
//! are never logged, and the events hold only the hash.

use crate::app::{AppState, Routes};
use crate::auth::no_store;
use crate::error::{ApiError, Problem};
use crate::extract::{Consistency, IdempotencyKey, Ids, JsonBody, PathId, QueryParams, present};
use crate::query::{Cursor, PageLimit, meta, page_of, row_of, write_headers};
use crate::tokens::Principal;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use commands::UserState;
use domain::user::{Email, Password};
use domain::{Role, UserId};
use projections::users::{UserView, VIEW as USERS};
use serde::{Deserialize, Serialize};

/// A role of the tenant's staff. Portal users (CUSTOMER) are made only by a customer's
/// portal invitation (`POST /customers/{id}/portal-invitations`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum StaffRole {
    /// Only an OWNER makes or unmakes OWNERs and ADMINs.
    Owner,
    Admin,
    Member,
}

impl From<StaffRole> for Role {
    fn from(r: StaffRole) -> Self {
        match r {
            StaffRole::Owner => Role::Owner,
            StaffRole::Admin => Role::Admin,
            StaffRole::Member => Role::Member,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    email: Email,
    password: Password,
    /// Default MEMBER.
    #[serde(default)]
    role: Option<StaffRole>,
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
    let role = b.role.map_or(Role::Member, Role::from);
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
    /// A staff user's role; a portal user's (CUSTOMER) never changes.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    role: Option<StaffRole>,
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
        .update_user(
            &meta(&principal, ids, None),
            &user,
            b.role.map(Role::from),
            b.disabled,
        )
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
        None,
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
    role: Option<StaffRole>,
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
    /// A portal invitation's customer.
    #[serde(skip_serializing_if = "Option::is_none")]
    customer_id: Option<String>,
    expires_at: DateTime<Utc>,
}

impl InvitationView {
    pub(crate) fn of(p: &Principal, issued: commands::IssuedInvitation) -> Self {
        Self {
            invitation_id: issued.invitation_id,
            code: issued.code,
            tenant_id: p.tenant_id.to_string(),
            role: issued.role.as_str().to_owned(),
            email: issued.email.map(|e| e.as_str().to_owned()),
            customer_id: issued.customer_id,
            expires_at: issued.expires_at,
        }
    }
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
    let role = b.role.map_or(Role::Member, Role::from);
    let issued = state
        .access
        .issue_invitation(&meta(&principal, ids, None), role, b.email, None)
        .await?;
    let view = InvitationView::of(&principal, issued);
    Ok((StatusCode::CREATED, no_store(), Json(view)).into_response())
}

/// The routes of `/users`.
pub fn routes() -> Routes {
    Routes::new()
        .routes(utoipa_axum::routes!(list_users, create_user))
        .routes(utoipa_axum::routes!(get_user, update_user))
        .routes(utoipa_axum::routes!(create_invitation))
}
