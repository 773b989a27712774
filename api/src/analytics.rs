//! `/analytics/summary` (seed 003's revenue tracking): revenue booked (orders placed and not
//! cancelled), revenue delivered, orders by status, and the top 10 products by revenue, for
//! orders placed in an optional date range, in the tenant's currency. Folded from the orders
//! read model on request.

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
use projections::ListQuery;
use projections::orders::{OrderView, VIEW};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Orders read per page of the read model.
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

/// The figures so far.
#[derive(Default)]
struct Totals {
    booked: Money,
    delivered: Money,
    by_status: BTreeMap<String, u64>,
    products: HashMap<String, (String, u64, Money)>,
}

impl Totals {
    fn add(&mut self, o: &OrderView) -> Result<(), ApiError> {
        let overflow = |_| ApiError::internal("revenue past the largest amount");
        *self
            .by_status
            .entry(o.status.as_str().to_owned())
            .or_default() += 1;
        if o.status == OrderStatus::Cancelled {
            return Ok(());
        }
        self.booked = self.booked.plus(o.total_amount.amount).map_err(overflow)?;
        if o.status == OrderStatus::Delivered {
            self.delivered = self
                .delivered
                .plus(o.total_amount.amount)
                .map_err(overflow)?;
        }
        for item in &o.items {
            let entry = self
                .products
                .entry(item.product_id.clone())
                .or_insert_with(|| (item.product_name.clone(), 0, Money::ZERO));
            entry.1 += u64::from(item.quantity);
            entry.2 = entry.2.plus(item.subtotal.amount).map_err(overflow)?;
        }
        Ok(())
    }
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
    let in_range = |o: &OrderView| {
        let day = o.created_at.date_naive();
        params.from.is_none_or(|f| day >= f) && params.to.is_none_or(|t| day <= t)
    };
    let mut totals = Totals::default();
    let mut after = None;
    loop {
        let query = ListQuery {
            filters: vec![],
            search: None,
            after: after.take(),
            limit: PAGE,
        };
        let rows = state.views.list(VIEW, &principal.tenant_id, &query).await?;
        let full = rows.len() == PAGE;
        after = rows.last().map(|r| r.row_id.clone());
        for doc in rows.into_iter().filter_map(|r| r.doc) {
            let order: OrderView = serde_json::from_value(doc).map_err(ApiError::internal)?;
            if in_range(&order) && order.currency == currency {
                totals.add(&order)?;
            }
        }
        if !full {
            break;
        }
    }
    let mut by_status = totals.by_status;
    for s in [
        OrderStatus::Pending,
        OrderStatus::Confirmed,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
    ] {
        by_status.entry(s.as_str().to_owned()).or_default();
    }
    let amount = |amount: Money| Amount {
        amount,
        currency: currency.clone(),
    };
    let mut products: Vec<(String, (String, u64, Money))> = totals.products.into_iter().collect();
    products.sort_by(|a, b| b.1.2.cmp(&a.1.2).then_with(|| a.0.cmp(&b.0)));
    let top_products = products
        .into_iter()
        .take(10)
        .map(
            |(product_id, (product_name, units, revenue))| ProductRevenue {
                product_id,
                product_name,
                units,
                revenue: amount(revenue),
            },
        )
        .collect();
    Ok(Json(Summary {
        from: params.from,
        to: params.to,
        revenue_booked: amount(totals.booked),
        revenue_delivered: amount(totals.delivered),
        currency: currency.clone(),
        orders_by_status: by_status,
        top_products,
    }))
}

/// The routes of `/analytics`.
pub fn routes() -> Routes {
    Routes::new().routes(utoipa_axum::routes!(summary))
}
