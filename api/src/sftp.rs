//! `/integrations/sftp` (seed 002's external system): an ADMIN connects the tenant's SFTP
//! server (checked by logging in and listing both directories, the host key pinned by
//! its fingerprint), reads it back without its secret, removes it; runs the import
//! (`POST /integrations/sftp/run`, one run per tenant at a time) and reads the runs.

use crate::app::{AppState, Routes};
use crate::error::{ApiError, Problem};
use crate::extract::{Consistency, Ids, JsonBody, PathId, QueryParams};
use crate::query::{Cursor, PageLimit, meta, page_of, row_of, write_headers};
use crate::tokens::Principal;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use commands::attempts::CallFailure;
use commands::sftp::{
    Endpoint, FileServer, StartImport, configure, connection_of, import_stream, remove,
};
use domain::sftp::{
    AuthMethod, HostKeyFingerprint, ImportStatus, ImportTrigger, PrivateKeyPem, RemoteDir,
    Schedule, SftpConfigured, SftpHost, SftpPassword, SftpUser,
};
use projections::sftp_imports::{SftpImportView, VIEW};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;

/// Sealing of SFTP secrets and the client that checks a connection.
#[derive(Clone)]
pub struct SftpAccess {
    pub secrets: infra::secrets::SecretBox,
    pub server: Arc<dyn FileServer>,
}

fn access(state: &AppState) -> Result<&SftpAccess, ApiError> {
    state.sftp.as_ref().ok_or_else(|| {
        ApiError::NotConfigured(
            "SFTP connections need a secrets key: set CHRONICLE_SECRETS_KEY".into(),
        )
    })
}

fn default_port() -> u16 {
    22
}

/// `password` or `private_key`, not both.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SftpConnectBody)]
pub struct ConnectBody {
    host: SftpHost,
    #[serde(default = "default_port")]
    #[schema(default = 22, minimum = 1, maximum = 65535)]
    port: u16,
    username: SftpUser,
    #[serde(default)]
    password: Option<SftpPassword>,
    #[serde(default)]
    private_key: Option<PrivateKeyPem>,
    host_key_fingerprint: HostKeyFingerprint,
    inbox_dir: RemoteDir,
    processed_dir: RemoteDir,
    /// `off`, or how often the import runs: `15m`, `1h` (the default), `1d`.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "1h")]
    schedule: Option<String>,
}

/// The connection as it is stored, without its secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = SftpConnection)]
pub struct ConnectionView {
    host: String,
    port: u16,
    username: String,
    /// `password` or `private_key`; the secret itself is never shown.
    auth: String,
    host_key_fingerprint: String,
    inbox_dir: String,
    processed_dir: String,
    schedule: String,
    configured_by: String,
    configured_at: chrono::DateTime<chrono::Utc>,
}

impl ConnectionView {
    fn of(c: &SftpConfigured) -> Self {
        Self {
            host: c.host.as_str().to_owned(),
            port: c.port,
            username: c.username.as_str().to_owned(),
            auth: match c.auth {
                AuthMethod::Password => "password",
                AuthMethod::PrivateKey => "private_key",
            }
            .to_owned(),
            host_key_fingerprint: c.host_key_fingerprint.as_str().to_owned(),
            inbox_dir: c.inbox_dir.as_str().to_owned(),
            processed_dir: c.processed_dir.as_str().to_owned(),
            schedule: c.schedule.render(),
            configured_by: c.configured_by.to_string(),
            configured_at: c.configured_at,
        }
    }
}

/// A failed check as a 422 naming what to fix.
fn refused(field: &str, e: CallFailure) -> ApiError {
    let reason = e.to_string();
    let field = if reason.starts_with("host_key_fingerprint:") {
        "host_key_fingerprint"
    } else if reason.starts_with("the server refused") {
        "password"
    } else if reason.starts_with("private_key:") {
        "private_key"
    } else {
        field
    };
    ApiError::Validation {
        field: field.to_owned(),
        detail: if reason.starts_with(field) {
            reason
        } else {
            format!("{field}: {reason}")
        },
    }
}

#[utoipa::path(put, path = "/integrations/sftp", tag = "integrations", operation_id = "ConnectSftp",
    request_body = ConnectBody,
    responses((status = 200, body = ConnectionView, description = "connected: the server showed the pinned host key, took the credentials and has both directories"),
        (status = 422, body = Problem, description = "an invalid field; a host key that does not match (`field` host_key_fingerprint); refused credentials; a server that cannot be reached (`field` host); a missing directory")),
    security(("bearer" = ["ADMIN"])))]
pub async fn put_connection(
    State(state): State<AppState>,
    principal: Principal,
    Ids(ids): Ids,
    body: JsonBody<ConnectBody>,
) -> Result<Response, ApiError> {
    let sftp = access(&state)?;
    let b = body.value;
    let (auth, secret) = match (&b.password, &b.private_key) {
        (Some(p), None) => (AuthMethod::Password, p.expose()),
        (None, Some(k)) => (AuthMethod::PrivateKey, k.expose()),
        _ => {
            return Err(ApiError::Validation {
                field: "password".into(),
                detail: "password: give a password or a private_key (one of them)".into(),
            });
        }
    };
    let schedule = b
        .schedule
        .as_deref()
        .map(Schedule::parse)
        .transpose()?
        .unwrap_or_default();
    let config = SftpConfigured {
        host: b.host,
        port: b.port.max(1),
        username: b.username,
        auth,
        secret: sftp.secrets.seal(secret),
        host_key_fingerprint: b.host_key_fingerprint,
        inbox_dir: b.inbox_dir,
        processed_dir: b.processed_dir,
        schedule,
        configured_by: principal.actor.user_id.clone(),
        configured_at: state.commands.now(),
    };
    let session = sftp
        .server
        .connect(&Endpoint::of(&config))
        .await
        .map_err(|e| refused("host", e))?;
    for (field, dir) in [
        ("inbox_dir", &config.inbox_dir),
        ("processed_dir", &config.processed_dir),
    ] {
        session
            .list(dir.as_str())
            .await
            .map_err(|e| refused(field, e))?;
    }
    let stored = configure(&state.commands, &meta(&principal, ids, None), config).await?;
    tracing::info!(tenant_id = %principal.tenant_id, host = stored.host.as_str(), "SFTP connection configured");
    Ok(Json(ConnectionView::of(&stored)).into_response())
}

#[utoipa::path(get, path = "/integrations/sftp", tag = "integrations", operation_id = "GetSftpConnection",
    responses((status = 200, body = ConnectionView),
        (status = 404, body = Problem, description = "the tenant has no SFTP connection")),
    security(("bearer" = ["ADMIN"])))]
pub async fn get_connection(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<ConnectionView>, ApiError> {
    let c = connection_of(&state.commands, &principal.tenant_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("the tenant has no SFTP connection".into()))?;
    Ok(Json(ConnectionView::of(&c)))
}

#[utoipa::path(delete, path = "/integrations/sftp", tag = "integrations", operation_id = "RemoveSftpConnection",
    responses((status = 204, description = "removed; imports done stay"),
        (status = 404, body = Problem, description = "the tenant has no SFTP connection")),
    security(("bearer" = ["ADMIN"])))]
pub async fn delete_connection(
    State(state): State<AppState>,
    principal: Principal,
    Ids(ids): Ids,
) -> Result<StatusCode, ApiError> {
    remove(&state.commands, &meta(&principal, ids, None)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunStarted {
    import_id: String,
    /// RUNNING: read `GET /integrations/sftp/imports/{id}` (the `Location`).
    status: ImportStatus,
}

#[utoipa::path(post, path = "/integrations/sftp/run", tag = "integrations", operation_id = "RunSftpImport",
    responses((status = 202, body = RunStarted, description = "started: the worker imports the inbox", headers(
            ("X-Consistency-Token" = String, description = "send it with a query to read this write"),
            ("Location" = String, description = "the run's path"))),
        (status = 404, body = Problem, description = "the tenant has no SFTP connection"),
        (status = 409, body = Problem, description = "a run is under way; one per tenant at a time")),
    security(("bearer" = ["ADMIN"])))]
pub async fn run(
    State(state): State<AppState>,
    principal: Principal,
    Ids(ids): Ids,
) -> Result<Response, ApiError> {
    let id = Uuid::now_v7().to_string();
    let command = StartImport {
        import_id: id.clone(),
        trigger: ImportTrigger::Manual,
    };
    let ran = state
        .commands
        .run(&meta(&principal, ids, None), &command)
        .await?;
    let stream = import_stream(&id);
    let mut headers = write_headers(
        ran.token_for(&stream).as_ref(),
        ran.version_of(&stream).unwrap_or(1),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("/integrations/sftp/imports/{id}")) {
        headers.insert(header::LOCATION, v);
    }
    let body = RunStarted {
        import_id: id,
        status: ImportStatus::Running,
    };
    Ok((StatusCode::ACCEPTED, headers, Json(body)).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    #[param(inline)]
    status: Option<ImportStatus>,
    #[param(inline)]
    limit: Option<PageLimit>,
    #[param(inline)]
    cursor: Option<Cursor>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportPage {
    items: Vec<SftpImportView>,
    next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/integrations/sftp/imports", tag = "integrations", operation_id = "ListSftpImports",
    params(ListParams, Consistency),
    responses((status = 200, body = ImportPage, description = "the tenant's runs, oldest first")),
    security(("bearer" = ["ADMIN"])))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    QueryParams(params): QueryParams<ListParams>,
    Consistency(token): Consistency,
) -> Result<Json<ImportPage>, ApiError> {
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
    Ok(Json(ImportPage { items, next_cursor }))
}

#[utoipa::path(get, path = "/integrations/sftp/imports/{id}", tag = "integrations", operation_id = "GetSftpImport",
    params(("id" = Uuid, Path), Consistency),
    responses((status = 200, body = SftpImportView, headers(("ETag" = String, description = "the run's version"))),
        (status = 404, body = Problem, description = "no such run")),
    security(("bearer" = ["ADMIN"])))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    Consistency(token): Consistency,
) -> Result<Response, ApiError> {
    let id = crate::extract::canonical_uuid(&id, "no such import")?;
    let view: SftpImportView =
        row_of(&state, &principal, VIEW, &id, token, "no such import").await?;
    Ok((write_headers(None, view.version), Json(view)).into_response())
}

/// The routes of `/integrations/sftp`, each declared once by its handler's `#[utoipa::path]`.
pub fn routes() -> Routes {
    Routes::new()
        .routes(utoipa_axum::routes!(
            put_connection,
            get_connection,
            delete_connection
        ))
        .routes(utoipa_axum::routes!(run))
        .routes(utoipa_axum::routes!(list))
        .routes(utoipa_axum::routes!(get))
}
