//! Transaction logs (seed 002): every posting on an account, oldest first, each line with
//! the account's balance after it; and a client's, over all their accounts. Read-only for
//! everyone: a posting is never edited, a mistake is reversed.

use crate::accounts::account_of;
use crate::app::{AppState, Routes};
use crate::customer_cases::portal_customer;
use crate::error::ApiError;
use crate::extract::{Consistency, PathId, QueryParams};
use crate::query::{Cursor, PageLimit, page_of, row_of};
use crate::tokens::Principal;
use axum::Json;
use axum::extract::{Path, State};
use chrono::NaiveDate;
use domain::account::Kind;
use projections::account_lines::{LineView, VIEW};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    /// Lines valued on or after this day (YYYY-MM-DD).
    #[param(value_type = Option<String>, format = Date)]
    from: Option<NaiveDate>,
    /// Lines valued on or before this day (YYYY-MM-DD).
    #[param(value_type = Option<String>, format = Date)]
    to: Option<NaiveDate>,
    #[param(inline)]
    kind: Option<Kind>,
    #[param(inline)]
    limit: Option<PageLimit>,
    #[param(inline)]
    cursor: Option<Cursor>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LinePage {
    /// Oldest first. A page holds the `from`/`to` matches among the next `limit` lines,
    /// so it may hold fewer: go on while `next_cursor` is set.
    items: Vec<LineView>,
    next_cursor: Option<String>,
}

async fn lines(
    state: &AppState,
    principal: &Principal,
    filter: (&str, String),
    p: LogParams,
    token: Option<domain::ConsistencyToken>,
) -> Result<Json<LinePage>, ApiError> {
    if let (Some(f), Some(t)) = (p.from, p.to)
        && f > t
    {
        return Err(ApiError::Validation {
            field: "from".into(),
            detail: "from: after to".into(),
        });
    }
    let mut filters = vec![(filter.0.to_owned(), filter.1)];
    if let Some(k) = p.kind {
        filters.push(("kind".to_owned(), k.as_str().to_owned()));
    }
    let (items, next_cursor): (Vec<LineView>, _) = page_of(
        state, principal, VIEW, filters, None, p.limit, p.cursor, token,
    )
    .await?;
    let items = items
        .into_iter()
        .filter(|l| p.from.is_none_or(|f| l.value_date >= f))
        .filter(|l| p.to.is_none_or(|t| l.value_date <= t))
        .collect();
    Ok(Json(LinePage { items, next_cursor }))
}

#[utoipa::path(get, path = "/accounts/{id}/transactions", tag = "accounts", operation_id = "AccountTransactions",
    params(("id" = uuid::Uuid, Path), LogParams, Consistency),
    responses((status = 200, body = LinePage)),
    security(("bearer" = [])))]
pub async fn account_log(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    QueryParams(p): QueryParams<LogParams>,
    Consistency(token): Consistency,
) -> Result<Json<LinePage>, ApiError> {
    let id = account_of(&id)?;
    // An account unknown to the tenant is 404, not an empty log (read once the token's
    // write is in).
    let _: projections::accounts::AccountView = row_of(
        &state,
        &principal,
        projections::accounts::VIEW,
        &id,
        token,
        "no such account",
    )
    .await?;
    lines(&state, &principal, ("account_id", id), p, None).await
}

#[utoipa::path(get, path = "/customers/{id}/transactions", tag = "accounts", operation_id = "CustomerTransactions",
    params(("id" = String, Path, description = "the client's Salesforce Account Id"), LogParams, Consistency),
    responses((status = 200, body = LinePage)),
    security(("bearer" = [])))]
pub async fn customer_log(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    QueryParams(p): QueryParams<LogParams>,
    Consistency(token): Consistency,
) -> Result<Json<LinePage>, ApiError> {
    let id = portal_customer(&state, &principal, &id).await?;
    lines(&state, &principal, ("customer_id", id), p, token).await
}

/// The routes of the transaction logs.
pub fn routes() -> Routes {
    Routes::new()
        .routes(utoipa_axum::routes!(account_log))
        .routes(utoipa_axum::routes!(customer_log))
}
