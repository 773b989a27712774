//! The Order aggregate (seed 003): placed with its lines priced as at order time, then
//! pending → confirmed → shipped → delivered; cancel from pending or confirmed. Placing
//! reserves stock on every product and cancelling releases it, each in the same atomic
//! append as the order (the command side writes both; this file decides the order's part).

use crate::aggregate::{Aggregate, CommandContext};
use crate::ids::{UserId, ValidationError};
use crate::money::{Currency, Money};
use crate::rules::TextRule;
use crate::user::Email;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The most lines one order may have.
pub const MAX_LINES: usize = 100;
/// The most units of one product one line may take.
pub const MAX_QUANTITY: u32 = 1_000_000;

crate::bounded_int!(
    /// How many units of a product one line of an order takes.
    Quantity(u32),
    1,
    MAX_QUANTITY,
    "units of the product, 1 to 1000000"
);

macro_rules! address_part {
    ($(#[$meta:meta])* $name:ident, $field:literal, $max:expr, $what:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            pub const RULE: TextRule = TextRule {
                no_control: true,
                not_blank: true,
                ..TextRule::chars(1, $max, $what)
            };

            pub fn parse(value: &str) -> Result<Self, ValidationError> {
                Self::RULE.check($field, value)?;
                Ok(Self(value.trim().to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        crate::rules::text_serde!($name);
        crate::rules::text_schema!($name, stringify!($name));
    };
}

address_part!(Street, "street", 200, "Street and number.");
address_part!(City, "city", 100, "City.");
address_part!(Region, "state", 100, "State, province or region.");
address_part!(Zip, "zip", 20, "Postal code.");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ShippingAddress {
    pub street: Street,
    pub city: City,
    pub state: Region,
    pub zip: Zip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Shipped,
    Delivered,
    Cancelled,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Cancelled => "cancelled",
        }
    }

    /// The status `to` may follow this one.
    pub fn may_become(self, to: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, to),
            (Pending, Confirmed)
                | (Confirmed, Shipped)
                | (Shipped, Delivered)
                | (Pending | Confirmed, Cancelled)
        )
    }
}

/// One line of an order, priced as at order time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderLine {
    pub product_id: String,
    pub product_name: String,
    pub unit_price: Money,
    pub quantity: u32,
    pub subtotal: Money,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderCommand {
    Place {
        order_id: String,
        customer_email: Email,
        lines: Vec<OrderLine>,
        total: Money,
        currency: Currency,
        shipping_address: ShippingAddress,
    },
    /// Moves the order to `to`.
    Transition { to: OrderStatus },
    /// A new address, while the order is pending.
    ChangeShipping(ShippingAddress),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order_id: String,
    pub customer_email: Email,
    pub lines: Vec<OrderLine>,
    pub total_amount: Money,
    pub currency: Currency,
    pub shipping_address: ShippingAddress,
    pub created_by: UserId,
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderStatusChanged {
    pub from: OrderStatus,
    pub to: OrderStatus,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippingChanged {
    pub shipping_address: ShippingAddress,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

crate::domain_events!(OrderEvent, "order" {
    Placed(OrderPlaced) = "OrderPlaced",
    Confirmed(OrderStatusChanged) = "OrderConfirmed",
    Shipped(OrderStatusChanged) = "OrderShipped",
    Delivered(OrderStatusChanged) = "OrderDelivered",
    Cancelled(OrderStatusChanged) = "OrderCancelled",
    ShippingChanged(ShippingChanged) = "OrderShippingChanged",
});

impl OrderEvent {
    /// The event of a move to `change.to`.
    fn transition(change: OrderStatusChanged) -> Self {
        match change.to {
            OrderStatus::Confirmed => Self::Confirmed(change),
            OrderStatus::Shipped => Self::Shipped(change),
            OrderStatus::Delivered => Self::Delivered(change),
            // `may_become` admits no other move; pending is only ever the start.
            OrderStatus::Cancelled | OrderStatus::Pending => Self::Cancelled(change),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("the order already exists")]
    AlreadyExists,
    #[error("no such order")]
    NotFound,
    #[error("an order in status {} cannot become {}", from.as_str(), to.as_str())]
    InvalidTransition { from: OrderStatus, to: OrderStatus },
    #[error("{0}")]
    NotAllowed(&'static str),
}

/// An order as folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Order {
    pub placed: Option<OrderPlaced>,
    pub status: Option<OrderStatus>,
    pub shipping_address: Option<ShippingAddress>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl Order {
    fn current(&self) -> Result<(&OrderPlaced, OrderStatus), OrderError> {
        match (&self.placed, self.status) {
            (Some(p), Some(s)) => Ok((p, s)),
            _ => Err(OrderError::NotFound),
        }
    }
}

impl Aggregate for Order {
    const KIND: &'static str = "order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;

    fn decide(
        &self,
        command: &OrderCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<OrderEvent>, OrderError> {
        let admin = ctx.actor.role.is_admin();
        match command {
            OrderCommand::Place {
                order_id,
                customer_email,
                lines,
                total,
                currency,
                shipping_address,
            } => {
                if self.placed.is_some() {
                    return Err(OrderError::AlreadyExists);
                }
                Ok(vec![OrderEvent::Placed(OrderPlaced {
                    order_id: order_id.clone(),
                    customer_email: customer_email.clone(),
                    lines: lines.clone(),
                    total_amount: *total,
                    currency: currency.clone(),
                    shipping_address: shipping_address.clone(),
                    created_by: ctx.actor.user_id.clone(),
                    created_at: ctx.now,
                })])
            }
            OrderCommand::Transition { to } => {
                let (placed, from) = self.current()?;
                if !from.may_become(*to) {
                    return Err(OrderError::InvalidTransition { from, to: *to });
                }
                let own_pending =
                    from == OrderStatus::Pending && placed.created_by == ctx.actor.user_id;
                let may = admin || (*to == OrderStatus::Cancelled && own_pending);
                if !may {
                    return Err(OrderError::NotAllowed(
                        "only an ADMIN moves orders on; a MEMBER may cancel a pending order they placed",
                    ));
                }
                Ok(vec![OrderEvent::transition(OrderStatusChanged {
                    from,
                    to: *to,
                    at: ctx.now,
                })])
            }
            OrderCommand::ChangeShipping(address) => {
                let (placed, from) = self.current()?;
                if from != OrderStatus::Pending {
                    return Err(OrderError::InvalidTransition { from, to: from });
                }
                if !admin && placed.created_by != ctx.actor.user_id {
                    return Err(OrderError::NotAllowed(
                        "only an ADMIN or whoever placed it changes an order's address",
                    ));
                }
                if self.shipping_address.as_ref() == Some(address) {
                    return Ok(vec![]);
                }
                Ok(vec![OrderEvent::ShippingChanged(ShippingChanged {
                    shipping_address: address.clone(),
                    at: ctx.now,
                })])
            }
        }
    }

    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::Placed(e) => {
                self.status = Some(OrderStatus::Pending);
                self.shipping_address = Some(e.shipping_address.clone());
                self.updated_at = Some(e.created_at);
                self.placed = Some(e.clone());
            }
            OrderEvent::Confirmed(e)
            | OrderEvent::Shipped(e)
            | OrderEvent::Delivered(e)
            | OrderEvent::Cancelled(e) => {
                self.status = Some(e.to);
                self.updated_at = Some(e.at);
            }
            OrderEvent::ShippingChanged(e) => {
                self.shipping_address = Some(e.shipping_address.clone());
                self.updated_at = Some(e.at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workflow_moves_forward_and_cancels_only_early() {
        use OrderStatus::*;
        assert!(Pending.may_become(Confirmed));
        assert!(Confirmed.may_become(Shipped));
        assert!(Shipped.may_become(Delivered));
        assert!(Pending.may_become(Cancelled) && Confirmed.may_become(Cancelled));
        assert!(!Shipped.may_become(Cancelled));
        assert!(!Delivered.may_become(Cancelled));
        assert!(!Pending.may_become(Shipped));
        assert!(!Cancelled.may_become(Confirmed));
    }
}
