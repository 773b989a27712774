//! The transaction log read model: one row per posting on an account, in the order they
//! were posted, each with the balance after it, as `GET /accounts/{id}/transactions` and
//! `GET /customers/{id}/transactions` serve it. Rows are only ever added: a posting is
//! never changed, a mistake is reversed by another.

use crate::ports::{Projection, ProjectionError};
use chrono::{DateTime, NaiveDate, Utc};
use domain::account::{AccountEvent, Balance, Kind};
use domain::money::{Currency, Money};
use domain::{DomainEvent, EventEnvelope};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const VIEW: &str = "account_lines";

/// Money in or out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Credit,
    Debit,
}

/// One posting on an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = TransactionLine))]
pub struct LineView {
    pub line_id: String,
    pub tenant_id: String,
    pub account_id: String,
    pub customer_id: String,
    pub transaction_id: String,
    pub kind: Kind,
    pub direction: Direction,
    pub amount: Money,
    pub currency: Currency,
    /// The account's balance once this posting was in.
    pub balance_after: Balance,
    pub reference: String,
    pub value_date: NaiveDate,
    /// The other account of a transfer.
    pub counterparty: Option<String>,
    #[serde(with = "domain::time::rfc3339")]
    pub posted_at: DateTime<Utc>,
    /// The account's version this posting made.
    pub version: u64,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct AccountLinesProjection;

impl Projection for AccountLinesProjection {
    fn name(&self) -> &'static str {
        VIEW
    }

    fn handles(&self, event: &EventEnvelope) -> bool {
        event.stream_id.kind() == "account"
            && matches!(
                event.event_type.as_str(),
                "AccountCredited" | "AccountDebited"
            )
    }

    /// `<account>:<version>`, zero-padded so that the rows of one account sort in order.
    fn row_id(&self, event: &EventEnvelope) -> String {
        format!("{}:{:012}", event.stream_id.instance(), event.version)
    }

    /// A line is one posting: it folds nothing before it. (Folding would read the whole
    /// account back for every new line: an import of 3,000 postings on two accounts
    /// took the projector 110 s in a debug build, against 5 s to post them.)
    fn row_per_event(&self) -> bool {
        true
    }

    fn apply(
        &self,
        _row: Option<&Value>,
        event: &EventEnvelope,
    ) -> Result<Option<Value>, ProjectionError> {
        let parsed =
            AccountEvent::from_stored(&event.event_type, event.schema_version, &event.payload)
                .map_err(|e| ProjectionError(e.to_string()))?;
        let (p, direction) = match parsed {
            AccountEvent::Credited(p) => (p, Direction::Credit),
            AccountEvent::Debited(p) => (p, Direction::Debit),
            _ => return Ok(None),
        };
        let line = LineView {
            line_id: self.row_id(event),
            tenant_id: event.tenant_id.to_string(),
            account_id: event.stream_id.instance().to_owned(),
            customer_id: p.customer_id,
            transaction_id: p.transaction_id,
            kind: p.kind,
            direction,
            amount: p.amount,
            currency: p.currency,
            balance_after: p.balance_after,
            reference: p.reference,
            value_date: p.value_date,
            counterparty: p.counterparty,
            posted_at: p.posted_at,
            version: event.version,
        };
        serde_json::to_value(line)
            .map(Some)
            .map_err(|e| ProjectionError(e.to_string()))
    }
}
