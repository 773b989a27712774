//! The ledger on the one pipeline: opening an account (its number reserved in the same
//! append, for a customer the tenant has), and posting a transaction: the transaction's
//! stream (named by its reference, so a reference never posts twice) and each account's
//! posting in one atomic append over every stream it touches, each at the version it was
//! read at. A transfer is one append over both accounts; a refusal writes nothing. A
//! reversal posts the opposite legs and marks the original reversed, in the same append.

use crate::handler::{CommandError, CommandHandler, CommandMeta};
use crate::pipeline::{Command, Tx};
use domain::account::{
    Account, AccountCommand, AccountError, AccountNumber, AccountType, Kind, NumberReservation,
};
use domain::customer::Customer;
use domain::money::{Currency, Money};
use domain::transaction::{Leg, NewTransaction, Transaction, TransactionCommand, TransactionError};
use domain::{Aggregate, EventEnvelope, StreamId};
use std::sync::Arc;

/// Why a ledger command was refused.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Transaction(#[from] TransactionError),
    #[error("no such customer")]
    NoCustomer,
    /// A MEMBER opening an account for a customer they are not the agent of.
    #[error("only an ADMIN or the customer's agent opens its accounts")]
    NotTheAgent,
    /// A transfer from an account to itself.
    #[error("a transfer needs two different accounts")]
    SameAccount,
}

impl From<domain::customer::CustomerError> for LedgerError {
    fn from(e: domain::customer::CustomerError) -> Self {
        match e {
            domain::customer::CustomerError::NotFound => Self::NoCustomer,
        }
    }
}

impl From<std::convert::Infallible> for LedgerError {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}

fn lift<E: std::error::Error + 'static>(e: CommandError<E>) -> CommandError<LedgerError>
where
    LedgerError: From<E>,
{
    e.map_rejected(LedgerError::from)
}

fn rejected(e: impl Into<LedgerError>) -> CommandError<LedgerError> {
    CommandError::Rejected(e.into())
}

fn never(e: std::convert::Infallible) -> CommandError<LedgerError> {
    match e {}
}

pub fn account_stream(id: &str) -> StreamId {
    StreamId::for_aggregate(Account::KIND, id)
}

pub fn number_stream(number: &AccountNumber) -> StreamId {
    StreamId::for_aggregate(NumberReservation::KIND, number.as_str())
}

pub fn transaction_stream(id: &str) -> StreamId {
    StreamId::for_aggregate(Transaction::KIND, id)
}

/// OpenAccount: a new account of a customer the tenant has, by an ADMIN or the customer's
/// agent, under a number no other account of the tenant holds (a taken number fails with
/// `Taken`: draw another).
pub struct OpenAccount {
    pub account_id: String,
    pub customer_id: String,
    pub number: AccountNumber,
    pub account_type: AccountType,
    pub currency: Currency,
    pub overdraft_limit: Money,
}

impl Command for OpenAccount {
    type Output = Account;
    type Error = LedgerError;
    const NAME: &'static str = "account";

    async fn decide(&self, tx: &mut Tx<'_>) -> Result<Account, CommandError<LedgerError>> {
        let customer = crate::customers::customer_stream(&self.customer_id);
        let (c, _) = tx.load::<Customer>(&customer).await.map_err(lift)?;
        if c.customer_id.is_none() || c.deleted {
            return Err(rejected(LedgerError::NoCustomer));
        }
        let actor = &tx.ctx().actor;
        if !actor.role.is_admin() && c.agent_id.as_ref() != Some(&actor.user_id) {
            return Err(rejected(LedgerError::NotTheAgent));
        }
        let mut account = Account::default();
        let events = account
            .decide(
                &AccountCommand::Open {
                    account_id: self.account_id.clone(),
                    customer_id: self.customer_id.clone(),
                    number: self.number.clone(),
                    account_type: self.account_type,
                    currency: self.currency.clone(),
                    overdraft_limit: self.overdraft_limit,
                },
                tx.ctx(),
            )
            .map_err(rejected)?;
        let reserved = NumberReservation
            .decide(&self.account_id, tx.ctx())
            .map_err(never)?;
        tx.reserve::<NumberReservation>(&number_stream(&self.number), &reserved, "account number");
        tx.write::<Account>(&account_stream(&self.account_id), &events);
        for e in &events {
            account.apply(e);
        }
        Ok(account)
    }

    async fn replayed(
        &self,
        handler: &CommandHandler,
        meta: &CommandMeta,
        events: &[Arc<EventEnvelope>],
    ) -> Result<Account, CommandError<LedgerError>> {
        handler
            .replayed_of_kind::<Account>(meta, events)
            .await
            .map_err(lift)
    }
}

/// The legs of a transaction of `kind` on `account` (deposit, withdrawal, fee, interest)
/// or from one account to another (transfer).
pub fn legs(kind: Kind, account: Option<&str>, from_to: Option<(&str, &str)>) -> Vec<Leg> {
    let leg = |account_id: &str, credit| Leg {
        account_id: account_id.to_owned(),
        credit,
    };
    match (kind, account, from_to) {
        (Kind::Transfer, _, Some((from, to))) => vec![leg(from, false), leg(to, true)],
        (Kind::Deposit | Kind::Interest, Some(a), _) => vec![leg(a, true)],
        (Kind::Withdrawal | Kind::Fee, Some(a), _) => vec![leg(a, false)],
        _ => Vec::new(),
    }
}

/// PostTransaction: the transaction and its postings, all or nothing. With `reverses`,
/// the original is marked reversed in the same append (once).
pub struct PostTransaction {
    pub transaction: NewTransaction,
}

impl Command for PostTransaction {
    type Output = (Transaction, Vec<(String, Account, u64)>);
    type Error = LedgerError;
    const NAME: &'static str = "transaction";

    fn attempts(&self) -> Option<u32> {
        // A busy account is written by every posting on it.
        Some(crate::commerce::PATIENT)
    }

    async fn decide(&self, tx: &mut Tx<'_>) -> Result<Self::Output, CommandError<LedgerError>> {
        let t = &self.transaction;
        if t.legs.len() == 2 && t.legs[0].account_id == t.legs[1].account_id {
            return Err(rejected(LedgerError::SameAccount));
        }
        let mut transaction = Transaction::default();
        let events = transaction
            .decide(&TransactionCommand::Post(t.clone()), tx.ctx())
            .map_err(rejected)?;
        for e in &events {
            transaction.apply(e);
        }
        // First, so that a replay under the same Idempotency-Key finds this one's events.
        tx.reserve::<Transaction>(
            &transaction_stream(&t.transaction_id),
            &events,
            "transaction reference",
        );
        if let Some(original) = &t.reverses {
            let stream = transaction_stream(original);
            let (o, _) = tx.load::<Transaction>(&stream).await.map_err(lift)?;
            let marked = o
                .decide(
                    &TransactionCommand::MarkReversed {
                        reversal_id: t.transaction_id.clone(),
                    },
                    tx.ctx(),
                )
                .map_err(rejected)?;
            tx.write::<Transaction>(&stream, &marked);
        }
        let posted = transaction
            .posted
            .clone()
            .ok_or_else(|| rejected(TransactionError::NotFound))?;
        let mut accounts = Vec::new();
        for (account_id, posting) in posted.postings() {
            let stream = account_stream(&account_id);
            let (mut account, version) = tx.load::<Account>(&stream).await.map_err(lift)?;
            let posted = account
                .decide(&AccountCommand::Post(posting), tx.ctx())
                .map_err(rejected)?;
            for e in &posted {
                account.apply(e);
            }
            tx.write::<Account>(&stream, &posted);
            accounts.push((account_id, account, version + posted.len() as u64));
        }
        Ok((transaction, accounts))
    }

    async fn replayed(
        &self,
        handler: &CommandHandler,
        meta: &CommandMeta,
        events: &[Arc<EventEnvelope>],
    ) -> Result<Self::Output, CommandError<LedgerError>> {
        let transaction = handler
            .replayed_of_kind::<Transaction>(meta, events)
            .await
            .map_err(lift)?;
        Ok((transaction, Vec::new()))
    }
}
