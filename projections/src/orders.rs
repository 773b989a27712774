//! The orders read model: one row per order, as `GET /orders` serves it, folded through
//! the aggregate's own `apply`. Each row also tallies what the order is worth into the
//! revenue model (`crate::revenue`).

use crate::ports::{Projection, ProjectionError};
use chrono::{DateTime, Utc};
use domain::money::{Amount, Currency, Money};
use domain::order::{Order, OrderEvent, OrderLine, OrderPlaced, OrderStatus, ShippingAddress};
use domain::user::Email;
use domain::{Aggregate, EventEnvelope, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
    pub created_at: DateTime<Utc>,
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

#[derive(Debug, Default, Clone, Copy)]
pub struct OrdersProjection;

impl Projection for OrdersProjection {
    fn name(&self) -> &'static str {
        VIEW
    }

    fn handles(&self, event: &EventEnvelope) -> bool {
        event.stream_id.kind() == Order::KIND
    }

    fn row_id(&self, event: &EventEnvelope) -> String {
        event.stream_id.instance().to_owned()
    }

    fn apply(
        &self,
        row: Option<&Value>,
        event: &EventEnvelope,
    ) -> Result<Option<Value>, ProjectionError> {
        crate::ports::fold_state::<Order, _>(
            row,
            event,
            |e| matches!(e, OrderEvent::Placed(_)),
            |doc| {
                serde_json::from_value::<OrderView>(doc.clone())
                    .map_err(|e| ProjectionError(e.to_string()))?
                    .state()
            },
            |order, version| OrderView::from_state(event.tenant_id.as_str(), order, version),
        )
    }

    fn tallies(&self, row: &Value) -> Vec<crate::tally::Tally> {
        // A row this projection wrote always reads back; the engine only asks for rows it
        // holds, so an unreadable one contributes nothing rather than failing the batch.
        serde_json::from_value::<OrderView>(row.clone())
            .map(|o| vec![crate::revenue::contribution(&o)])
            .unwrap_or_default()
    }

    fn tally_views(&self) -> &'static [&'static str] {
        &[crate::revenue::VIEW]
    }
}
