//! `/tenants` (seed 003): public sign-up, and the caller's own tenant: plan, limits,
//! features, usage, settings, deletion. Any other tenant's id is 404.

use crate::app::{AppState, Routes};
use crate::auth::TokenResponse;
use crate::error::{ApiError, Problem};
use crate::extract::{Ids, IfMatch, JsonBody, PathId, present};
use crate::query::{meta, write_headers};
use crate::tokens::Principal;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use commands::access::tenant_stream;
use domain::tenant::{CompanyName, Settings, Tenant, TenantCommand};
use domain::user::{Email, Password};
use domain::{TenantId, Tier};
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
    params(("X-Refresh-Cookie" = Option<String>, Header, description = "`1`: the refresh token is set as an HttpOnly cookie for `/auth`, not in the body")),
    responses((status = 201, body = TokenResponse, description = "the tenant, its first ADMIN, and their tokens",
        headers(("Location" = String, description = "the tenant's path")))),
    security(()))]
pub async fn register_tenant(
    State(state): State<AppState>,
    Ids(ids): Ids,
    headers: HeaderMap,
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
    let mut response = crate::auth::signed_in(&state, &headers, StatusCode::CREATED, signed_in)?;
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TierLimits {
    max_products: u32,
    max_orders: u32,
    max_users: u32,
    /// The longest AI prompt, in characters.
    max_prompt_chars: u32,
    /// AI tokens the month's completed queries may use.
    ai_tokens_per_month: u64,
    /// Cases each customer may open through the portal in any hour.
    cases_per_customer_per_hour: u32,
    /// Emails `POST /messages` may queue in a calendar day (UTC).
    messages_per_day: u32,
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
    /// The calendar month (UTC) of the AI figures, e.g. `2026-12`.
    ai_month: String,
    /// AI tokens used this month by completed queries: what `ai_tokens_per_month` counts.
    ai_tokens: u64,
    /// AI queries completed this month.
    ai_queries: u64,
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

fn tenant_view(
    t: &Tenant,
    version: u64,
    (month, ai): (String, domain::ai_usage::AiUsage),
) -> Result<TenantView, ApiError> {
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
            max_prompt_chars: limits.max_prompt_chars,
            ai_tokens_per_month: limits.ai_tokens_per_month,
            cases_per_customer_per_hour: limits.cases_per_customer_per_hour,
            messages_per_day: limits.messages_per_day,
        },
        features: TierFeatures {
            advanced_analytics: features.advanced_analytics,
            custom_branding: features.custom_branding,
            api_access: features.api_access,
        },
        usage: TenantUsage {
            users: u32::try_from(t.seats.len()).unwrap_or(u32::MAX),
            ai_month: month,
            ai_tokens: ai.tokens,
            ai_queries: ai.queries,
        },
        created_at: r.registered_at,
        updated_at: t.updated_at.unwrap_or(r.registered_at),
        version,
    })
}

/// The month's AI usage, as `GET /tenants/{id}` shows it.
async fn ai_usage(
    state: &AppState,
    tenant: &TenantId,
) -> Result<(String, domain::ai_usage::AiUsage), ApiError> {
    let now = state.commands.now();
    let usage = commands::ai::month_usage(&state.commands, tenant, now).await?;
    Ok((domain::quota::month_of(now), usage))
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
        Json(tenant_view(&t, version, ai_usage(&state, &tenant).await?)?),
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
        Json(tenant_view(
            &done.state,
            done.version,
            ai_usage(&state, &tenant).await?,
        )?),
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

/// The routes of `/tenants`, each declared once by its handler's `#[utoipa::path]`.
pub fn routes() -> Routes {
    Routes::new()
        .routes(utoipa_axum::routes!(register_tenant))
        .routes(utoipa_axum::routes!(
            get_tenant,
            update_tenant,
            delete_tenant
        ))
}
