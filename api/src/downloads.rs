//! `/downloads/<token>`: the signed links of the portal's document downloads. The token
//! (HS256, its own issuer) names one document of one customer and expires five minutes
//! after it was made; its id is redeemed once (a reservation in the event store, with
//! the DocumentAccessed of the download in the same append), so a reused link is refused
//! wherever it is presented. The bytes stream from Salesforce (the ContentVersion's
//! VersionData) through to the client, chunk by chunk: the file is never held whole.

use crate::app::{AppState, Routes};
use crate::customer_documents::log_access;
use crate::error::{ApiError, Problem};
use crate::extract::Ids;
use crate::tokens::Principal;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::document::{AccessKind, RecordAccess};
use domain::{Actor, Role, TenantId, Tier, UserId};
use futures::StreamExt;

fn forbidden(why: &str) -> ApiError {
    ApiError::Forbidden(why.to_owned())
}

/// `attachment; filename="<title>.<ext>"`, with what a header cannot hold replaced.
fn disposition(title: &str, extension: Option<&str>) -> HeaderValue {
    let mut name: String = title
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .filter(|c| *c != '"' && *c != '\\')
        .collect();
    if name.trim().is_empty() {
        name = "document".into();
    }
    if let Some(ext) = extension.filter(|e| e.bytes().all(|b| b.is_ascii_alphanumeric())) {
        name = format!("{name}.{ext}");
    }
    HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

#[utoipa::path(get, path = "/downloads/{token}", tag = "portal", operation_id = "DownloadByLink",
    params(("token" = String, Path, description = "as the 302 of a document's download gave it")),
    responses((status = 200, description = "the file's bytes, streamed from Salesforce; the download is logged (DocumentAccessed)",
            content_type = "application/octet-stream"),
        (status = 403, body = Problem, description = "the link is expired, used already, or altered; nothing is streamed"),
        (status = 503, body = Problem, description = "Salesforce could not serve the file; the link was not used")),
    security(()))]
pub async fn fetch(
    State(state): State<AppState>,
    Ids(ids): Ids,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let claims = state.keys.verify_download(&token)?;
    let tenant = TenantId::parse(claims.tenant_id.clone())
        .map_err(|_| forbidden("the download link is not valid"))?;
    let user = UserId::parse(claims.sub.clone())
        .map_err(|_| forbidden("the download link is not valid"))?;
    let sf = state.salesforce.as_ref().ok_or_else(|| {
        ApiError::NotConfigured("Salesforce is not configured on this server".into())
    })?;
    let connection = commands::customers::connection(&state.commands, &tenant)
        .await?
        .ok_or_else(|| ApiError::Unavailable("the tenant has no Salesforce connection".into()))?;
    let org = commands::customers::Org {
        tenant: tenant.clone(),
        connection,
    };
    // A used link is refused before Salesforce is asked (the reservation below still
    // decides a race between two first uses).
    let (_, used) = state
        .commands
        .state::<domain::document::DownloadLink>(
            &tenant,
            &commands::documents::link_stream(&claims.jti),
        )
        .await
        .map_err(|e| e.map_rejected(commands::documents::DocumentError::from))?;
    if used > 0 {
        return Err(forbidden("the download link was already used"));
    }
    // The answer's head next: a Salesforce that fails leaves the link unused.
    let file = sf
        .crm
        .version_data(&org, &claims.version_id)
        .await
        .map_err(|e| ApiError::Unavailable(format!("Salesforce could not serve the file: {e}")))?;
    let principal = Principal {
        tenant_id: tenant.clone(),
        actor: Actor {
            user_id: user,
            role: Role::parse(&claims.role).unwrap_or(Role::Customer),
        },
        customer_id: Some(claims.customer_id.clone()),
        tier: Tier::default(),
        scope: crate::scope::ClientScope::All,
    };
    let access = RecordAccess {
        kind: AccessKind::Downloaded,
        document_ids: vec![claims.document_id.clone()],
        request_id: ids.correlation_id.to_string(),
    };
    log_access(
        &state,
        &principal,
        ids,
        &claims.customer_id,
        access,
        Some(claims.jti.clone()),
    )
    .await?;
    let title = state
        .views
        .get(projections::documents::VIEW, &tenant, &claims.document_id)
        .await
        .ok()
        .flatten()
        .and_then(|r| r.doc)
        .and_then(|d| serde_json::from_value::<projections::documents::DocumentView>(d).ok());
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        file.content_type
            .as_deref()
            .and_then(|t| HeaderValue::from_str(t).ok())
            .unwrap_or_else(|| HeaderValue::from_static("application/octet-stream")),
    );
    if let Some(len) = file.length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    if let Some(d) = &title {
        headers.insert(
            header::CONTENT_DISPOSITION,
            disposition(&d.title, d.file_extension.as_deref()),
        );
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    tracing::info!(tenant_id = %tenant, customer_id = %claims.customer_id, document_id = %claims.document_id, "document downloaded");
    let body = Body::from_stream(
        file.chunks
            .map(|c| c.map_err(|e| std::io::Error::other(e.to_string()))),
    );
    Ok((StatusCode::OK, headers, body).into_response())
}

/// The route of `/downloads`.
pub fn routes() -> Routes {
    Routes::new().routes(utoipa_axum::routes!(fetch))
}
