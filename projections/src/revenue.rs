//! The revenue read model (seed 003's revenue tracking): per tenant, one summary row per UTC
//! day on which orders were placed, holding that day's revenue booked (placed and not
//! cancelled) and delivered, its orders by status, and each product's units and revenue,
//! each by currency. The orders projection keeps it as a tally (`crate::tally`): every
//! order row adds what it is worth now, in the same commit as the row.

use crate::orders::OrderView;
use crate::tally::Tally;
use domain::order::OrderStatus;
use rust_decimal::Decimal;
use std::collections::BTreeMap;

pub const VIEW: &str = "revenue";

/// A day's row id.
pub fn day_row(day: chrono::NaiveDate) -> String {
    domain::time::to_day(day)
}

fn booked(currency: &str) -> String {
    format!("booked/{currency}")
}

fn delivered(currency: &str) -> String {
    format!("delivered/{currency}")
}

fn orders(status: &str, currency: &str) -> String {
    format!("orders/{status}/{currency}")
}

fn units(product: &str, currency: &str) -> String {
    format!("units/{product}/{currency}")
}

fn product_revenue(product: &str, currency: &str) -> String {
    format!("revenue/{product}/{currency}")
}

fn name(product: &str) -> String {
    format!("name/{product}")
}

/// What one order adds to the row of the day it was placed.
pub fn contribution(order: &OrderView) -> Tally {
    let currency = order.currency.as_str();
    let mut t = Tally::new(VIEW, day_row(order.created_at.date_naive()));
    t.count(orders(order.status.as_str(), currency), Decimal::ONE);
    for item in &order.items {
        t.label(name(&item.product_id), item.product_name.clone());
    }
    if order.status == OrderStatus::Cancelled {
        return t;
    }
    t.count(booked(currency), order.total_amount.amount.decimal());
    if order.status == OrderStatus::Delivered {
        t.count(delivered(currency), order.total_amount.amount.decimal());
    }
    for item in &order.items {
        t.count(
            units(&item.product_id, currency),
            Decimal::from(item.quantity),
        );
        t.count(
            product_revenue(&item.product_id, currency),
            item.subtotal.amount.decimal(),
        );
    }
    t
}

/// One product's figures over a range of days.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProductFigures {
    /// A name the product was sold under.
    pub name: String,
    pub units: Decimal,
    pub revenue: Decimal,
}

/// The figures of a range of days in one currency, summed from the days' rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub booked: Decimal,
    pub delivered: Decimal,
    pub by_status: BTreeMap<String, Decimal>,
    pub products: BTreeMap<String, ProductFigures>,
}

impl Figures {
    /// Adds a day's row, counting only `currency`.
    pub fn add_day(&mut self, day: &Tally, currency: &str) {
        let suffix = format!("/{currency}");
        for (key, value) in &day.counts {
            let Some(key) = key.strip_suffix(&suffix) else {
                continue;
            };
            let (kind, rest) = key.split_once('/').unwrap_or((key, ""));
            let add = |slot: &mut Decimal| *slot = slot.saturating_add(*value);
            match kind {
                "booked" => add(&mut self.booked),
                "delivered" => add(&mut self.delivered),
                "orders" => add(self.by_status.entry(rest.to_owned()).or_default()),
                "units" | "revenue" => {
                    let p = self.products.entry(rest.to_owned()).or_default();
                    if let Some(label) = day.labels.get(&name(rest))
                        && p.name.is_empty()
                    {
                        p.name = label.clone();
                    }
                    add(if kind == "units" {
                        &mut p.units
                    } else {
                        &mut p.revenue
                    });
                }
                _ => {}
            }
        }
    }

    /// The `n` products with the most revenue, highest first (ties by product id).
    pub fn top_products(&self, n: usize) -> Vec<(&String, &ProductFigures)> {
        let mut all: Vec<_> = self.products.iter().collect();
        all.sort_by(|a, b| b.1.revenue.cmp(&a.1.revenue).then_with(|| a.0.cmp(b.0)));
        all.truncate(n);
        all
    }
}
