//! `/customer/{id}/documents` (seed 001's portal): the files linked to a customer's Account
//! in Salesforce, as the sync last read them, listed for the customer's CUSTOMER users (or
//! staff). A download answers 302 to a signed link (`downloads`) that works for five
//! minutes, once, without a bearer token. Every listing is logged as DocumentAccessed in the
//! customer's access log, which the audit timeline shows.

use crate::app::{AppState, Routes};
use crate::customers::tenant_customer;
use crate::error::{ApiError, Problem};
use crate::extract::{Consistency, Ids, QueryParams};
use crate::query::{Cursor, PageLimit, meta, page_of, row_of};
use crate::tokens::{DownloadClaims, Principal};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use commands::documents::RecordDocumentAccess;
use domain::document::{AccessKind, RecordAccess};
use projections::documents::{DocumentView, VIEW};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a download link works.
pub const LINK_TTL: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    #[param(inline)]
    limit: Option<PageLimit>,
    #[param(inline)]
    cursor: Option<Cursor>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DocumentPage {
    items: Vec<DocumentView>,
    next_cursor: Option<String>,
}

/// Appends DocumentAccessed to the customer's access log.
pub(crate) async fn log_access(
    state: &AppState,
    principal: &Principal,
    ids: commands::RequestIds,
    customer_id: &str,
    access: RecordAccess,
    link: Option<String>,
) -> Result<(), ApiError> {
    let command = RecordDocumentAccess {
        customer_id: customer_id.to_owned(),
        access,
        link,
    };
    state
        .commands
        .run(&meta(principal, ids, None), &command)
        .await
        .map(|_| ())
        .map_err(|e| match e {
            commands::CommandError::Taken(_) => {
                ApiError::Forbidden("the download link was already used".into())
            }
            other => other.into(),
        })
}

#[utoipa::path(get, path = "/customer/{id}/documents", tag = "portal", operation_id = "ListCustomerDocuments",
    params(("id" = String, Path, description = "the customer's Salesforce Account Id"), ListParams, Consistency),
    responses((status = 200, body = DocumentPage, description = "the listing is logged (DocumentAccessed)", headers(
        ("X-Last-Synced" = String, description = "when the last complete Salesforce sync ended (RFC 3339), or `never`")))),
    security(("bearer" = ["CUSTOMER"])))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Ids(ids): Ids,
    QueryParams(params): QueryParams<ListParams>,
    Consistency(token): Consistency,
) -> Result<Response, ApiError> {
    let id = tenant_customer(&state, &principal, &id).await?;
    let filters = vec![("customer_id".to_owned(), id.clone())];
    let (items, next_cursor): (Vec<DocumentView>, _) = page_of(
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
    let access = RecordAccess {
        kind: AccessKind::Listed,
        document_ids: items.iter().map(|d| d.document_id.clone()).collect(),
        request_id: ids.correlation_id.to_string(),
    };
    log_access(&state, &principal, ids, &id, access, None).await?;
    let synced = crate::salesforce::last_synced(&state, &principal.tenant_id).await;
    Ok((synced, Json(DocumentPage { items, next_cursor })).into_response())
}

#[utoipa::path(get, path = "/customer/{id}/documents/{document_id}/download", tag = "portal",
    operation_id = "DownloadCustomerDocument",
    params(("id" = String, Path, description = "the customer's Salesforce Account Id"),
        ("document_id" = String, Path, description = "the ContentDocument Id")),
    responses((status = 302, description = "to a signed link that serves the file for five minutes, once, without a bearer token",
            headers(("Location" = String, description = "`/downloads/<token>`"))),
        (status = 404, body = Problem, description = "no such document of this customer")),
    security(("bearer" = ["CUSTOMER"])))]
pub async fn download(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, document_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = tenant_customer(&state, &principal, &id).await?;
    let document_id = crate::customers::salesforce_id(&document_id, "no such document")?;
    let doc: DocumentView = row_of(
        &state,
        &principal,
        VIEW,
        &document_id,
        None,
        "no such document",
    )
    .await?;
    if doc.customer_id != id {
        return Err(ApiError::NotFound("no such document".into()));
    }
    let claims = DownloadClaims {
        iss: String::new(),
        sub: principal.actor.user_id.to_string(),
        role: principal.actor.role.as_str().to_owned(),
        tenant_id: principal.tenant_id.to_string(),
        customer_id: id,
        document_id: doc.document_id,
        version_id: doc.salesforce_version_id,
        jti: uuid::Uuid::new_v4().simple().to_string(),
        exp: 0,
        iat: 0,
    };
    let token = state
        .keys
        .sign_download(claims, LINK_TTL)
        .map_err(ApiError::internal)?;
    let location =
        HeaderValue::from_str(&format!("/downloads/{token}")).map_err(ApiError::internal)?;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response())
}

/// The routes of `/customer/{id}/documents`.
pub fn routes() -> Routes {
    Routes::new()
        .routes(utoipa_axum::routes!(list))
        .routes(utoipa_axum::routes!(download))
}
