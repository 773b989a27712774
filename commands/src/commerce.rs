//! Products and orders: the commands that span several streams, on the one pipeline.
//!
//! - Creating a product writes the product, its SKU reservation ("no stream": a duplicate
//!   SKU writes nothing) and a unit of the tenant's `max_products` quota, in one append.
//! - PlaceOrder writes the order, an `InventoryReserved` on every product stream (each at
//!   the version it was read at) and a unit of the month's `max_orders` quota, in one
//!   append; a conflict re-reads and decides again until the stock decides.
//! - Cancelling writes the order's move and an `InventoryReleased` on every product.
//!
//! Quotas are split over shards (`domain::quota`) so that orders of different products do
//! not serialize behind one counter.

use crate::handler::{CommandError, CommandHandler, CommandMeta};
use crate::pipeline::{Command, Tx};
use crate::tenancy::active_tenant;
use domain::money::{Currency, Money, Overflow};
use domain::order::{
    MAX_LINES, Order, OrderCommand, OrderError, OrderEvent, OrderLine, ShippingAddress,
};
use domain::product::{Product, ProductCommand, ProductError, SkuReservation};
use domain::quota;
use domain::tenant::{Tenant, TenantError};
use domain::user::Email;
use domain::{Aggregate, EventEnvelope, StreamId, TenantId, Tier, ValidationError};
use std::collections::HashSet;
use std::sync::Arc;

/// Why a product or order command was refused.
#[derive(Debug, thiserror::Error)]
pub enum CommerceError {
    #[error(transparent)]
    Product(#[from] ProductError),
    #[error(transparent)]
    Order(#[from] OrderError),
    #[error(transparent)]
    Tenant(#[from] TenantError),
    /// The request cannot be an order (no lines, a repeated product, no such product,
    /// too little stock, an amount past the maximum); `field` names what.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

impl From<Overflow> for CommerceError {
    fn from(e: Overflow) -> Self {
        Self::Invalid(ValidationError::new("items", e.to_string()))
    }
}

impl From<std::convert::Infallible> for CommerceError {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}

fn rejected<E>(e: E) -> CommandError<CommerceError>
where
    CommerceError: From<E>,
{
    CommandError::Rejected(e.into())
}

fn lift<E: std::error::Error + 'static>(e: CommandError<E>) -> CommandError<CommerceError>
where
    CommerceError: From<E>,
{
    e.map_rejected(CommerceError::from)
}

pub fn product_stream(id: &str) -> StreamId {
    StreamId::for_aggregate(Product::KIND, id)
}

pub fn order_stream(id: &str) -> StreamId {
    StreamId::for_aggregate(Order::KIND, id)
}

fn sku_stream(sku: &domain::product::Sku) -> StreamId {
    StreamId::for_aggregate(SkuReservation::KIND, sku.reservation_id())
}

/// Takes one unit of `limit` for `key`, or refuses with the tier's limit reached.
async fn take_quota(
    tx: &mut Tx<'_>,
    tenant: &Tenant,
    limit: crate::quota::Limit<'_>,
    key: &str,
) -> Result<u32, CommandError<CommerceError>> {
    crate::quota::take(tx, limit, key)
        .await?
        .ok_or_else(|| rejected(tenant.limit_reached(limit.0, limit.1)))
}

/// A new product with its SKU and a unit of `max_products`.
pub struct CreateProduct {
    pub product_id: String,
    /// The caller's tier, for a tenant that was never signed up.
    pub tier: Tier,
    /// `Create`, with the price's currency and the shard still to be filled in.
    pub command: ProductCommand,
}

impl Command for CreateProduct {
    type Output = Product;
    type Error = CommerceError;
    const NAME: &'static str = "product";

    async fn decide(&self, tx: &mut Tx<'_>) -> Result<Product, CommandError<CommerceError>> {
        let tenant = active_tenant(tx, self.tier).await?;
        let ProductCommand::Create {
            product_id,
            name,
            description,
            price,
            category,
            sku,
            inventory,
            ..
        } = &self.command
        else {
            return Err(rejected(ProductError::NotFound));
        };
        let mut price = price.clone();
        price.currency = tenant.currency();
        let shard = take_quota(
            tx,
            &tenant,
            ("max_products", tenant.limits().max_products, ""),
            product_id,
        )
        .await?;
        let mut product = Product::default();
        let command = ProductCommand::Create {
            product_id: product_id.clone(),
            name: name.clone(),
            description: description.clone(),
            price,
            category: category.clone(),
            sku: sku.clone(),
            inventory: *inventory,
            quota_shard: shard,
        };
        let events = product.decide(&command, tx.ctx()).map_err(rejected)?;
        let reserved = SkuReservation::default()
            .decide(product_id, tx.ctx())
            .map_err(|_| CommandError::Taken("SKU"))?;
        tx.write::<Product>(&product_stream(product_id), &events);
        tx.reserve::<SkuReservation>(&sku_stream(sku), &reserved, "SKU");
        for e in &events {
            product.apply(e);
        }
        Ok(product)
    }

    async fn replayed(
        &self,
        handler: &CommandHandler,
        meta: &CommandMeta,
        events: &[Arc<EventEnvelope>],
    ) -> Result<Product, CommandError<CommerceError>> {
        handler
            .replayed_of_kind::<Product>(meta, events)
            .await
            .map_err(lift)
    }
}

/// Deletes a product and frees its unit of `max_products`.
pub struct DeleteProduct {
    pub product_id: String,
    pub if_match: Option<u64>,
}

impl Command for DeleteProduct {
    type Output = (Product, u64);
    type Error = CommerceError;
    const NAME: &'static str = "product";

    async fn decide(&self, tx: &mut Tx<'_>) -> Result<(Product, u64), CommandError<CommerceError>> {
        let stream = product_stream(&self.product_id);
        let (mut product, version) = tx.load::<Product>(&stream).await.map_err(lift)?;
        if let Some(v) = self.if_match {
            tx.pin(&stream, v)?;
        }
        let events = product
            .decide(&ProductCommand::Delete, tx.ctx())
            .map_err(rejected)?;
        let shard = product.created.as_ref().map_or(0, |c| c.quota_shard);
        crate::quota::release(tx, ("max_products", "", shard), &self.product_id).await?;
        tx.write::<Product>(&stream, &events);
        for e in &events {
            product.apply(e);
        }
        Ok((product, version + events.len() as u64))
    }
}

/// A line as the client asked for it.
#[derive(Debug, Clone)]
pub struct LineRequest {
    pub product_id: String,
    pub quantity: u32,
}

/// PlaceOrder: the order, the stock of every product it takes, and a unit of the month's
/// `max_orders`, in one append.
pub struct PlaceOrder {
    pub order_id: String,
    /// The caller's tier, for a tenant that was never signed up.
    pub tier: Tier,
    pub customer_email: Email,
    pub lines: Vec<LineRequest>,
    pub shipping_address: ShippingAddress,
}

impl PlaceOrder {
    fn check_shape(&self) -> Result<(), CommandError<CommerceError>> {
        let invalid = |reason: &str| rejected(ValidationError::new("items", reason.to_owned()));
        if self.lines.is_empty() {
            return Err(invalid("an order needs at least one line"));
        }
        if self.lines.len() > MAX_LINES {
            return Err(invalid("an order has at most 100 lines"));
        }
        let mut seen = HashSet::new();
        for l in &self.lines {
            if l.quantity == 0 {
                return Err(invalid("every quantity must be at least 1"));
            }
            if !seen.insert(l.product_id.as_str()) {
                return Err(rejected(ValidationError::new(
                    "items",
                    format!("product {} is on two lines; put it on one", l.product_id),
                )));
            }
        }
        Ok(())
    }
}

impl Command for PlaceOrder {
    type Output = Order;
    type Error = CommerceError;
    const NAME: &'static str = "order";

    fn attempts(&self) -> Option<u32> {
        // A valid order is refused only by the stock, never by writers racing it.
        Some(PATIENT)
    }

    async fn decide(&self, tx: &mut Tx<'_>) -> Result<Order, CommandError<CommerceError>> {
        self.check_shape()?;
        let tenant = active_tenant(tx, self.tier).await?;
        let currency = tenant.currency();
        let mut lines = Vec::with_capacity(self.lines.len());
        let mut total = Money::ZERO;
        for l in &self.lines {
            let stream = product_stream(&l.product_id);
            let (product, _) = tx.load::<Product>(&stream).await.map_err(lift)?;
            let missing = || {
                rejected(ValidationError::new(
                    "items",
                    format!("no product {} to order", l.product_id),
                ))
            };
            let (Some(name), false) = (&product.name, product.deleted) else {
                return Err(missing());
            };
            if product.price.currency != currency {
                return Err(rejected(ValidationError::new(
                    "items",
                    format!(
                        "product {} is priced in {}, the tenant sells in {}",
                        l.product_id,
                        product.price.currency.as_str(),
                        currency.as_str()
                    ),
                )));
            }
            let reserve = ProductCommand::Reserve {
                order_id: self.order_id.clone(),
                quantity: l.quantity,
            };
            let events = product.decide(&reserve, tx.ctx()).map_err(|e| match e {
                ProductError::InsufficientStock { .. } => {
                    rejected(ValidationError::new("items", e.to_string()))
                }
                _ => missing(),
            })?;
            let unit_price = product.price.amount;
            let subtotal = unit_price.times(l.quantity).map_err(rejected)?;
            total = total.plus(subtotal).map_err(rejected)?;
            tx.write::<Product>(&stream, &events);
            lines.push(OrderLine {
                product_id: l.product_id.clone(),
                product_name: name.as_str().to_owned(),
                unit_price,
                quantity: l.quantity,
                subtotal,
            });
        }
        let month = quota::month_of(tx.ctx().now);
        take_quota(
            tx,
            &tenant,
            ("max_orders", tenant.limits().max_orders, &month),
            &self.order_id,
        )
        .await?;
        let mut order = Order::default();
        let events = order
            .decide(
                &OrderCommand::Place {
                    order_id: self.order_id.clone(),
                    customer_email: self.customer_email.clone(),
                    lines,
                    total,
                    currency,
                    shipping_address: self.shipping_address.clone(),
                },
                tx.ctx(),
            )
            .map_err(rejected)?;
        tx.write::<Order>(&order_stream(&self.order_id), &events);
        for e in &events {
            order.apply(e);
        }
        Ok(order)
    }

    async fn replayed(
        &self,
        handler: &CommandHandler,
        meta: &CommandMeta,
        events: &[Arc<EventEnvelope>],
    ) -> Result<Order, CommandError<CommerceError>> {
        handler
            .replayed_of_kind::<Order>(meta, events)
            .await
            .map_err(lift)
    }
}

/// Retries of a command that must not fail for contention alone; the pauses between them
/// grow to a few milliseconds.
pub const PATIENT: u32 = 10_000;

/// A change of an order: a move in its workflow (a cancel gives the stock back, in the
/// same append) or, while pending, a new address.
pub struct ChangeOrder {
    pub order_id: String,
    pub command: OrderCommand,
    pub if_match: Option<u64>,
}

impl Command for ChangeOrder {
    type Output = (Order, u64);
    type Error = CommerceError;
    const NAME: &'static str = "order";

    fn attempts(&self) -> Option<u32> {
        Some(PATIENT)
    }

    async fn decide(&self, tx: &mut Tx<'_>) -> Result<(Order, u64), CommandError<CommerceError>> {
        let stream = order_stream(&self.order_id);
        let (mut order, version) = tx.load::<Order>(&stream).await.map_err(lift)?;
        if let Some(v) = self.if_match {
            tx.pin(&stream, v)?;
        }
        let events = order.decide(&self.command, tx.ctx()).map_err(rejected)?;
        if events.iter().any(|e| matches!(e, OrderEvent::Cancelled(_)))
            && let Some(placed) = &order.placed
        {
            for line in &placed.lines {
                let p_stream = product_stream(&line.product_id);
                let (product, _) = tx.load::<Product>(&p_stream).await.map_err(lift)?;
                let release = ProductCommand::Release {
                    order_id: self.order_id.clone(),
                    quantity: line.quantity,
                };
                let released = product.decide(&release, tx.ctx()).map_err(rejected)?;
                tx.write::<Product>(&p_stream, &released);
            }
        }
        tx.write::<Order>(&stream, &events);
        for e in &events {
            order.apply(e);
        }
        Ok((order, version + events.len() as u64))
    }
}

/// The currency of an order command's tenant, for answers that show money.
pub async fn tenant_currency(
    handler: &CommandHandler,
    tenant: &TenantId,
) -> Result<Currency, CommandError<CommerceError>> {
    let stream = StreamId::for_aggregate(Tenant::KIND, tenant);
    let (t, _) = handler
        .state::<Tenant>(tenant, &stream)
        .await
        .map_err(lift)?;
    Ok(t.currency())
}
