//! Which of the tenant's customers a caller sees (seed 002: an agent works on the clients
//! assigned to them). Under the tenant's `customer_access: assigned`, a MEMBER sees only
//! the customers whose agent they are (`PUT /customers/{id}/agent`), and of every view only
//! the rows of those customers: a row names its customer in `customer_id`, and a row that
//! names none (a task, a product, a staff user) belongs to no customer. Everything else is
//! 404, as another tenant's data is. `query::row_of` and `query::page_of` apply the scope
//! to every read of a view, so a resource cannot forget it; a route that acts on a
//! customer's data without reading its row first asks `sees`.

use crate::app::AppState;
use crate::error::ApiError;
use crate::tokens::Principal;
use domain::Role;
use domain::tenant::CustomerAccess;
use projections::Within;
use projections::customers::VIEW as CUSTOMERS;
use serde_json::Value;
use std::collections::BTreeSet;

/// The field by which a row of any view names its customer.
pub const CUSTOMER_FIELD: &str = "customer_id";

/// Customers read per page while collecting an agent's.
const PAGE: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientScope {
    /// Every customer of the tenant.
    #[default]
    All,
    /// Only the customers whose agent the caller is.
    Assigned,
}

impl ClientScope {
    /// The scope of `principal` in a tenant whose setting is `access`: only a MEMBER is
    /// ever narrowed; ADMINs and OWNERs see every customer, and a CUSTOMER's portal routes
    /// are bound to their own customer by the policy.
    pub fn of(principal: &Principal, access: CustomerAccess) -> Self {
        match (principal.actor.role, access) {
            (Role::Member, CustomerAccess::Assigned) => Self::Assigned,
            _ => Self::All,
        }
    }
}

/// Whether the caller sees customer `id` (false for one the tenant does not have).
pub(crate) async fn sees(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<bool, ApiError> {
    if principal.scope == ClientScope::All {
        return Ok(true);
    }
    let row = state.views.get(CUSTOMERS, &principal.tenant_id, id).await?;
    Ok(row
        .and_then(|r| r.doc)
        .is_some_and(|d| sees_customer(principal, &d)))
}

/// Whether the caller sees the customer whose row (of the customers view) is `doc`.
pub(crate) fn sees_customer(principal: &Principal, doc: &Value) -> bool {
    principal.scope == ClientScope::All
        || doc["agent_id"].as_str() == Some(principal.actor.user_id.as_str())
}

/// Whether the caller sees a row (`doc`) of any view.
pub(crate) async fn sees_row(
    state: &AppState,
    principal: &Principal,
    doc: &Value,
) -> Result<bool, ApiError> {
    match doc.get(CUSTOMER_FIELD) {
        None | Some(Value::Null) => Ok(true),
        Some(Value::String(id)) => sees(state, principal, id).await,
        Some(_) => Ok(principal.scope == ClientScope::All),
    }
}

/// Whether the caller sees any of the accounts `ids` (a transaction is seen by whoever
/// sees one of its accounts).
pub(crate) async fn sees_any_account(
    state: &AppState,
    principal: &Principal,
    ids: &[String],
) -> Result<bool, ApiError> {
    if principal.scope == ClientScope::All {
        return Ok(true);
    }
    for id in ids {
        let account = state
            .views
            .get(
                projections::accounts::VIEW,
                &principal.tenant_id,
                id.as_str(),
            )
            .await?;
        if let Some(doc) = account.and_then(|r| r.doc)
            && sees_row(state, principal, &doc).await?
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// What the caller's list queries are limited to: `None` when they see every customer,
/// else the rows of the customers whose agent they are.
pub(crate) async fn within(
    state: &AppState,
    principal: &Principal,
) -> Result<Option<Within>, ApiError> {
    if principal.scope == ClientScope::All {
        return Ok(None);
    }
    let mut values = BTreeSet::new();
    let mut after = None;
    loop {
        let query = projections::ListQuery {
            filters: vec![(
                "agent_id".to_owned(),
                principal.actor.user_id.as_str().to_owned(),
            )],
            after: after.take(),
            limit: PAGE,
            ..Default::default()
        };
        let rows = state
            .views
            .list(CUSTOMERS, &principal.tenant_id, &query)
            .await?;
        let full = rows.len() == PAGE;
        after = rows.last().map(|r| r.row_id.clone());
        values.extend(rows.into_iter().map(|r| r.row_id));
        if !full {
            break;
        }
    }
    Ok(Some(Within {
        field: CUSTOMER_FIELD.to_owned(),
        values,
    }))
}
