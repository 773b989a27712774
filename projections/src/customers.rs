//! The customers read model: one row per Salesforce Account of the tenant, as
//! `GET /customers` serves it; a deleted Account leaves no row. Folded through the
//! aggregate's own `apply`.

use crate::ports::ProjectionError;
use chrono::{DateTime, Utc};
use domain::customer::{Customer, CustomerEvent, CustomerFields};
use serde::{Deserialize, Serialize};

pub const VIEW: &str = "customers";

/// A customer as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = Customer))]
pub struct CustomerView {
    /// The Salesforce Account Id.
    pub customer_id: String,
    pub tenant_id: String,
    pub name: String,
    pub industry: Option<String>,
    pub phone: Option<String>,
    pub website: Option<String>,
    pub billing_city: Option<String>,
    pub billing_country: Option<String>,
    /// The primary Contact's name and email, where the Account has one.
    pub contact_name: Option<String>,
    pub contact_email: Option<String>,
    /// Salesforce's SystemModstamp of the version synced.
    #[serde(with = "domain::time::rfc3339")]
    pub system_modstamp: DateTime<Utc>,
    #[serde(with = "domain::time::rfc3339")]
    pub imported_at: DateTime<Utc>,
    #[serde(with = "domain::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
    pub last_sync_id: String,
    /// The staff user who serves the customer (`PUT /customers/{id}/agent`), if any.
    pub agent_id: Option<String>,
    pub version: u64,
}

impl CustomerView {
    pub fn from_state(tenant_id: &str, c: &Customer, version: u64) -> Option<Self> {
        let id = c.customer_id.as_ref().filter(|_| !c.deleted)?;
        let f = &c.fields;
        Some(Self {
            customer_id: id.clone(),
            tenant_id: tenant_id.to_owned(),
            name: f.name.clone(),
            industry: f.industry.clone(),
            phone: f.phone.clone(),
            website: f.website.clone(),
            billing_city: f.billing_city.clone(),
            billing_country: f.billing_country.clone(),
            contact_name: f.contact_name.clone(),
            contact_email: f.contact_email.clone(),
            system_modstamp: c.system_modstamp?,
            imported_at: c.imported_at?,
            updated_at: c.updated_at?,
            last_sync_id: c.last_sync_id.clone()?,
            agent_id: c.agent_id.as_ref().map(ToString::to_string),
            version,
        })
    }

    fn state(self) -> Result<Customer, ProjectionError> {
        let agent_id = self
            .agent_id
            .as_deref()
            .map(domain::UserId::parse)
            .transpose()
            .map_err(|e| ProjectionError(e.to_string()))?;
        Ok(Customer {
            customer_id: Some(self.customer_id),
            fields: CustomerFields {
                name: self.name,
                industry: self.industry,
                phone: self.phone,
                website: self.website,
                billing_city: self.billing_city,
                billing_country: self.billing_country,
                contact_name: self.contact_name,
                contact_email: self.contact_email,
            },
            deleted: false,
            system_modstamp: Some(self.system_modstamp),
            imported_at: Some(self.imported_at),
            updated_at: Some(self.updated_at),
            last_sync_id: Some(self.last_sync_id),
            agent_id,
        })
    }
}

crate::state_projection!(CustomersProjection, CustomerView);

impl crate::ports::StateView for CustomerView {
    type Aggregate = Customer;
    const VIEW: &'static str = VIEW;

    /// A deleted customer leaves a tombstone; a re-import starts it again.
    fn starts(e: &CustomerEvent) -> bool {
        matches!(e, CustomerEvent::Imported(_))
    }

    fn of_state(tenant_id: &str, state: &Customer, version: u64) -> Option<Self> {
        Self::from_state(tenant_id, state, version)
    }

    fn into_state(self) -> Result<Customer, ProjectionError> {
        self.state()
    }
}
