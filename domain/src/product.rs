//! The Product aggregate (seed 003): a catalogue entry with a price and an inventory that
//! never goes below zero. Orders reserve stock on it (`Reserve`) and give it back when
//! cancelled (`Release`), in the same atomic append as the order; an ADMIN adjusts it.
//! The SKU is unique per tenant through a `SkuReservation` stream written in the same
//! append as the product.

use crate::aggregate::{Aggregate, CommandContext};
use crate::ids::{UserId, ValidationError};
use crate::money::{Amount, Currency, Money};
use crate::rules::{Pattern, TextRule};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const NAME_MAX_CHARS: usize = 200;
pub const DESCRIPTION_MAX_CHARS: usize = 4000;
pub const CATEGORY_MAX_CHARS: usize = 100;
/// The most units a product may hold, and the largest single change of its stock.
pub const MAX_INVENTORY: u32 = 1_000_000_000;

crate::bounded_int!(
    /// Units of a product in stock.
    Stock(u32),
    0,
    MAX_INVENTORY,
    "units in stock, 0 to 1000000000"
);

crate::bounded_int!(
    /// A change of a product's stock: positive adds units, negative takes them away.
    StockDelta(i64),
    -1_000_000_000,
    1_000_000_000,
    "units to add (positive) or take away (negative); the stock never goes below zero"
);

macro_rules! text_value {
    ($(#[$meta:meta])* $name:ident, $field:literal, $rule:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            pub const RULE: TextRule = $rule;

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

text_value!(
    /// A product's name: not blank, no control characters; kept without surrounding spaces.
    ProductName,
    "name",
    TextRule {
        no_control: true,
        not_blank: true,
        ..TextRule::chars(1, NAME_MAX_CHARS, "The product's name; surrounding whitespace is removed.")
    }
);
text_value!(
    /// Free text about a product.
    ProductDescription,
    "description",
    TextRule::chars(0, DESCRIPTION_MAX_CHARS, "Free text.")
);
text_value!(
    /// The catalogue section a product is listed under.
    Category,
    "category",
    TextRule {
        no_control: true,
        not_blank: true,
        ..TextRule::chars(1, CATEGORY_MAX_CHARS, "The product's category, as in Electronics.")
    }
);

static SKU: Pattern = Pattern::new(r"^[A-Za-z0-9._-]+$");

text_value!(
    /// A stock-keeping unit: unique per tenant, compared as written.
    Sku,
    "sku",
    TextRule {
        pattern: Some(&SKU),
        ..TextRule::chars(1, 64, "letters, digits and . _ -; unique in the tenant")
    }
);

impl Sku {
    /// The instance id of this SKU's reservation stream.
    pub fn reservation_id(&self) -> String {
        hex::encode(&Sha256::digest(self.0.as_bytes())[..16])
    }
}

text_value!(
    /// Why the stock changed, for the audit trail.
    AdjustmentReason,
    "reason",
    TextRule {
        no_control: true,
        not_blank: true,
        ..TextRule::chars(1, 200, "Why the stock changed, as in \"restock\" or \"damaged\".")
    }
);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProductCommand {
    Create {
        product_id: String,
        name: ProductName,
        description: ProductDescription,
        /// In the tenant's currency at the time.
        price: Amount,
        category: Category,
        sku: Sku,
        inventory: u32,
        /// The `max_products` quota shard the product holds a unit of.
        quota_shard: u32,
    },
    Update {
        name: Option<ProductName>,
        description: Option<ProductDescription>,
        price: Option<Amount>,
        category: Option<Category>,
    },
    /// An ADMIN's correction of the stock, up or down.
    AdjustInventory {
        delta: i64,
        reason: String,
    },
    /// An order takes `quantity` units.
    Reserve {
        order_id: String,
        quantity: u32,
    },
    /// A cancelled order gives its units back.
    Release {
        order_id: String,
        quantity: u32,
    },
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductCreated {
    pub product_id: String,
    pub name: ProductName,
    pub description: ProductDescription,
    pub price: Amount,
    pub category: Category,
    pub sku: Sku,
    pub inventory: u32,
    /// The `max_products` quota shard the product holds a unit of; freed on deletion.
    #[serde(default)]
    pub quota_shard: u32,
    pub created_by: UserId,
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductUpdated {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<ProductName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<ProductDescription>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    #[serde(with = "crate::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryAdjusted {
    pub delta: i64,
    pub reason: String,
    pub inventory: u32,
    #[serde(with = "crate::time::rfc3339")]
    pub adjusted_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryMoved {
    pub order_id: String,
    pub quantity: u32,
    /// The stock after the move.
    pub inventory: u32,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductDeleted {
    #[serde(with = "crate::time::rfc3339")]
    pub deleted_at: DateTime<Utc>,
}

crate::domain_events!(ProductEvent, "product" {
    Created(ProductCreated) = "ProductCreated",
    Updated(ProductUpdated) = "ProductUpdated",
    InventoryAdjusted(InventoryAdjusted) = "InventoryAdjusted",
    InventoryReserved(InventoryMoved) = "InventoryReserved",
    InventoryReleased(InventoryMoved) = "InventoryReleased",
    Deleted(ProductDeleted) = "ProductDeleted",
});

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProductError {
    #[error("the product already exists")]
    AlreadyExists,
    #[error("no such product")]
    NotFound,
    #[error("the product was deleted")]
    Deleted,
    #[error("only an ADMIN may change products")]
    NotAllowed,
    /// Not enough stock for the change.
    #[error("{sku}: {requested} requested, {available} in stock")]
    InsufficientStock {
        sku: String,
        requested: u64,
        available: u32,
    },
    #[error("inventory may hold at most {MAX_INVENTORY} units")]
    TooMuchStock,
}

/// A product as folded from its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub created: Option<ProductCreated>,
    pub name: Option<ProductName>,
    pub description: Option<ProductDescription>,
    pub price: Amount,
    pub category: Option<Category>,
    pub inventory: u32,
    /// Units held by orders not cancelled.
    pub reserved: u64,
    pub updated_at: Option<DateTime<Utc>>,
    pub deleted: bool,
}

impl Default for Product {
    fn default() -> Self {
        Self {
            created: None,
            name: None,
            description: None,
            price: Amount {
                amount: Money::ZERO,
                currency: Currency::default(),
            },
            category: None,
            inventory: 0,
            reserved: 0,
            updated_at: None,
            deleted: false,
        }
    }
}

impl Product {
    pub fn exists(&self) -> bool {
        self.created.is_some()
    }

    pub fn sku(&self) -> Option<&Sku> {
        self.created.as_ref().map(|c| &c.sku)
    }

    fn live(&self) -> Result<&ProductCreated, ProductError> {
        let created = self.created.as_ref().ok_or(ProductError::NotFound)?;
        if self.deleted {
            return Err(ProductError::Deleted);
        }
        Ok(created)
    }

    fn short(&self, requested: u64) -> ProductError {
        ProductError::InsufficientStock {
            sku: self
                .sku()
                .map_or_else(String::new, |s| s.as_str().to_owned()),
            requested,
            available: self.inventory,
        }
    }
}

impl Aggregate for Product {
    const KIND: &'static str = "product";
    type Command = ProductCommand;
    type Event = ProductEvent;
    type Error = ProductError;

    fn decide(
        &self,
        command: &ProductCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<ProductEvent>, ProductError> {
        let now = ctx.now;
        let admin = ctx.actor.role.is_admin();
        match command {
            ProductCommand::Create {
                product_id,
                name,
                description,
                price,
                category,
                sku,
                inventory,
                quota_shard,
            } => {
                if !admin {
                    return Err(ProductError::NotAllowed);
                }
                if self.exists() {
                    return Err(ProductError::AlreadyExists);
                }
                if *inventory > MAX_INVENTORY {
                    return Err(ProductError::TooMuchStock);
                }
                Ok(vec![ProductEvent::Created(ProductCreated {
                    product_id: product_id.clone(),
                    name: name.clone(),
                    description: description.clone(),
                    price: price.clone(),
                    category: category.clone(),
                    sku: sku.clone(),
                    inventory: *inventory,
                    quota_shard: *quota_shard,
                    created_by: ctx.actor.user_id.clone(),
                    created_at: now,
                })])
            }
            ProductCommand::Update {
                name,
                description,
                price,
                category,
            } => {
                if !admin {
                    return Err(ProductError::NotAllowed);
                }
                self.live()?;
                let name = name.as_ref().filter(|n| self.name.as_ref() != Some(*n));
                let description = description
                    .as_ref()
                    .filter(|d| self.description.as_ref() != Some(*d));
                let price = price.as_ref().filter(|p| **p != self.price);
                let category = category
                    .as_ref()
                    .filter(|c| self.category.as_ref() != Some(*c));
                if name.is_none() && description.is_none() && price.is_none() && category.is_none()
                {
                    return Ok(vec![]);
                }
                Ok(vec![ProductEvent::Updated(ProductUpdated {
                    name: name.cloned(),
                    description: description.cloned(),
                    price: price.cloned(),
                    category: category.cloned(),
                    updated_at: now,
                })])
            }
            ProductCommand::AdjustInventory { delta, reason } => {
                if !admin {
                    return Err(ProductError::NotAllowed);
                }
                self.live()?;
                let after = i64::from(self.inventory) + delta;
                if after < 0 {
                    return Err(self.short(delta.unsigned_abs()));
                }
                let after = u32::try_from(after)
                    .ok()
                    .filter(|a| *a <= MAX_INVENTORY)
                    .ok_or(ProductError::TooMuchStock)?;
                Ok(vec![ProductEvent::InventoryAdjusted(InventoryAdjusted {
                    delta: *delta,
                    reason: reason.clone(),
                    inventory: after,
                    adjusted_at: now,
                })])
            }
            ProductCommand::Reserve { order_id, quantity } => {
                self.live()?;
                let after = self
                    .inventory
                    .checked_sub(*quantity)
                    .ok_or_else(|| self.short(u64::from(*quantity)))?;
                Ok(vec![ProductEvent::InventoryReserved(InventoryMoved {
                    order_id: order_id.clone(),
                    quantity: *quantity,
                    inventory: after,
                    at: now,
                })])
            }
            // Stock comes back even to a deleted product: the units exist.
            ProductCommand::Release { order_id, quantity } => {
                self.created.as_ref().ok_or(ProductError::NotFound)?;
                let after = self.inventory.saturating_add(*quantity);
                Ok(vec![ProductEvent::InventoryReleased(InventoryMoved {
                    order_id: order_id.clone(),
                    quantity: *quantity,
                    inventory: after,
                    at: now,
                })])
            }
            ProductCommand::Delete => {
                if !admin {
                    return Err(ProductError::NotAllowed);
                }
                self.live()?;
                Ok(vec![ProductEvent::Deleted(ProductDeleted {
                    deleted_at: now,
                })])
            }
        }
    }

    fn apply(&mut self, event: &ProductEvent) {
        match event {
            ProductEvent::Created(e) => {
                self.name = Some(e.name.clone());
                self.description = Some(e.description.clone());
                self.price = e.price.clone();
                self.category = Some(e.category.clone());
                self.inventory = e.inventory;
                self.updated_at = Some(e.created_at);
                self.created = Some(e.clone());
            }
            ProductEvent::Updated(e) => {
                if let Some(n) = &e.name {
                    self.name = Some(n.clone());
                }
                if let Some(d) = &e.description {
                    self.description = Some(d.clone());
                }
                if let Some(p) = &e.price {
                    self.price = p.clone();
                }
                if let Some(c) = &e.category {
                    self.category = Some(c.clone());
                }
                self.updated_at = Some(e.updated_at);
            }
            ProductEvent::InventoryAdjusted(e) => {
                self.inventory = e.inventory;
                self.updated_at = Some(e.adjusted_at);
            }
            ProductEvent::InventoryReserved(e) => {
                self.inventory = e.inventory;
                self.reserved += u64::from(e.quantity);
                self.updated_at = Some(e.at);
            }
            ProductEvent::InventoryReleased(e) => {
                self.inventory = e.inventory;
                self.reserved = self.reserved.saturating_sub(u64::from(e.quantity));
                self.updated_at = Some(e.at);
            }
            ProductEvent::Deleted(e) => {
                self.deleted = true;
                self.updated_at = Some(e.deleted_at);
            }
        }
    }
}

/// A SKU's reservation: the product that holds it. Created with "no stream" in the
/// product's own append, so a second product with the SKU conflicts and writes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkuReservation {
    pub product_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuReserved {
    pub product_id: String,
}

crate::domain_events!(SkuEvent, "sku" {
    Reserved(SkuReserved) = "SkuReserved",
});

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the SKU is already taken")]
pub struct SkuTaken;

impl Aggregate for SkuReservation {
    const KIND: &'static str = "sku";
    type Command = String;
    type Event = SkuEvent;
    type Error = SkuTaken;

    fn decide(&self, product_id: &String, _: &CommandContext) -> Result<Vec<SkuEvent>, SkuTaken> {
        if self.product_id.is_some() {
            return Err(SkuTaken);
        }
        Ok(vec![SkuEvent::Reserved(SkuReserved {
            product_id: product_id.clone(),
        })])
    }

    fn apply(&mut self, event: &SkuEvent) {
        let SkuEvent::Reserved(e) = event;
        self.product_id = Some(e.product_id.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Actor;
    use crate::aggregate::Role;

    fn ctx(role: Role) -> CommandContext {
        CommandContext {
            actor: Actor {
                user_id: UserId::parse("ann").expect("id"),
                role,
            },
            now: Utc::now(),
        }
    }

    fn created(inventory: u32) -> Product {
        let mut p = Product::default();
        let events = p
            .decide(
                &ProductCommand::Create {
                    product_id: "p1".into(),
                    name: ProductName::parse("Laptop").expect("name"),
                    description: ProductDescription::parse("").expect("d"),
                    price: Amount {
                        amount: Money::parse("999.99").expect("price"),
                        currency: Currency::default(),
                    },
                    category: Category::parse("Electronics").expect("c"),
                    sku: Sku::parse("LAP-001").expect("sku"),
                    inventory,
                    quota_shard: 0,
                },
                &ctx(Role::Admin),
            )
            .expect("created");
        for e in &events {
            p.apply(e);
        }
        p
    }

    #[test]
    fn stock_never_goes_below_zero() {
        let mut p = created(2);
        let take = |n| ProductCommand::Reserve {
            order_id: "o".into(),
            quantity: n,
        };
        let events = p.decide(&take(2), &ctx(Role::Member)).expect("reserved");
        for e in &events {
            p.apply(e);
        }
        assert_eq!(p.inventory, 0);
        assert!(matches!(
            p.decide(&take(1), &ctx(Role::Member)),
            Err(ProductError::InsufficientStock { available: 0, .. })
        ));
        let down = ProductCommand::AdjustInventory {
            delta: -1,
            reason: "count".into(),
        };
        assert!(p.decide(&down, &ctx(Role::Admin)).is_err());
    }

    #[test]
    fn only_an_admin_changes_the_catalogue() {
        let p = created(1);
        assert_eq!(
            p.decide(&ProductCommand::Delete, &ctx(Role::Member)),
            Err(ProductError::NotAllowed)
        );
        assert!(p.decide(&ProductCommand::Delete, &ctx(Role::Admin)).is_ok());
    }
}
