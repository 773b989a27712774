//! The accounts read model: one row per account, as `GET /accounts/{id}` and
//! `GET /customers/{id}/accounts` serve it: balance, what is available, status.

use crate::ports::ProjectionError;
use chrono::{DateTime, Utc};
use domain::account::{
    Account, AccountEvent, AccountNumber, AccountOpened, AccountType, Balance, Status,
};
use domain::money::{Currency, Money};
use serde::{Deserialize, Serialize};

pub const VIEW: &str = "accounts";

/// An account as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = Account))]
pub struct AccountView {
    pub account_id: String,
    pub tenant_id: String,
    pub customer_id: String,
    pub account_number: AccountNumber,
    #[serde(rename = "type")]
    pub account_type: AccountType,
    pub currency: Currency,
    /// The fold of the account's postings.
    pub balance: Balance,
    /// The balance and the overdraft: what may be taken out.
    pub available: Balance,
    pub overdraft_limit: Money,
    pub status: Status,
    #[serde(with = "domain::time::rfc3339")]
    pub opened_at: DateTime<Utc>,
    #[serde(with = "domain::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
    pub version: u64,
}

impl AccountView {
    pub fn from_state(tenant_id: &str, a: &Account, version: u64) -> Option<Self> {
        let o = a.opened.as_ref()?;
        Some(Self {
            account_id: o.account_id.clone(),
            tenant_id: tenant_id.to_owned(),
            customer_id: o.customer_id.clone(),
            account_number: o.number.clone(),
            account_type: o.account_type,
            currency: o.currency.clone(),
            balance: a.balance,
            available: a.available(),
            overdraft_limit: o.overdraft_limit,
            status: a.status,
            opened_at: o.opened_at,
            updated_at: a.updated_at.unwrap_or(o.opened_at),
            version,
        })
    }
}

crate::state_projection!(
    /// Folds account events into `AccountView` rows through the aggregate's `apply`.
    AccountsProjection,
    AccountView
);

impl crate::ports::StateView for AccountView {
    type Aggregate = Account;
    const VIEW: &'static str = VIEW;

    fn starts(e: &AccountEvent) -> bool {
        matches!(e, AccountEvent::Opened(_))
    }

    fn of_state(tenant_id: &str, state: &Account, version: u64) -> Option<Self> {
        Self::from_state(tenant_id, state, version)
    }

    fn into_state(self) -> Result<Account, ProjectionError> {
        Ok(Account {
            opened: Some(AccountOpened {
                account_id: self.account_id,
                customer_id: self.customer_id,
                number: self.account_number,
                account_type: self.account_type,
                currency: self.currency,
                overdraft_limit: self.overdraft_limit,
                opened_at: self.opened_at,
            }),
            status: self.status,
            balance: self.balance,
            updated_at: Some(self.updated_at),
        })
    }
}
