//! Transaction logs (seed 002): every posting on an account, oldest first, each line with
//! the account's balance after it; and a client's, over all their accounts. Read-only for
//! everyone: a posting is never edited, a mistake is reversed.

use crate::accounts::account_row;
use crate::app::{AppState, Routes};
use crate::customers::tenant_customer;
use crate::error::ApiError;
use crate::extract::{Consistency, PathId, QueryParams};
use crate::query::{Cursor, PageLimit, page_of};
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
    /// Oldest first within each account (a client's log goes account by account). A page
    /// holds the `from`/`to` matches among the next `limit` lines, so it may hold fewer:
    /// go on while `next_cursor` is set.
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
    // An account unknown to the tenant is 404, not an empty log.
    let (id, _) = account_row(&state, &principal, &id, token).await?;
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
    let id = tenant_customer(&state, &principal, &id).await?;
    lines(&state, &principal, ("customer_id", id), p, token).await
}

static MONTH: domain::Pattern = domain::Pattern::new(r"^[0-9]{4}-(?:0[1-9]|1[0-2])$");

/// A calendar month, `YYYY-MM`.
#[derive(Debug, Clone, Copy)]
pub struct Month(NaiveDate);

impl Month {
    const RULE: domain::TextRule = domain::TextRule {
        pattern: Some(&MONTH),
        ..domain::TextRule::chars(7, 7, "A calendar month, as in 2026-12.")
    };

    /// The first day of the next month.
    fn end(self) -> NaiveDate {
        self.0
            .checked_add_months(chrono::Months::new(1))
            .unwrap_or(NaiveDate::MAX)
    }
}

impl<'de> Deserialize<'de> for Month {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::RULE
            .check("month", &raw)
            .map_err(|e| serde::de::Error::custom(e.reason))?;
        NaiveDate::parse_from_str(&format!("{raw}-01"), "%Y-%m-%d")
            .map(Self)
            .map_err(|e| serde::de::Error::custom(e.to_string()))
    }
}

impl utoipa::PartialSchema for Month {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        Self::RULE.schema()
    }
}

impl utoipa::ToSchema for Month {}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatementParams {
    #[param(inline)]
    month: Month,
}

/// A line of a statement: the posting, and the balance after it in value-date order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatementLine {
    #[serde(flatten)]
    line: LineView,
    /// The statement's running balance: the opening balance and the month's lines up to
    /// this one, in value-date order.
    running_balance: domain::account::Balance,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Statement {
    account_id: String,
    currency: domain::money::Currency,
    /// `YYYY-MM`.
    month: String,
    /// The fold of the postings valued before the month.
    opening_balance: domain::account::Balance,
    /// The postings valued in the month, in value-date order.
    lines: Vec<StatementLine>,
    /// The fold of the postings valued up to the month's end: the opening balance and
    /// every line.
    closing_balance: domain::account::Balance,
}

/// Every line of an account, page by page from the read model.
async fn all_lines(
    state: &AppState,
    principal: &Principal,
    account_id: &str,
) -> Result<Vec<LineView>, ApiError> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let query = projections::ListQuery {
            filters: vec![("account_id".to_owned(), account_id.to_owned())],
            search: None,
            within: None,
            after: after.clone(),
            limit: 500,
        };
        let rows = state.views.list(VIEW, &principal.tenant_id, &query).await?;
        let done = rows.len() < 500;
        after = rows.last().map(|r| r.row_id.clone());
        for doc in rows.into_iter().filter_map(|r| r.doc) {
            out.push(serde_json::from_value(doc).map_err(ApiError::internal)?);
        }
        if done {
            return Ok(out);
        }
    }
}

fn signed(l: &LineView) -> rust_decimal::Decimal {
    match l.direction {
        projections::account_lines::Direction::Credit => l.amount.decimal(),
        projections::account_lines::Direction::Debit => -l.amount.decimal(),
    }
}

#[utoipa::path(get, path = "/accounts/{id}/statement", tag = "accounts", operation_id = "AccountStatement",
    params(("id" = uuid::Uuid, Path), StatementParams, Consistency),
    responses((status = 200, body = Statement)),
    security(("bearer" = [])))]
pub async fn statement(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    QueryParams(p): QueryParams<StatementParams>,
    Consistency(token): Consistency,
) -> Result<Json<Statement>, ApiError> {
    let (id, account) = account_row(&state, &principal, &id, token).await?;
    let (start, end) = (p.month.0, p.month.end());
    let mut lines = all_lines(&state, &principal, &id).await?;
    // In value-date order, postings of one day in the order they were posted.
    lines.sort_by_key(|l| (l.value_date, l.version));
    let opening: rust_decimal::Decimal = lines
        .iter()
        .filter(|l| l.value_date < start)
        .map(signed)
        .sum();
    let mut running = opening;
    let month: Vec<StatementLine> = lines
        .into_iter()
        .filter(|l| l.value_date >= start && l.value_date < end)
        .map(|line| {
            running += signed(&line);
            StatementLine {
                line,
                running_balance: domain::account::Balance(running),
            }
        })
        .collect();
    Ok(Json(Statement {
        account_id: id,
        currency: account.currency,
        month: start.format("%Y-%m").to_string(),
        opening_balance: domain::account::Balance(opening),
        lines: month,
        closing_balance: domain::account::Balance(running),
    }))
}

/// The routes of the transaction logs and statements.
pub fn routes() -> Routes {
    Routes::new()
        .routes(utoipa_axum::routes!(account_log))
        .routes(utoipa_axum::routes!(customer_log))
        .routes(utoipa_axum::routes!(statement))
}
