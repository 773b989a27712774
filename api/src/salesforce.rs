//! `/salesforce` (seed 000's admin-only sync, seed 001's Salesforce as the source of
//! truth): each tenant connects its own org; an ADMIN starts a full sync, answered 202 at
//! once, and the sync worker runs it; anyone of the tenant follows the runs.

use crate::app::{AppState, Routes};
use crate::error::{ApiError, Problem};
use crate::extract::{Consistency, Ids, JsonBody, PathId, QueryParams};
use crate::query::{Cursor, PageLimit, meta, page_of, row_of, write_headers};
use crate::tokens::Principal;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use commands::customers::{CrmError, CrmSource, Org, StartSync, connect, connection, sync_stream};
use domain::customer_sync::{SyncMode, SyncStatus};
use domain::salesforce::{
    ApiVersion, ClientId, ConnectionCommand, ExternalIdField, LoginUrl, SalesforceConnected,
};
use domain::user::Secret;
use projections::customer_syncs::{SyncView, VIEW};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;

/// What the API needs to connect orgs: the key that seals client secrets, and the client
/// that checks credentials.
#[derive(Clone)]
pub struct SalesforceAccess {
    pub secrets: infra::secrets::SecretBox,
    pub crm: Arc<dyn CrmSource>,
    /// The client's circuits, for `/ready`.
    pub breaker: Arc<infra::salesforce::CircuitBreaker>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectBody {
    login_url: LoginUrl,
    client_id: ClientId,
    /// Kept encrypted; never shown again.
    client_secret: Secret,
    #[serde(default)]
    api_version: Option<ApiVersion>,
    #[serde(default)]
    case_external_id_field: Option<ExternalIdField>,
}

/// The connection, without its secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = SalesforceConnection)]
pub struct ConnectionView {
    login_url: String,
    client_id: String,
    api_version: String,
    /// The External ID field of Case that portal cases are upserted on.
    case_external_id_field: String,
    connected_by: String,
    connected_at: DateTime<Utc>,
}

impl ConnectionView {
    fn of(c: &SalesforceConnected) -> Self {
        Self {
            login_url: c.login_url.as_str().to_owned(),
            client_id: c.client_id.as_str().to_owned(),
            api_version: c.api_version.as_str().to_owned(),
            case_external_id_field: c.case_external_id_field.as_str().to_owned(),
            connected_by: c.connected_by.to_string(),
            connected_at: c.connected_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SyncStarted {
    sync_id: String,
    /// RUNNING: follow it at `GET /salesforce/sync/{id}` (the `Location`).
    status: SyncStatus,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    #[param(inline)]
    status: Option<SyncStatus>,
    #[param(inline)]
    limit: Option<PageLimit>,
    #[param(inline)]
    cursor: Option<Cursor>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SyncPage {
    items: Vec<SyncView>,
    next_cursor: Option<String>,
}

/// The header of a read served from what the sync brought in: when the tenant's last
/// complete sync ended (`never` before one), so a client can tell how fresh the answer is
/// while Salesforce is out of reach.
pub const LAST_SYNCED: &str = "x-last-synced";

/// `X-Last-Synced` for `tenant`: best effort, a store that fails leaves it out.
pub(crate) async fn last_synced(
    state: &AppState,
    tenant: &domain::TenantId,
) -> axum::http::HeaderMap {
    let mut headers = axum::http::HeaderMap::new();
    let slot = state
        .commands
        .tail_state::<domain::customer_sync::SyncSlot>(tenant, &commands::customers::slot_stream())
        .await;
    if let Ok((slot, _)) = slot {
        let value = slot.last_completed_at.map_or_else(
            || "never".to_owned(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
        if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
            headers.insert(LAST_SYNCED, v);
        }
    }
    headers
}

fn access(state: &AppState) -> Result<&SalesforceAccess, ApiError> {
    state.salesforce.as_ref().ok_or_else(|| {
        ApiError::NotConfigured(
            "Salesforce connections need a secrets key: set CHRONICLE_SECRETS_KEY".into(),
        )
    })
}

#[utoipa::path(put, path = "/salesforce/connection", tag = "salesforce", operation_id = "ConnectSalesforce",
    request_body = ConnectBody,
    responses((status = 200, body = ConnectionView, description = "connected: the credentials got a token"),
        (status = 422, body = Problem, description = "an invalid field, or the org refused the credentials (`field` client_secret) or could not be reached (`field` login_url)")),
    security(("bearer" = ["ADMIN"])))]
pub async fn put_connection(
    State(state): State<AppState>,
    principal: Principal,
    Ids(ids): Ids,
    body: JsonBody<ConnectBody>,
) -> Result<Response, ApiError> {
    let sf = access(&state)?;
    let b = body.value;
    let sealed = sf.secrets.seal(b.client_secret.as_str());
    let api_version = b.api_version.unwrap_or_default();
    let case_external_id_field = b.case_external_id_field.unwrap_or_default();
    let candidate = Org {
        tenant: principal.tenant_id.clone(),
        connection: SalesforceConnected {
            login_url: b.login_url.clone(),
            client_id: b.client_id.clone(),
            client_secret: sealed.clone(),
            api_version: api_version.clone(),
            case_external_id_field: case_external_id_field.clone(),
            connected_by: principal.actor.user_id.clone(),
            connected_at: state.commands.now(),
        },
    };
    sf.crm.check(&candidate).await.map_err(|e| match e {
        CrmError::Credentials(_) => ApiError::Validation {
            field: "client_secret".into(),
            detail: format!("client_secret: {e}"),
        },
        other => ApiError::Validation {
            field: "login_url".into(),
            detail: format!("login_url: {other}"),
        },
    })?;
    let command = ConnectionCommand::Connect {
        login_url: b.login_url,
        client_id: b.client_id,
        client_secret: sealed,
        api_version,
        case_external_id_field,
    };
    connect(&state.commands, &meta(&principal, ids, None), command).await?;
    tracing::info!(tenant_id = %principal.tenant_id, "Salesforce connected");
    get_connection(State(state), principal).await
}

#[utoipa::path(get, path = "/salesforce/connection", tag = "salesforce", operation_id = "GetSalesforceConnection",
    responses((status = 200, body = ConnectionView),
        (status = 404, body = Problem, description = "the tenant has no connection")),
    security(("bearer" = ["ADMIN"])))]
pub async fn get_connection(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let c = connection(&state.commands, &principal.tenant_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("the tenant has no Salesforce connection".into()))?;
    Ok(Json(ConnectionView::of(&c)).into_response())
}

#[utoipa::path(delete, path = "/salesforce/connection", tag = "salesforce", operation_id = "DisconnectSalesforce",
    responses((status = 204, description = "removed; the customers stay"),
        (status = 404, body = Problem, description = "the tenant has no connection")),
    security(("bearer" = ["ADMIN"])))]
pub async fn delete_connection(
    State(state): State<AppState>,
    principal: Principal,
    Ids(ids): Ids,
) -> Result<Response, ApiError> {
    if connection(&state.commands, &principal.tenant_id)
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound(
            "the tenant has no Salesforce connection".into(),
        ));
    }
    connect(
        &state.commands,
        &meta(&principal, ids, None),
        ConnectionCommand::Disconnect,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(post, path = "/salesforce/sync", tag = "salesforce", operation_id = "SyncCustomers",
    responses((status = 202, body = SyncStarted, description = "a full sync is running", headers(
            ("X-Consistency-Token" = String, description = "send it with a query to read this write"),
            ("Location" = String, description = "the sync's path, to follow"))),
        (status = 409, body = Problem, description = "a sync of the tenant is running (named), or the tenant has no connection")),
    security(("bearer" = ["ADMIN"])))]
pub async fn start_sync(
    State(state): State<AppState>,
    principal: Principal,
    Ids(ids): Ids,
) -> Result<Response, ApiError> {
    let id = Uuid::now_v7().to_string();
    let ran = state
        .commands
        .run(
            &meta(&principal, ids, None),
            &StartSync {
                sync_id: id.clone(),
                mode: SyncMode::Full,
            },
        )
        .await?;
    let stream = sync_stream(&id);
    let mut headers = write_headers(ran.token_for(&stream).as_ref(), 1);
    headers.remove(header::ETAG);
    if let Ok(v) = HeaderValue::from_str(&format!("/salesforce/sync/{id}")) {
        headers.insert(header::LOCATION, v);
    }
    Ok((
        StatusCode::ACCEPTED,
        headers,
        Json(SyncStarted {
            sync_id: id,
            status: SyncStatus::Running,
        }),
    )
        .into_response())
}

#[utoipa::path(get, path = "/salesforce/sync/{id}", tag = "salesforce", operation_id = "GetCustomerSync",
    params(("id" = Uuid, Path), Consistency),
    responses((status = 200, body = SyncView)),
    security(("bearer" = [])))]
pub async fn get_sync(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    Consistency(token): Consistency,
) -> Result<Response, ApiError> {
    let id = crate::extract::canonical_uuid(&id, "no such sync")?;
    let view: SyncView = row_of(&state, &principal, VIEW, &id, token, "no such sync").await?;
    Ok((write_headers(None, view.version), Json(view)).into_response())
}

#[utoipa::path(get, path = "/salesforce/syncs", tag = "salesforce", operation_id = "ListCustomerSyncs",
    params(ListParams, Consistency),
    responses((status = 200, body = SyncPage, description = "oldest first")),
    security(("bearer" = [])))]
pub async fn list_syncs(
    State(state): State<AppState>,
    principal: Principal,
    QueryParams(params): QueryParams<ListParams>,
    Consistency(token): Consistency,
) -> Result<Json<SyncPage>, ApiError> {
    let filters = params
        .status
        .map(|s| ("status".to_owned(), s.as_str().to_owned()))
        .into_iter()
        .collect();
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
    Ok(Json(SyncPage { items, next_cursor }))
}

/// The routes of `/salesforce`, each declared once by its handler's `#[utoipa::path]`.
pub fn routes() -> Routes {
    Routes::new()
        .routes(utoipa_axum::routes!(
            put_connection,
            get_connection,
            delete_connection
        ))
        .routes(utoipa_axum::routes!(start_sync))
        .routes(utoipa_axum::routes!(get_sync))
        .routes(utoipa_axum::routes!(list_syncs))
}
