//! `/analytics/summary` (seed 003's revenue tracking): revenue booked (orders placed and not
//! cancelled), revenue delivered, orders by status, and the top 10 products by revenue, for
//! orders placed in an optional date range, in the tenant's currency. Summed from the
//! revenue read model's rows, one per day (`projections::revenue`).
//!
//! `/analytics/daily`: the analytics consumer's figures (`projections::analytics`), day by
//! day: orders placed and revenue, orders by status, tasks, AI queries and sync runs.

use crate::app::{AppState, Routes};
use crate::error::ApiError;
use crate::extract::{Consistency, QueryParams};
use crate::query::wait_fresh;
use crate::tokens::Principal;
use axum::Json;
use axum::extract::State;
use chrono::NaiveDate;
use domain::money::{Amount, Currency, Money};
use domain::order::OrderStatus;
use projections::revenue::{self, Figures};
use projections::tally::Tally;
use projections::{ListQuery, products};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Days read per page of the read model.
const PAGE: usize = 1000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SummaryParams {
    /// First day (UTC) of orders placed, inclusive. After `to`, the range holds no day.
    #[param(value_type = Option<String>, format = Date)]
    from: Option<NaiveDate>,
    /// Last day (UTC) of orders placed, inclusive.
    #[param(value_type = Option<String>, format = Date)]
    to: Option<NaiveDate>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProductRevenue {
    product_id: String,
    product_name: String,
    units: u64,
    revenue: Amount,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Summary {
    #[schema(value_type = Option<String>, format = Date)]
    from: Option<NaiveDate>,
    #[schema(value_type = Option<String>, format = Date)]
    to: Option<NaiveDate>,
    currency: Currency,
    /// Orders placed and not cancelled.
    revenue_booked: Amount,
    /// Orders delivered.
    revenue_delivered: Amount,
    /// Every status, with zero where there are none.
    orders_by_status: BTreeMap<String, u64>,
    /// At most 10, by revenue booked, highest first.
    top_products: Vec<ProductRevenue>,
}

#[utoipa::path(get, path = "/analytics/summary", tag = "analytics", operation_id = "AnalyticsSummary",
    params(SummaryParams, Consistency),
    responses((status = 200, body = Summary)),
    security(("bearer" = [])))]
pub async fn summary(
    State(state): State<AppState>,
    principal: Principal,
    QueryParams(params): QueryParams<SummaryParams>,
    Consistency(token): Consistency,
) -> Result<Json<Summary>, ApiError> {
    wait_fresh(&state, &principal, token).await?;
    let currency =
        commands::commerce::tenant_currency(&state.commands, &principal.tenant_id).await?;
    let tenant = &principal.tenant_id;
    let mut figures = Figures::default();
    let mut after = params.from.and_then(|f| f.pred_opt()).map(revenue::day_row);
    let last = params.to.map(revenue::day_row);
    'days: loop {
        let query = ListQuery {
            filters: vec![],
            search: None,
            within: None,
            after: after.take(),
            limit: PAGE,
        };
        let rows = state.views.list(revenue::VIEW, tenant, &query).await?;
        let full = rows.len() == PAGE;
        after = rows.last().map(|r| r.row_id.clone());
        for row in rows {
            if last.as_ref().is_some_and(|l| row.row_id > *l) {
                break 'days;
            }
            let doc = row.doc.unwrap_or_default();
            let day = Tally::from_doc(revenue::VIEW, &row.row_id, &doc)?;
            figures.add_day(&day, currency.as_str());
        }
        if !full {
            break;
        }
    }
    let amount = |d: Decimal| -> Result<Amount, ApiError> {
        Ok(Amount {
            amount: Money::of(d)
                .map_err(|_| ApiError::internal("revenue past the largest amount"))?,
            currency: currency.clone(),
        })
    };
    let count = |d: Decimal| d.to_u64().unwrap_or_default();
    let mut top_products = Vec::new();
    for (product_id, p) in figures.top_products(10) {
        // The catalogue's name while the product exists, else the one it was sold under.
        let current = state.views.get(products::VIEW, tenant, product_id).await?;
        let product_name = current
            .and_then(|r| r.doc)
            .and_then(|d| d["name"].as_str().map(str::to_owned))
            .unwrap_or_else(|| p.name.clone());
        top_products.push(ProductRevenue {
            product_id: product_id.clone(),
            product_name,
            units: count(p.units),
            revenue: amount(p.revenue)?,
        });
    }
    let orders_by_status = ORDER_STATUSES
        .into_iter()
        .map(|s| {
            let n = figures
                .by_status
                .get(s.as_str())
                .copied()
                .unwrap_or_default();
            (s.as_str().to_owned(), count(n))
        })
        .collect();
    Ok(Json(Summary {
        from: params.from,
        to: params.to,
        revenue_booked: amount(figures.booked)?,
        revenue_delivered: amount(figures.delivered)?,
        currency: currency.clone(),
        orders_by_status,
        top_products,
    }))
}

/// The longest range `/analytics/daily` serves, in days.
const MAX_DAYS: i64 = 366;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DailyParams {
    /// First day (UTC), inclusive.
    #[param(value_type = String, format = Date)]
    from: NaiveDate,
    /// Last day (UTC), inclusive. Before `from`, the range holds no day; a range of more
    /// than 366 days is answered 366 days at a time (`next_from`).
    #[param(value_type = String, format = Date)]
    to: NaiveDate,
}

/// One day's figures, zero where nothing happened.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DayFigures {
    #[schema(value_type = String, format = Date)]
    date: NaiveDate,
    orders_placed: u64,
    /// Of the orders placed that day.
    revenue: Amount,
    /// Orders that moved to each status that day (placed: `pending`).
    orders_by_status: BTreeMap<String, u64>,
    tasks_created: u64,
    /// Tasks that moved to `DONE`.
    tasks_completed: u64,
    /// AI queries submitted.
    ai_queries: u64,
    ai_completed: u64,
    ai_failures: u64,
    /// Tokens of the AI queries completed.
    ai_tokens: u64,
    /// Customer sync runs that ended, and those that failed.
    sync_runs: u64,
    sync_failures: u64,
    /// Customers imported, updated and deleted by those runs.
    sync_records_changed: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Daily {
    #[schema(value_type = String, format = Date)]
    from: NaiveDate,
    #[schema(value_type = String, format = Date)]
    to: NaiveDate,
    currency: Currency,
    /// Every day of the range, in order (at most 366).
    days: Vec<DayFigures>,
    /// The first day not answered, when the range is longer than 366 days: ask again
    /// from it.
    #[schema(value_type = Option<String>, format = Date)]
    #[serde(skip_serializing_if = "Option::is_none")]
    next_from: Option<NaiveDate>,
}

impl DayFigures {
    fn of(date: NaiveDate, t: &Tally, currency: &Currency) -> Result<Self, ApiError> {
        use projections::analytics as a;
        let n = |key: &str| t.get(key).to_u64().unwrap_or_default();
        let revenue = Money::of(t.get(&a::revenue(currency.as_str())))
            .map_err(|_| ApiError::internal("revenue past the largest amount"))?;
        Ok(Self {
            date,
            orders_placed: n(a::ORDERS_PLACED),
            revenue: Amount {
                amount: revenue,
                currency: currency.clone(),
            },
            orders_by_status: ORDER_STATUSES
                .iter()
                .map(|s| (s.as_str().to_owned(), n(&a::orders_to(s.as_str()))))
                .collect(),
            tasks_created: n(a::TASKS_CREATED),
            tasks_completed: n(a::TASKS_COMPLETED),
            ai_queries: n(a::AI_QUERIES),
            ai_completed: n(a::AI_COMPLETED),
            ai_failures: n(a::AI_FAILURES),
            ai_tokens: n(a::AI_TOKENS),
            sync_runs: n(a::SYNC_RUNS),
            sync_failures: n(a::SYNC_FAILURES),
            sync_records_changed: n(a::SYNC_RECORDS_CHANGED),
        })
    }
}

const ORDER_STATUSES: [OrderStatus; 5] = [
    OrderStatus::Pending,
    OrderStatus::Confirmed,
    OrderStatus::Shipped,
    OrderStatus::Delivered,
    OrderStatus::Cancelled,
];

#[utoipa::path(get, path = "/analytics/daily", tag = "analytics", operation_id = "AnalyticsDaily",
    params(DailyParams, Consistency),
    responses((status = 200, body = Daily)),
    security(("bearer" = [])))]
pub async fn daily(
    State(state): State<AppState>,
    principal: Principal,
    QueryParams(params): QueryParams<DailyParams>,
    Consistency(token): Consistency,
) -> Result<Json<Daily>, ApiError> {
    let DailyParams { from, to: asked } = params;
    let last_day = from
        .checked_add_days(chrono::Days::new(MAX_DAYS as u64 - 1))
        .unwrap_or(NaiveDate::MAX);
    let to = asked.min(last_day);
    let next_from = (asked > to).then(|| to.succ_opt()).flatten();
    wait_fresh(&state, &principal, token).await?;
    let currency =
        commands::commerce::tenant_currency(&state.commands, &principal.tenant_id).await?;
    let mut found: BTreeMap<String, Tally> = BTreeMap::new();
    let last = revenue::day_row(to);
    let mut after = from.pred_opt().map(revenue::day_row);
    loop {
        let query = ListQuery {
            filters: vec![],
            search: None,
            within: None,
            after: after.take(),
            limit: PAGE,
        };
        let rows = state
            .views
            .list(projections::analytics::VIEW, &principal.tenant_id, &query)
            .await?;
        let full = rows.len() == PAGE;
        after = rows.last().map(|r| r.row_id.clone());
        for row in rows.into_iter().take_while(|r| r.row_id <= last) {
            let doc = row.doc.unwrap_or_default();
            let t = Tally::from_doc(projections::analytics::VIEW, &row.row_id, &doc)?;
            found.insert(row.row_id, t);
        }
        if !full || after.as_ref().is_some_and(|a| *a >= last) {
            break;
        }
    }
    let empty = Tally::default();
    let days = from
        .iter_days()
        .take_while(|d| *d <= to)
        .take(MAX_DAYS as usize)
        .map(|d| {
            let t = found.get(&revenue::day_row(d)).unwrap_or(&empty);
            DayFigures::of(d, t, &currency)
        })
        .collect::<Result<_, _>>()?;
    Ok(Json(Daily {
        from,
        to: asked,
        currency,
        days,
        next_from,
    }))
}

/// The routes of `/analytics`.
pub fn routes() -> Routes {
    Routes::new()
        .routes(utoipa_axum::routes!(summary))
        .routes(utoipa_axum::routes!(daily))
}
