//! `/customers` (seed 000): the tenant's customers as synced from its Salesforce org,
//! readable by ADMIN and MEMBER.

use crate::app::{AppState, Routes};
use crate::auth::no_store;
use crate::error::ApiError;
use crate::extract::{Consistency, Ids, JsonBody, PathId, QueryParams};
use crate::query::{Cursor, PageLimit, SearchText, meta, page_of, row_of, write_headers};
use crate::tokens::Principal;
use crate::users::InvitationView;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use domain::Role;
use domain::TextRule;
use domain::user::Email;
use projections::customers::{CustomerView, VIEW};
use serde::{Deserialize, Serialize};

/// A city to filter by, as Salesforce's BillingCity has it.
#[derive(Debug)]
pub struct City(String);

impl City {
    const RULE: TextRule = TextRule {
        no_control: true,
        not_blank: true,
        ..TextRule::chars(1, 100, "the billing city, exactly")
    };
}

impl<'de> Deserialize<'de> for City {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::RULE
            .check("city", &raw)
            .map_err(|e| serde::de::Error::custom(e.reason))?;
        Ok(Self(raw))
    }
}

impl utoipa::PartialSchema for City {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        Self::RULE.schema()
    }
}

impl utoipa::ToSchema for City {}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Text the name or the contact's email contains, ignoring case.
    #[param(inline)]
    q: Option<SearchText>,
    #[param(inline)]
    city: Option<City>,
    /// Only the customers of this agent (`PUT /customers/{id}/agent`).
    #[param(inline)]
    agent_id: Option<domain::UserId>,
    #[param(inline)]
    limit: Option<PageLimit>,
    #[param(inline)]
    cursor: Option<Cursor>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CustomerPage {
    items: Vec<CustomerView>,
    next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/customers", tag = "customers", operation_id = "ListCustomers",
    params(ListParams, Consistency),
    responses((status = 200, body = CustomerPage, headers(
        ("X-Last-Synced" = String, description = "when the last complete Salesforce sync ended (RFC 3339), or `never`")))),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    QueryParams(params): QueryParams<ListParams>,
    Consistency(token): Consistency,
) -> Result<Response, ApiError> {
    let filters = [
        params.city.map(|c| ("billing_city".to_owned(), c.0)),
        params
            .agent_id
            .map(|a| ("agent_id".to_owned(), a.as_str().to_owned())),
    ]
    .into_iter()
    .flatten()
    .collect();
    let search = params.q.map(|q| q.over(&["name", "contact_email"]));
    let (items, next_cursor) = page_of(
        &state,
        &principal,
        VIEW,
        filters,
        search,
        params.limit,
        params.cursor,
        token,
    )
    .await?;
    let synced = crate::salesforce::last_synced(&state, &principal.tenant_id).await;
    Ok((synced, Json(CustomerPage { items, next_cursor })).into_response())
}

/// A Salesforce record Id (15 or 18 characters); anything else names no record: 404
/// saying `missing`.
pub(crate) fn salesforce_id(id: &str, missing: &str) -> Result<String, ApiError> {
    let ok = (15..=18).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(id.to_owned())
    } else {
        Err(ApiError::NotFound(missing.to_owned()))
    }
}

/// A Salesforce Account Id; anything else names no customer.
pub(crate) fn customer_id(id: &str) -> Result<String, ApiError> {
    salesforce_id(id, "no such customer")
}

/// The customer `id` names, if the tenant has it and the caller sees it (the portal's, the
/// accounts' and the logs' routes): an unknown or deleted customer, another tenant's, or
/// one outside a MEMBER's scope is 404 for staff, as another customer's id is for a
/// CUSTOMER.
pub(crate) async fn tenant_customer(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<String, ApiError> {
    let id = customer_id(id)?;
    let seen = state
        .views
        .get(VIEW, &principal.tenant_id, &id)
        .await?
        .and_then(|r| r.doc)
        .is_some_and(|doc| crate::scope::sees_customer(principal, &doc));
    if seen {
        Ok(id)
    } else {
        Err(ApiError::NotFound("no such customer".into()))
    }
}

#[utoipa::path(get, path = "/customers/{id}", tag = "customers", operation_id = "GetCustomer",
    params(("id" = String, Path, description = "the Salesforce Account Id"), Consistency),
    responses((status = 200, body = CustomerView, headers(("ETag" = String, description = "the customer's version")))),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    Consistency(token): Consistency,
) -> Result<Response, ApiError> {
    let id = customer_id(&id)?;
    let view: CustomerView =
        row_of(&state, &principal, VIEW, &id, token, "no such customer").await?;
    Ok((write_headers(None, view.version), Json(view)).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePortalInvitation {
    /// The contact's address: only it may accept.
    email: Email,
}

#[utoipa::path(post, path = "/customers/{id}/portal-invitations", tag = "customers",
    operation_id = "InvitePortalUser", request_body = CreatePortalInvitation,
    params(("id" = String, Path, description = "the Salesforce Account Id")),
    responses((status = 201, body = InvitationView,
        description = "a one-time code: `POST /auth/signup` with it makes a CUSTOMER of this customer")),
    security(("bearer" = ["ADMIN"])))]
pub async fn invite(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    Ids(ids): Ids,
    body: JsonBody<CreatePortalInvitation>,
) -> Result<Response, ApiError> {
    let id = customer_id(&id)?;
    let issued = state
        .access
        .issue_invitation(
            &meta(&principal, ids, None),
            Role::Customer,
            Some(body.value.email),
            Some(id),
        )
        .await?;
    let view = InvitationView::of(&principal, issued);
    Ok((StatusCode::CREATED, no_store(), Json(view)).into_response())
}

/// The routes of `/customers`, each declared once by its handler's `#[utoipa::path]`.
pub fn routes() -> Routes {
    Routes::new()
        .routes(utoipa_axum::routes!(list))
        .routes(utoipa_axum::routes!(get))
        .routes(utoipa_axum::routes!(invite))
}
