//! The Transaction aggregate: one movement of money, with its legs on one account (a
//! deposit, a withdrawal, a fee, interest) or two (a transfer), appended in the same
//! append as the accounts' postings. Its stream's id comes from its `reference`, so a
//! repeated reference finds the stream taken and never posts twice. A reversal is a new
//! transaction of the opposite legs, and marks the original reversed, once.

use crate::account::{Kind, Posting};
use crate::aggregate::{Aggregate, CommandContext};
use crate::ids::UserId;
use crate::ids::ValidationError;
use crate::money::{Currency, Money};
use crate::rules::{Pattern, TextRule};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

static REFERENCE: Pattern = Pattern::new(r"^[!-~]+$");

/// The poster's own reference of a transaction (a payment order number, a file's line):
/// 1-100 visible ASCII characters. The same reference is never posted twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference(String);

impl Reference {
    pub const RULE: TextRule = TextRule {
        pattern: Some(&REFERENCE),
        ..TextRule::chars(
            1,
            100,
            "Your reference: 1 to 100 visible ASCII characters; a reference already posted is refused (409).",
        )
    };

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        Self::RULE.check("reference", value)?;
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of the transaction of this reference: the same reference, the same stream.
    pub fn transaction_id(&self) -> String {
        hex::encode(&Sha256::digest(format!("reference\n{}", self.0).as_bytes())[..16])
    }
}

crate::rules::text_serde!(Reference);
crate::rules::text_schema!(Reference, "Reference");

/// One side of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Leg {
    pub account_id: String,
    /// Money in (true) or out.
    pub credit: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionPosted {
    pub transaction_id: String,
    pub kind: Kind,
    pub legs: Vec<Leg>,
    pub amount: Money,
    pub currency: Currency,
    pub reference: String,
    pub value_date: NaiveDate,
    /// The transaction a reversal undoes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverses: Option<String>,
    pub posted_by: UserId,
    #[serde(with = "crate::time::rfc3339")]
    pub posted_at: DateTime<Utc>,
}

impl TransactionPosted {
    /// The posting of each leg, for the accounts.
    pub fn postings(&self) -> Vec<(String, Posting)> {
        self.legs
            .iter()
            .map(|leg| {
                let counterparty = self
                    .legs
                    .iter()
                    .find(|o| o.account_id != leg.account_id)
                    .map(|o| o.account_id.clone());
                (
                    leg.account_id.clone(),
                    Posting {
                        transaction_id: self.transaction_id.clone(),
                        kind: self.kind,
                        credit: leg.credit,
                        amount: self.amount,
                        currency: self.currency.clone(),
                        reference: self.reference.clone(),
                        value_date: self.value_date,
                        counterparty,
                    },
                )
            })
            .collect()
    }
}

impl TransactionPosted {
    /// The reversal of this transaction: the opposite legs, the same amount, under the
    /// reference `reversal:{id}` (so a transaction is reversed once), valued on `value_date`.
    pub fn reversal(&self, value_date: NaiveDate) -> NewTransaction {
        let reference = Reference(format!("reversal:{}", self.transaction_id));
        NewTransaction {
            transaction_id: reference.transaction_id(),
            kind: Kind::Reversal,
            legs: self
                .legs
                .iter()
                .map(|l| Leg {
                    account_id: l.account_id.clone(),
                    credit: !l.credit,
                })
                .collect(),
            amount: self.amount,
            currency: self.currency.clone(),
            reference: reference.0,
            value_date,
            reverses: Some(self.transaction_id.clone()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionReversed {
    pub reversal_id: String,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

crate::domain_events!(TransactionEvent, "transaction" {
    Posted(TransactionPosted) = "TransactionPosted",
    Reversed(TransactionReversed) = "TransactionReversed",
});

/// What a new transaction is, before it is posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTransaction {
    pub transaction_id: String,
    pub kind: Kind,
    pub legs: Vec<Leg>,
    pub amount: Money,
    pub currency: Currency,
    pub reference: String,
    pub value_date: NaiveDate,
    pub reverses: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionCommand {
    Post(NewTransaction),
    MarkReversed { reversal_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    #[error("no such transaction")]
    NotFound,
    #[error("the transaction was reversed already, by {0}")]
    AlreadyReversed(String),
    #[error("a reversal is not reversed: post a new transaction instead")]
    IsReversal,
    #[error("the amount must be more than zero")]
    ZeroAmount,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transaction {
    pub posted: Option<TransactionPosted>,
    pub reversed_by: Option<String>,
}

impl Aggregate for Transaction {
    const KIND: &'static str = "transaction";
    type Command = TransactionCommand;
    type Event = TransactionEvent;
    type Error = TransactionError;

    fn decide(
        &self,
        command: &TransactionCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<TransactionEvent>, TransactionError> {
        match command {
            TransactionCommand::Post(t) => {
                if t.amount == Money::ZERO {
                    return Err(TransactionError::ZeroAmount);
                }
                Ok(vec![TransactionEvent::Posted(TransactionPosted {
                    transaction_id: t.transaction_id.clone(),
                    kind: t.kind,
                    legs: t.legs.clone(),
                    amount: t.amount,
                    currency: t.currency.clone(),
                    reference: t.reference.clone(),
                    value_date: t.value_date,
                    reverses: t.reverses.clone(),
                    posted_by: ctx.actor.user_id.clone(),
                    posted_at: ctx.now,
                })])
            }
            TransactionCommand::MarkReversed { reversal_id } => {
                let posted = self.posted.as_ref().ok_or(TransactionError::NotFound)?;
                if posted.kind == Kind::Reversal {
                    return Err(TransactionError::IsReversal);
                }
                if let Some(by) = &self.reversed_by {
                    return Err(TransactionError::AlreadyReversed(by.clone()));
                }
                Ok(vec![TransactionEvent::Reversed(TransactionReversed {
                    reversal_id: reversal_id.clone(),
                    at: ctx.now,
                })])
            }
        }
    }

    fn apply(&mut self, event: &TransactionEvent) {
        match event {
            TransactionEvent::Posted(p) => self.posted = Some(p.clone()),
            TransactionEvent::Reversed(r) => self.reversed_by = Some(r.reversal_id.clone()),
        }
    }
}
