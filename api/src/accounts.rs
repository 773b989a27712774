//! Accounts (seed 002's banking CRM): a client's checking and savings accounts, opened
//! under a unique, check-digited number, frozen, unfrozen and closed (only at a balance of
//! zero). Balances are the fold of the postings (`transactions`); an account's log is
//! `GET /accounts/{id}/transactions`.

use crate::app::{AppState, Routes};
use crate::customers::tenant_customer;
use crate::error::{ApiError, Problem};
use crate::extract::{Consistency, IdempotencyKey, Ids, JsonBody, PathId, QueryParams};
use crate::query::{Cursor, PageLimit, meta, page_of, row_of, write_headers};
use crate::tokens::Principal;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use commands::ledger::{OpenAccount, account_stream};
use domain::account::{Account, AccountCommand, AccountNumber, AccountType};
use domain::money::{Currency, Money};
use projections::accounts::{AccountView, VIEW};
use serde::{Deserialize, Serialize};

/// The stream of an account, for a canonical account id; anything else names none.
pub(crate) fn account_of(id: &str) -> Result<String, ApiError> {
    crate::extract::canonical_uuid(id, "no such account").map(|u| u.to_string())
}

/// The account `id` names, once the read model shows the token's write: 404 for an id that
/// is no account of the caller's tenant.
pub(crate) async fn account_row(
    state: &AppState,
    principal: &Principal,
    id: &str,
    token: Option<domain::ConsistencyToken>,
) -> Result<(String, AccountView), ApiError> {
    let id = account_of(id)?;
    let view = row_of(state, principal, VIEW, &id, token, "no such account").await?;
    Ok((id, view))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAccountBody {
    #[serde(rename = "type")]
    account_type: AccountType,
    currency: Currency,
    /// How far below zero the balance may go; default 0.
    #[serde(default)]
    overdraft_limit: Option<Money>,
}

/// Draws a fresh account number (ten random digits and their check digits).
fn draw_number() -> AccountNumber {
    AccountNumber::with_check(rand::random_range(1_000_000_000..10_000_000_000u64))
}

#[utoipa::path(post, path = "/customers/{id}/accounts", tag = "accounts", operation_id = "OpenAccount",
    request_body = OpenAccountBody,
    params(("id" = String, Path, description = "the client's Salesforce Account Id"), IdempotencyKey),
    responses((status = 201, body = AccountView, description = "opened, under a number unique in the tenant", headers(
            ("X-Consistency-Token" = String, description = "send it with a query to read this write"),
            ("ETag" = String, description = "the account's version"),
            ("Location" = String, description = "the account's path"))),
        (status = 403, body = Problem, description = "a MEMBER who is not the client's agent"),
        (status = 404, body = Problem, description = "no such client in this tenant")),
    security(("bearer" = [])))]
pub async fn open(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    Ids(ids): Ids,
    idempotency: IdempotencyKey,
    body: JsonBody<OpenAccountBody>,
) -> Result<Response, ApiError> {
    let customer_id = tenant_customer(&state, &principal, &id).await?;
    let b = body.value;
    let route = format!("POST /customers/{customer_id}/accounts");
    let idem = idempotency.with_request(&route, principal.actor.user_id.as_str(), &body.bytes);
    let account_id = uuid::Uuid::now_v7().to_string();
    // A number another account holds is refused by its reservation: draw again.
    let mut tries = 0;
    let ran = loop {
        tries += 1;
        let command = OpenAccount {
            account_id: account_id.clone(),
            customer_id: customer_id.clone(),
            number: draw_number(),
            account_type: b.account_type,
            currency: b.currency.clone(),
            overdraft_limit: b.overdraft_limit.unwrap_or(Money::ZERO),
        };
        match state
            .commands
            .run(&meta(&principal, ids, idem.clone()), &command)
            .await
        {
            Err(commands::CommandError::Taken(_)) if tries < 5 => {}
            other => break other?,
        }
    };
    let opened = ran
        .output
        .opened
        .as_ref()
        .map_or_else(|| account_id.clone(), |o| o.account_id.clone());
    let stream = account_stream(&opened);
    let version = ran.version_of(&stream).unwrap_or(1);
    let view = AccountView::from_state(principal.tenant_id.as_str(), &ran.output, version)
        .ok_or_else(|| ApiError::internal("OpenAccount left no account to show"))?;
    let mut headers = write_headers(ran.token_for(&stream).as_ref(), version);
    if let Ok(v) = HeaderValue::from_str(&format!("/accounts/{opened}")) {
        headers.insert(header::LOCATION, v);
    }
    Ok((StatusCode::CREATED, headers, Json(view)).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    #[param(inline)]
    limit: Option<PageLimit>,
    #[param(inline)]
    cursor: Option<Cursor>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountPage {
    items: Vec<AccountView>,
    next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/customers/{id}/accounts", tag = "accounts", operation_id = "ListCustomerAccounts",
    params(("id" = String, Path, description = "the client's Salesforce Account Id"), ListParams, Consistency),
    responses((status = 200, body = AccountPage)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    QueryParams(params): QueryParams<ListParams>,
    Consistency(token): Consistency,
) -> Result<Json<AccountPage>, ApiError> {
    let customer_id = tenant_customer(&state, &principal, &id).await?;
    let (items, next_cursor) = page_of(
        &state,
        &principal,
        VIEW,
        vec![("customer_id".to_owned(), customer_id)],
        None,
        params.limit,
        params.cursor,
        token,
    )
    .await?;
    Ok(Json(AccountPage { items, next_cursor }))
}

#[utoipa::path(get, path = "/accounts/{id}", tag = "accounts", operation_id = "GetAccount",
    params(("id" = uuid::Uuid, Path), Consistency),
    responses((status = 200, body = AccountView, headers(("ETag" = String, description = "the account's version")))),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    Consistency(token): Consistency,
) -> Result<Response, ApiError> {
    let (_, view) = account_row(&state, &principal, &id, token).await?;
    Ok((write_headers(None, view.version), Json(view)).into_response())
}

/// Freeze, unfreeze or close.
async fn change(
    state: &AppState,
    principal: &Principal,
    ids: commands::RequestIds,
    id: &str,
    command: AccountCommand,
) -> Result<Response, ApiError> {
    let id = account_of(id)?;
    let done = state
        .commands
        .execute::<Account>(
            &meta(principal, ids, None),
            &account_stream(&id),
            &command,
            None,
        )
        .await?;
    let view = AccountView::from_state(principal.tenant_id.as_str(), &done.state, done.version)
        .ok_or_else(|| ApiError::NotFound("no such account".into()))?;
    Ok((write_headers(done.token.as_ref(), done.version), Json(view)).into_response())
}

#[utoipa::path(post, path = "/accounts/{id}/freeze", tag = "accounts", operation_id = "FreezeAccount",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = AccountView, description = "frozen: no posting touches it until it is unfrozen"),
        (status = 409, body = Problem, description = "the account is closed")),
    security(("bearer" = ["ADMIN"])))]
pub async fn freeze(
    State(state): State<AppState>,
    principal: Principal,
    Ids(ids): Ids,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    change(&state, &principal, ids, &id, AccountCommand::Freeze).await
}

#[utoipa::path(post, path = "/accounts/{id}/unfreeze", tag = "accounts", operation_id = "UnfreezeAccount",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = AccountView),
        (status = 409, body = Problem, description = "the account is not frozen, or closed")),
    security(("bearer" = ["ADMIN"])))]
pub async fn unfreeze(
    State(state): State<AppState>,
    principal: Principal,
    Ids(ids): Ids,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    change(&state, &principal, ids, &id, AccountCommand::Unfreeze).await
}

#[utoipa::path(post, path = "/accounts/{id}/close", tag = "accounts", operation_id = "CloseAccount",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = AccountView),
        (status = 409, body = Problem, description = "the balance is not zero")),
    security(("bearer" = ["ADMIN"])))]
pub async fn close(
    State(state): State<AppState>,
    principal: Principal,
    Ids(ids): Ids,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    change(&state, &principal, ids, &id, AccountCommand::Close).await
}

/// The routes of accounts.
pub fn routes() -> Routes {
    Routes::new()
        .routes(utoipa_axum::routes!(list, open))
        .routes(utoipa_axum::routes!(get))
        .routes(utoipa_axum::routes!(freeze))
        .routes(utoipa_axum::routes!(unfreeze))
        .routes(utoipa_axum::routes!(close))
}
