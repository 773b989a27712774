//! The products read model: one row per live product, as `GET /products` serves it.
//! Rows fold through the aggregate's own `apply`, so the model cannot drift from what
//! commands see; a deleted product's row goes.

use crate::ports::ProjectionError;
use chrono::{DateTime, Utc};
use domain::money::Amount;
use domain::product::{
    Category, Product, ProductCreated, ProductDescription, ProductEvent, ProductName, Sku,
};
use domain::{EventEnvelope, UserId};
use serde::{Deserialize, Serialize};

pub const VIEW: &str = "products";

/// A product as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = Product))]
pub struct ProductView {
    pub product_id: String,
    pub tenant_id: String,
    pub name: String,
    pub description: String,
    pub price: Amount,
    pub category: String,
    pub sku: String,
    /// Units in stock, not counting those orders hold.
    pub inventory: u32,
    pub created_by: String,
    #[serde(with = "domain::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "domain::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
    pub version: u64,
}

impl ProductView {
    /// The view of a live product's state; `None` for a missing or deleted one.
    pub fn from_state(tenant_id: &str, p: &Product, version: u64) -> Option<Self> {
        let created = p.created.as_ref().filter(|_| !p.deleted)?;
        Some(Self {
            product_id: created.product_id.clone(),
            tenant_id: tenant_id.to_owned(),
            name: p.name.as_ref()?.as_str().to_owned(),
            description: p.description.as_ref()?.as_str().to_owned(),
            price: p.price.clone(),
            category: p.category.as_ref()?.as_str().to_owned(),
            sku: created.sku.as_str().to_owned(),
            inventory: p.inventory,
            created_by: created.created_by.to_string(),
            created_at: created.created_at,
            updated_at: p.updated_at.unwrap_or(created.created_at),
            version,
        })
    }

    /// The aggregate state this row shows, for folding the next event into it.
    fn state(&self) -> Result<Product, ProjectionError> {
        let bad =
            |e: &dyn std::fmt::Display| ProjectionError(format!("unreadable product row: {e}"));
        let name = ProductName::parse(&self.name).map_err(|e| bad(&e))?;
        let description = ProductDescription::parse(&self.description).map_err(|e| bad(&e))?;
        let category = Category::parse(&self.category).map_err(|e| bad(&e))?;
        Ok(Product {
            created: Some(ProductCreated {
                product_id: self.product_id.clone(),
                name: name.clone(),
                description: description.clone(),
                price: self.price.clone(),
                category: category.clone(),
                sku: Sku::parse(&self.sku).map_err(|e| bad(&e))?,
                inventory: self.inventory,
                quota_shard: 0,
                created_by: UserId::parse(&self.created_by).map_err(|e| bad(&e))?,
                created_at: self.created_at,
            }),
            name: Some(name),
            description: Some(description),
            price: self.price.clone(),
            category: Some(category),
            inventory: self.inventory,
            reserved: 0,
            updated_at: Some(self.updated_at),
            deleted: false,
        })
    }
}

crate::state_projection!(ProductsProjection, ProductView);

impl crate::ports::StateView for ProductView {
    type Aggregate = Product;
    const VIEW: &'static str = VIEW;

    fn starts(e: &ProductEvent) -> bool {
        matches!(e, ProductEvent::Created(_))
    }

    fn of_state(tenant_id: &str, state: &Product, version: u64) -> Option<Self> {
        Self::from_state(tenant_id, state, version)
    }

    fn into_state(self) -> Result<Product, ProjectionError> {
        self.state()
    }

    /// Stock released to a product deleted since: nothing to show.
    fn after_the_end(event: &EventEnvelope) -> bool {
        event.event_type == "InventoryReleased"
    }
}
