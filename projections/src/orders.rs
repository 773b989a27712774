//! The orders read model: one row per order, as `GET /orders` serves it, folded through
//! the aggregate's own `apply`. Each row also tallies what the order is worth into the
//! revenue model (`crate::revenue`).

use crate::ports::ProjectionError;
use chrono::{DateTime, Utc};
use domain::UserId;
use domain::money::{Amount, Currency, Money};
use domain::order::{Order, OrderEvent, OrderLine, OrderPlaced, OrderStatus, ShippingAddress};
use domain::user::Email;
use serde::{Deserialize, Serialize};

pub const VIEW: &str = "orders";

/// One line of an order as clients see it, priced as at order time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = OrderItem))]
pub struct OrderItemView {
    pub product_id: String,
    pub product_name: String,
    pub unit_price: Amount,
    pub quantity: u32,
    pub subtotal: Amount,
}

/// An order as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = Order))]
pub struct OrderView {
    pub order_id: String,
    pub tenant_id: String,
    pub customer_email: String,
    pub items: Vec<OrderItemView>,
    pub total_amount: Amount,
    pub currency: Currency,
    pub status: OrderStatus,
    pub shipping_address: ShippingAddress,
    pub created_by: String,
    #[serde(with = "domain::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "domain::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
    pub version: u64,
}

impl OrderView {
    /// The view of a placed order's state.
    pub fn from_state(tenant_id: &str, o: &Order, version: u64) -> Option<Self> {
        let placed = o.placed.as_ref()?;
        let money = |amount: Money| Amount {
            amount,
            currency: placed.currency.clone(),
        };
        Some(Self {
            order_id: placed.order_id.clone(),
            tenant_id: tenant_id.to_owned(),
            customer_email: placed.customer_email.as_str().to_owned(),
            items: placed
                .lines
                .iter()
                .map(|l| OrderItemView {
                    product_id: l.product_id.clone(),
                    product_name: l.product_name.clone(),
                    unit_price: money(l.unit_price),
                    quantity: l.quantity,
                    subtotal: money(l.subtotal),
                })
                .collect(),
            total_amount: money(placed.total_amount),
            currency: placed.currency.clone(),
            status: o.status?,
            shipping_address: o.shipping_address.clone()?,
            created_by: placed.created_by.to_string(),
            created_at: placed.created_at,
            updated_at: o.updated_at.unwrap_or(placed.created_at),
            version,
        })
    }

    /// The aggregate state this row shows.
    fn state(&self) -> Result<Order, ProjectionError> {
        let bad = |e: &dyn std::fmt::Display| ProjectionError(format!("unreadable order row: {e}"));
        Ok(Order {
            placed: Some(OrderPlaced {
                order_id: self.order_id.clone(),
                customer_email: Email::parse(&self.customer_email).map_err(|e| bad(&e))?,
                lines: self
                    .items
                    .iter()
                    .map(|i| OrderLine {
                        product_id: i.product_id.clone(),
                        product_name: i.product_name.clone(),
                        unit_price: i.unit_price.amount,
                        quantity: i.quantity,
                        subtotal: i.subtotal.amount,
                    })
                    .collect(),
                total_amount: self.total_amount.amount,
                currency: self.currency.clone(),
                shipping_address: self.shipping_address.clone(),
                created_by: UserId::parse(&self.created_by).map_err(|e| bad(&e))?,
                created_at: self.created_at,
            }),
            status: Some(self.status),
            shipping_address: Some(self.shipping_address.clone()),
            updated_at: Some(self.updated_at),
        })
    }
}

crate::state_projection!(OrdersProjection, OrderView);

impl crate::ports::StateView for OrderView {
    type Aggregate = Order;
    const VIEW: &'static str = VIEW;
    const TALLY_VIEWS: &'static [&'static str] = &[crate::revenue::VIEW];

    fn starts(e: &OrderEvent) -> bool {
        matches!(e, OrderEvent::Placed(_))
    }

    fn of_state(tenant_id: &str, state: &Order, version: u64) -> Option<Self> {
        Self::from_state(tenant_id, state, version)
    }

    fn into_state(self) -> Result<Order, ProjectionError> {
        self.state()
    }

    fn tallies(&self) -> Vec<crate::tally::Tally> {
        vec![crate::revenue::contribution(self)]
    }
}
