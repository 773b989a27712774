//! The Account aggregate (seed 002's accounts and transactions): a client's checking or
//! savings account in one currency, with an event-sourced ledger. The balance is the fold
//! of the account's postings and nothing is ever updated in place: a posting is an event
//! (AccountCredited, AccountDebited) that carries the balance after it, and a mistake is
//! undone by a reversal, another posting. No posting takes the account below its
//! overdraft limit, touches a frozen or closed account, or mixes currencies.

use crate::aggregate::{Aggregate, CommandContext};
use crate::ids::ValidationError;
use crate::money::{Currency, Money};
use crate::rules::{Pattern, TextRule};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

static NUMBER: Pattern = Pattern::new(r"^[0-9]{12}$");

/// An account number: ten digits and two check digits of ISO 7064 MOD 97-10 (as IBANs
/// use), so that a mistyped digit, or two swapped, is refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccountNumber(String);

impl AccountNumber {
    pub const RULE: TextRule = TextRule {
        pattern: Some(&NUMBER),
        ..TextRule::chars(
            12,
            12,
            "Twelve digits: ten, then two ISO 7064 MOD 97-10 check digits.",
        )
    };

    /// The number of ten `digits`, with its check digits.
    pub fn with_check(digits: u64) -> Self {
        let base = digits % 10_000_000_000;
        let check = 98 - (base * 100) % 97;
        Self(format!("{base:010}{check:02}"))
    }

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        Self::RULE.check("account_number", value)?;
        let n: u64 = value
            .parse()
            .map_err(|_| ValidationError::new("account_number", "not a number"))?;
        if n % 97 != 1 {
            return Err(ValidationError::new(
                "account_number",
                "the check digits do not match: the number is mistyped",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::rules::text_serde!(AccountNumber);
crate::rules::text_schema!(AccountNumber, "AccountNumber");

/// A signed amount (a balance may be below zero, within the overdraft), as a decimal
/// string with two places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Balance(pub Decimal);

impl Balance {
    pub fn as_string(self) -> String {
        format!("{:.2}", self.0)
    }
}

impl Serialize for Balance {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_string())
    }
}

impl<'de> Deserialize<'de> for Balance {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Decimal::from_str(&raw)
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Balance {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(r"^-?[0-9]+\.[0-9]{2}$"))
            .description(Some(
                "A signed decimal string of two places, as in \"-12.50\".",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Balance {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum AccountType {
    Checking,
    Savings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = AccountStatus))]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    #[default]
    Active,
    Frozen,
    Closed,
}

/// What a posting is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = TransactionKind))]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Deposit,
    Withdrawal,
    Transfer,
    Fee,
    Interest,
    /// The opposite entry of an earlier transaction.
    Reversal,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deposit => "deposit",
            Self::Withdrawal => "withdrawal",
            Self::Transfer => "transfer",
            Self::Fee => "fee",
            Self::Interest => "interest",
            Self::Reversal => "reversal",
        }
    }
}

/// One side of a transaction on this account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub transaction_id: String,
    pub kind: Kind,
    /// Credit (money in) or debit (money out).
    pub credit: bool,
    pub amount: Money,
    pub currency: Currency,
    pub reference: String,
    pub value_date: NaiveDate,
    /// The other account of a transfer.
    pub counterparty: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountCommand {
    Open {
        account_id: String,
        customer_id: String,
        number: AccountNumber,
        account_type: AccountType,
        currency: Currency,
        overdraft_limit: Money,
    },
    Freeze,
    Unfreeze,
    /// Only at a balance of zero.
    Close,
    Post(Posting),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountOpened {
    pub account_id: String,
    pub customer_id: String,
    pub number: AccountNumber,
    pub account_type: AccountType,
    pub currency: Currency,
    pub overdraft_limit: Money,
    #[serde(with = "crate::time::rfc3339")]
    pub opened_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountStatusChanged {
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostingRecorded {
    pub transaction_id: String,
    /// The account's customer, for the customer's transaction log.
    pub customer_id: String,
    pub kind: Kind,
    pub amount: Money,
    pub currency: Currency,
    /// The balance once this posting is in.
    pub balance_after: Balance,
    pub reference: String,
    pub value_date: NaiveDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterparty: Option<String>,
    #[serde(with = "crate::time::rfc3339")]
    pub posted_at: DateTime<Utc>,
}

crate::domain_events!(AccountEvent, "account" {
    Opened(AccountOpened) = "AccountOpened",
    Frozen(AccountStatusChanged) = "AccountFrozen",
    Unfrozen(AccountStatusChanged) = "AccountUnfrozen",
    Closed(AccountStatusChanged) = "AccountClosed",
    Credited(PostingRecorded) = "AccountCredited",
    Debited(PostingRecorded) = "AccountDebited",
});

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("the account already exists")]
    AlreadyExists,
    #[error("no such account")]
    NotFound,
    #[error("the account is frozen")]
    Frozen,
    #[error("the account is closed")]
    Closed,
    #[error("the account is not frozen")]
    NotFrozen,
    #[error("the account's balance is {balance}, not zero: it cannot be closed")]
    NotZero { balance: String },
    #[error("the account is in {account}, the posting in {posting}")]
    CurrencyMismatch { account: String, posting: String },
    #[error(
        "the posting would take the balance to {would_be}, below the overdraft limit of {limit}"
    )]
    InsufficientFunds { would_be: String, limit: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Account {
    pub opened: Option<AccountOpened>,
    pub status: Status,
    pub balance: Balance,
    pub updated_at: Option<DateTime<Utc>>,
}

impl Account {
    /// What may be taken out: the balance and the overdraft.
    pub fn available(&self) -> Balance {
        let overdraft = self
            .opened
            .as_ref()
            .map_or(Decimal::ZERO, |o| o.overdraft_limit.decimal());
        Balance(self.balance.0 + overdraft)
    }

    fn post(&self, p: &Posting, now: DateTime<Utc>) -> Result<AccountEvent, AccountError> {
        let opened = self.opened.as_ref().ok_or(AccountError::NotFound)?;
        match self.status {
            Status::Active => {}
            Status::Frozen => return Err(AccountError::Frozen),
            Status::Closed => return Err(AccountError::Closed),
        }
        if p.currency != opened.currency {
            return Err(AccountError::CurrencyMismatch {
                account: opened.currency.as_str().to_owned(),
                posting: p.currency.as_str().to_owned(),
            });
        }
        let amount = p.amount.decimal();
        let after = if p.credit {
            self.balance.0 + amount
        } else {
            self.balance.0 - amount
        };
        let floor = -opened.overdraft_limit.decimal();
        // A credit never fails for the overdraft, even on an account already below it.
        if !p.credit && after < floor {
            return Err(AccountError::InsufficientFunds {
                would_be: Balance(after).as_string(),
                limit: opened.overdraft_limit.as_string(),
            });
        }
        let recorded = PostingRecorded {
            transaction_id: p.transaction_id.clone(),
            customer_id: opened.customer_id.clone(),
            kind: p.kind,
            amount: p.amount,
            currency: p.currency.clone(),
            balance_after: Balance(after),
            reference: p.reference.clone(),
            value_date: p.value_date,
            counterparty: p.counterparty.clone(),
            posted_at: now,
        };
        Ok(if p.credit {
            AccountEvent::Credited(recorded)
        } else {
            AccountEvent::Debited(recorded)
        })
    }
}

impl Aggregate for Account {
    const KIND: &'static str = "account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;

    fn decide(
        &self,
        command: &AccountCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<AccountEvent>, AccountError> {
        let at = AccountStatusChanged { at: ctx.now };
        if let AccountCommand::Open {
            account_id,
            customer_id,
            number,
            account_type,
            currency,
            overdraft_limit,
        } = command
        {
            if self.opened.is_some() {
                return Err(AccountError::AlreadyExists);
            }
            return Ok(vec![AccountEvent::Opened(AccountOpened {
                account_id: account_id.clone(),
                customer_id: customer_id.clone(),
                number: number.clone(),
                account_type: *account_type,
                currency: currency.clone(),
                overdraft_limit: *overdraft_limit,
                opened_at: ctx.now,
            })]);
        }
        if self.opened.is_none() {
            return Err(AccountError::NotFound);
        }
        Ok(match command {
            AccountCommand::Open { .. } => unreachable!("decided above"),
            AccountCommand::Post(p) => vec![self.post(p, ctx.now)?],
            AccountCommand::Freeze => match self.status {
                Status::Active => vec![AccountEvent::Frozen(at)],
                Status::Frozen => Vec::new(),
                Status::Closed => return Err(AccountError::Closed),
            },
            AccountCommand::Unfreeze => match self.status {
                Status::Frozen => vec![AccountEvent::Unfrozen(at)],
                Status::Active => return Err(AccountError::NotFrozen),
                Status::Closed => return Err(AccountError::Closed),
            },
            AccountCommand::Close => match self.status {
                Status::Closed => Vec::new(),
                _ if self.balance.0 != Decimal::ZERO => {
                    return Err(AccountError::NotZero {
                        balance: self.balance.as_string(),
                    });
                }
                _ => vec![AccountEvent::Closed(at)],
            },
        })
    }

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened(e) => {
                self.updated_at = Some(e.opened_at);
                self.opened = Some(e.clone());
            }
            AccountEvent::Frozen(e) => {
                self.status = Status::Frozen;
                self.updated_at = Some(e.at);
            }
            AccountEvent::Unfrozen(e) => {
                self.status = Status::Active;
                self.updated_at = Some(e.at);
            }
            AccountEvent::Closed(e) => {
                self.status = Status::Closed;
                self.updated_at = Some(e.at);
            }
            AccountEvent::Credited(e) | AccountEvent::Debited(e) => {
                self.balance = e.balance_after;
                self.updated_at = Some(e.posted_at);
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberReserved {
    pub account_id: String,
}

crate::domain_events!(NumberEvent, "account number" {
    Reserved(NumberReserved) = "AccountNumberReserved",
});

/// `accountnumber-<number>`: holds one account number of the tenant, created with the
/// account (a reservation: a number taken already fails the opening).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NumberReservation;

impl Aggregate for NumberReservation {
    const KIND: &'static str = "accountnumber";
    type Command = String;
    type Event = NumberEvent;
    type Error = std::convert::Infallible;

    fn decide(
        &self,
        account_id: &String,
        _: &CommandContext,
    ) -> Result<Vec<NumberEvent>, Self::Error> {
        Ok(vec![NumberEvent::Reserved(NumberReserved {
            account_id: account_id.clone(),
        })])
    }

    fn apply(&mut self, _: &NumberEvent) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{Actor, Role};
    use crate::ids::UserId;

    fn ctx() -> CommandContext {
        CommandContext {
            actor: Actor {
                user_id: UserId::parse("teller").unwrap(),
                role: Role::Admin,
            },
            now: Utc::now(),
        }
    }

    fn open(overdraft: &str) -> Account {
        let mut a = Account::default();
        let c = AccountCommand::Open {
            account_id: "a1".into(),
            customer_id: "001A".into(),
            number: AccountNumber::with_check(1_234_567_890),
            account_type: AccountType::Checking,
            currency: Currency::parse("PKR").unwrap(),
            overdraft_limit: Money::parse(overdraft).unwrap(),
        };
        for e in a.decide(&c, &ctx()).unwrap() {
            a.apply(&e);
        }
        a
    }

    fn posting(credit: bool, amount: &str, currency: &str) -> AccountCommand {
        AccountCommand::Post(Posting {
            transaction_id: "t".into(),
            kind: if credit {
                Kind::Deposit
            } else {
                Kind::Withdrawal
            },
            credit,
            amount: Money::parse(amount).unwrap(),
            currency: Currency::parse(currency).unwrap(),
            reference: "r".into(),
            value_date: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            counterparty: None,
        })
    }

    fn run(a: &mut Account, c: &AccountCommand) -> Result<(), AccountError> {
        for e in a.decide(c, &ctx())? {
            a.apply(&e);
        }
        Ok(())
    }

    #[test]
    fn check_digits_catch_a_mistyped_or_swapped_digit() {
        let n = AccountNumber::with_check(1_234_567_890);
        assert_eq!(n.as_str().len(), 12);
        assert!(AccountNumber::parse(n.as_str()).is_ok());
        let mut typo: Vec<u8> = n.as_str().bytes().collect();
        typo[3] = if typo[3] == b'9' { b'0' } else { typo[3] + 1 };
        assert!(AccountNumber::parse(std::str::from_utf8(&typo).unwrap()).is_err());
        let mut swapped: Vec<u8> = n.as_str().bytes().collect();
        swapped.swap(1, 2);
        assert!(AccountNumber::parse(std::str::from_utf8(&swapped).unwrap()).is_err());
    }

    #[test]
    fn postings_hold_the_overdraft_the_status_and_the_currency() {
        let mut a = open("50");
        run(&mut a, &posting(true, "100", "PKR")).unwrap();
        run(&mut a, &posting(false, "150", "PKR")).unwrap();
        assert_eq!(a.balance.as_string(), "-50.00");
        assert_eq!(a.available().as_string(), "0.00");
        assert!(matches!(
            run(&mut a, &posting(false, "0.01", "PKR")),
            Err(AccountError::InsufficientFunds { .. })
        ));
        assert!(matches!(
            run(&mut a, &posting(true, "1", "USD")),
            Err(AccountError::CurrencyMismatch { .. })
        ));
        run(&mut a, &AccountCommand::Freeze).unwrap();
        assert_eq!(
            run(&mut a, &posting(true, "1", "PKR")),
            Err(AccountError::Frozen)
        );
        run(&mut a, &AccountCommand::Unfreeze).unwrap();
        assert!(matches!(
            run(&mut a, &AccountCommand::Close),
            Err(AccountError::NotZero { .. })
        ));
        run(&mut a, &posting(true, "50", "PKR")).unwrap();
        run(&mut a, &AccountCommand::Close).unwrap();
        assert_eq!(
            run(&mut a, &posting(true, "1", "PKR")),
            Err(AccountError::Closed)
        );
    }
}
