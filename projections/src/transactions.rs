//! The transactions read model: one row per transaction, with its legs, and whether (and
//! by what) it was reversed, as `GET /transactions/{id}` serves it.

use crate::ports::ProjectionError;
use chrono::{DateTime, NaiveDate, Utc};
use domain::UserId;
use domain::account::Kind;
use domain::money::{Currency, Money};
use domain::transaction::{Leg, Transaction, TransactionEvent, TransactionPosted};
use serde::{Deserialize, Serialize};

pub const VIEW: &str = "transactions";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = Transaction))]
pub struct TransactionView {
    pub transaction_id: String,
    pub tenant_id: String,
    pub kind: Kind,
    pub legs: Vec<Leg>,
    pub amount: Money,
    pub currency: Currency,
    pub reference: String,
    pub value_date: NaiveDate,
    /// The transaction this one reverses.
    pub reverses: Option<String>,
    /// The reversal that undid this one.
    pub reversed_by: Option<String>,
    pub posted_by: String,
    #[serde(with = "domain::time::rfc3339")]
    pub posted_at: DateTime<Utc>,
    pub version: u64,
}

impl TransactionView {
    pub fn from_state(tenant_id: &str, t: &Transaction, version: u64) -> Option<Self> {
        let p = t.posted.as_ref()?;
        Some(Self {
            transaction_id: p.transaction_id.clone(),
            tenant_id: tenant_id.to_owned(),
            kind: p.kind,
            legs: p.legs.clone(),
            amount: p.amount,
            currency: p.currency.clone(),
            reference: p.reference.clone(),
            value_date: p.value_date,
            reverses: p.reverses.clone(),
            reversed_by: t.reversed_by.clone(),
            posted_by: p.posted_by.to_string(),
            posted_at: p.posted_at,
            version,
        })
    }
}

crate::state_projection!(
    /// Folds transaction events into `TransactionView` rows through the aggregate's `apply`.
    TransactionsProjection,
    TransactionView
);

impl crate::ports::StateView for TransactionView {
    type Aggregate = Transaction;
    const VIEW: &'static str = VIEW;

    fn starts(e: &TransactionEvent) -> bool {
        matches!(e, TransactionEvent::Posted(_))
    }

    fn of_state(tenant_id: &str, state: &Transaction, version: u64) -> Option<Self> {
        Self::from_state(tenant_id, state, version)
    }

    fn into_state(self) -> Result<Transaction, ProjectionError> {
        Ok(Transaction {
            posted: Some(TransactionPosted {
                transaction_id: self.transaction_id,
                kind: self.kind,
                legs: self.legs,
                amount: self.amount,
                currency: self.currency,
                reference: self.reference,
                value_date: self.value_date,
                reverses: self.reverses,
                posted_by: UserId::parse(self.posted_by)
                    .map_err(|e| ProjectionError(format!("unreadable transaction row: {e}")))?,
                posted_at: self.posted_at,
            }),
            reversed_by: self.reversed_by,
        })
    }
}
