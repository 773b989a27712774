//! The ledger's invariants, checked against a model on any event store: a bank of a few
//! accounts, driven through the real ledger commands (the one command pipeline) by a
//! sequence of operations, while a model of cents predicts every outcome. After each
//! operation the store must agree with the model; the sum of a currency over all accounts
//! moves only by deposits, withdrawals, fees and interest (and their reversals); no
//! posting ever leaves a balance below its account's overdraft limit.

use commands::customers::customer_stream;
use commands::ledger::{LedgerError, OpenAccount, PostTransaction, account_stream, legs};
use commands::{CommandError, CommandHandler, CommandMeta, RequestIds};
use domain::account::{
    Account, AccountCommand, AccountError, AccountEvent, AccountNumber, AccountType, Kind, Status,
};
use domain::customer::{Customer, CustomerCommand, CustomerFields};
use domain::money::{Currency, Money};
use domain::transaction::{NewTransaction, Reference, Transaction, TransactionError};
use domain::{Actor, Aggregate, DomainEvent, EventEnvelope, Role, TenantId, UserId};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// The client every account of the bank belongs to.
pub const CLIENT: &str = "001INVARIANTS00AAA";

/// An account to open: its currency and overdraft limit in cents.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub currency: &'static str,
    pub overdraft: i64,
}

/// One step of a run. Account indexes are taken modulo the bank's accounts.
#[derive(Debug, Clone)]
pub enum Op {
    /// A deposit, withdrawal, fee or interest on one account.
    OnAccount {
        kind: Kind,
        account: usize,
        cents: i64,
    },
    /// A transfer in the `from` account's currency.
    Transfer {
        from: usize,
        to: usize,
        cents: i64,
    },
    /// The reversal of the `nth` transaction posted so far (modulo their number).
    Reverse {
        nth: usize,
    },
    Freeze(usize),
    Unfreeze(usize),
    /// Transfers all in flight at once.
    Burst(Vec<(usize, usize, i64)>),
}

/// A transaction the bank posted, as the model keeps it.
#[derive(Debug, Clone)]
struct Posted {
    id: String,
    kind: Kind,
    /// (account index, credit).
    legs: Vec<(usize, bool)>,
    cents: i64,
    currency: &'static str,
    reversed: bool,
}

/// What a run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub accepted: u64,
    pub refused: u64,
}

pub struct Bank {
    pub handler: CommandHandler,
    pub tenant: TenantId,
    pub ids: Vec<String>,
    /// The accounts' numbers, as `ids`.
    pub numbers: Vec<String>,
    specs: Vec<Spec>,
    balances: Vec<i64>,
    frozen: Vec<bool>,
    posted: Vec<Posted>,
    /// Per currency: what came in from outside the bank less what went out.
    outside: BTreeMap<&'static str, i64>,
    references: u64,
    pub tally: Tally,
}

fn meta(tenant: &TenantId) -> CommandMeta {
    let actor = Actor {
        user_id: UserId::parse("teller").expect("user"),
        role: Role::Admin,
    };
    CommandMeta::of(tenant.clone(), actor, RequestIds::fresh(), None)
}

fn money(cents: i64) -> Money {
    Money::of(Decimal::new(cents, 2)).expect("money")
}

fn value_date() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2026, 12, 1).expect("date")
}

/// How much a transaction of `kind` brings into the bank from outside (negative: takes out).
fn inflow(kind: Kind, cents: i64) -> i64 {
    match kind {
        Kind::Deposit | Kind::Interest => cents,
        Kind::Withdrawal | Kind::Fee => -cents,
        Kind::Transfer | Kind::Reversal => 0,
    }
}

/// Whether a refusal is one of the ledger's reasons (never contention or a store fault).
fn is_a_reason(e: &CommandError<LedgerError>) -> bool {
    matches!(
        e,
        CommandError::Rejected(
            LedgerError::Account(
                AccountError::InsufficientFunds { .. }
                    | AccountError::Frozen
                    | AccountError::CurrencyMismatch { .. }
            ) | LedgerError::SameAccount
                | LedgerError::Transaction(
                    TransactionError::AlreadyReversed(_) | TransactionError::IsReversal
                )
        ) | CommandError::Taken("transaction reference")
    )
}

impl Bank {
    /// A client with the accounts `specs` describe, all open and empty.
    pub async fn open(handler: CommandHandler, tenant: TenantId, specs: &[Spec]) -> Self {
        let sync = CustomerCommand::Sync {
            customer_id: CLIENT.to_owned(),
            fields: CustomerFields {
                name: "Invariant Holdings".into(),
                ..CustomerFields::default()
            },
            system_modstamp: chrono::Utc::now(),
            sync_id: "invariants".into(),
        };
        handler
            .execute::<Customer>(&meta(&tenant), &customer_stream(CLIENT), &sync, None)
            .await
            .expect("the client");
        let (mut ids, mut numbers) = (Vec::new(), Vec::new());
        for spec in specs {
            let account_id = uuid::Uuid::now_v7().to_string();
            let number = AccountNumber::with_check(rand_digits());
            numbers.push(number.as_str().to_owned());
            let open = OpenAccount {
                account_id: account_id.clone(),
                customer_id: CLIENT.to_owned(),
                number,
                account_type: AccountType::Checking,
                currency: Currency::parse(spec.currency).expect("currency"),
                overdraft_limit: money(spec.overdraft),
            };
            handler
                .run(&meta(&tenant), &open)
                .await
                .expect("an account");
            ids.push(account_id);
        }
        Self {
            handler,
            tenant,
            ids,
            numbers,
            specs: specs.to_vec(),
            balances: vec![0; specs.len()],
            frozen: vec![false; specs.len()],
            posted: Vec::new(),
            outside: specs.iter().map(|s| (s.currency, 0)).collect(),
            references: 0,
            tally: Tally::default(),
        }
    }

    fn reference(&mut self) -> String {
        self.references += 1;
        format!("INV-{}-{}", self.references, uuid::Uuid::new_v4().simple())
    }

    /// Whether the model says legs `(account, credit)` of `cents` in `currency` post.
    fn admits(&self, legs: &[(usize, bool)], cents: i64, currency: &str) -> bool {
        if legs.len() == 2 && legs[0].0 == legs[1].0 {
            return false;
        }
        legs.iter().all(|&(a, credit)| {
            !self.frozen[a]
                && self.specs[a].currency == currency
                && (credit || self.balances[a] - cents >= -self.specs[a].overdraft)
        })
    }

    fn book(&mut self, legs: &[(usize, bool)], cents: i64) {
        for &(a, credit) in legs {
            self.balances[a] += if credit { cents } else { -cents };
        }
    }

    fn transaction(
        &mut self,
        kind: Kind,
        legs_of: &[(usize, bool)],
        cents: i64,
        currency: &'static str,
    ) -> NewTransaction {
        let reference = Reference::parse(&self.reference()).expect("reference");
        let ids = |a: usize| self.ids[a].as_str();
        let legs = match (kind, legs_of) {
            (Kind::Transfer, [(from, _), (to, _)]) => {
                legs(kind, None, Some((ids(*from), ids(*to))))
            }
            (_, [(a, _)]) => legs(kind, Some(ids(*a)), None),
            _ => unreachable!("a transaction has one or two legs"),
        };
        NewTransaction {
            transaction_id: reference.transaction_id(),
            kind,
            legs,
            amount: money(cents),
            currency: Currency::parse(currency).expect("currency"),
            reference: reference.as_str().to_owned(),
            value_date: value_date(),
            reverses: None,
        }
    }

    async fn post(&self, transaction: NewTransaction) -> Result<(), CommandError<LedgerError>> {
        let post = PostTransaction { transaction };
        self.handler
            .run(&meta(&self.tenant), &post)
            .await
            .map(|_| ())
    }

    /// Runs `op`, checks the outcome the model predicts, and books it in the model.
    pub async fn step(&mut self, op: &Op) {
        let n = self.ids.len();
        match op {
            Op::OnAccount {
                kind,
                account,
                cents,
            } => {
                let a = account % n;
                let credit = matches!(kind, Kind::Deposit | Kind::Interest);
                let currency = self.specs[a].currency;
                let t = self.transaction(*kind, &[(a, credit)], *cents, currency);
                self.posting(t, *kind, vec![(a, credit)], *cents, currency)
                    .await;
            }
            Op::Transfer { from, to, cents } => {
                let (from, to) = (from % n, to % n);
                let currency = self.specs[from].currency;
                let t = self.transaction(
                    Kind::Transfer,
                    &[(from, false), (to, true)],
                    *cents,
                    currency,
                );
                self.posting(
                    t,
                    Kind::Transfer,
                    vec![(from, false), (to, true)],
                    *cents,
                    currency,
                )
                .await;
            }
            Op::Reverse { nth } => {
                if self.posted.is_empty() {
                    return;
                }
                let i = nth % self.posted.len();
                let original = self.posted[i].clone();
                let (stored, _) = self
                    .handler
                    .state::<Transaction>(
                        &self.tenant,
                        &commands::ledger::transaction_stream(&original.id),
                    )
                    .await
                    .expect("the original");
                let reversal = stored.posted.expect("posted").reversal(value_date());
                let legs: Vec<(usize, bool)> =
                    original.legs.iter().map(|&(a, c)| (a, !c)).collect();
                let admitted = original.kind != Kind::Reversal
                    && !original.reversed
                    && self.admits(&legs, original.cents, original.currency);
                let outcome = self.post(reversal.clone()).await;
                self.judge(admitted, &outcome, op);
                if admitted {
                    self.book(&legs, original.cents);
                    *self.outside.get_mut(original.currency).expect("currency") -=
                        inflow(original.kind, original.cents);
                    self.posted[i].reversed = true;
                    self.posted.push(Posted {
                        id: reversal.transaction_id,
                        kind: Kind::Reversal,
                        legs,
                        cents: original.cents,
                        currency: original.currency,
                        reversed: false,
                    });
                }
            }
            Op::Freeze(a) | Op::Unfreeze(a) => {
                let a = a % n;
                let freeze = matches!(op, Op::Freeze(_));
                let command = if freeze {
                    AccountCommand::Freeze
                } else {
                    AccountCommand::Unfreeze
                };
                let outcome = self
                    .handler
                    .execute::<Account>(
                        &meta(&self.tenant),
                        &account_stream(&self.ids[a]),
                        &command,
                        None,
                    )
                    .await;
                // Freezing a frozen account is a no-op; unfreezing an active one is refused.
                let admitted = freeze || self.frozen[a];
                match (&outcome, admitted) {
                    (Ok(_), true) => self.tally.accepted += 1,
                    (Err(CommandError::Rejected(AccountError::NotFrozen)), false) => {
                        self.tally.refused += 1
                    }
                    _ => panic!("{op:?}: the model said {admitted}, the ledger {outcome:?}"),
                }
                self.frozen[a] = freeze;
            }
            Op::Burst(transfers) => self.burst(transfers).await,
        }
    }

    async fn posting(
        &mut self,
        t: NewTransaction,
        kind: Kind,
        legs: Vec<(usize, bool)>,
        cents: i64,
        currency: &'static str,
    ) {
        let admitted = self.admits(&legs, cents, currency);
        let id = t.transaction_id.clone();
        let outcome = self.post(t).await;
        self.judge(admitted, &outcome, &kind);
        if admitted {
            self.book(&legs, cents);
            *self.outside.get_mut(currency).expect("currency") += inflow(kind, cents);
            self.posted.push(Posted {
                id,
                kind,
                legs,
                cents,
                currency,
                reversed: false,
            });
        }
    }

    fn judge(
        &mut self,
        admitted: bool,
        outcome: &Result<(), CommandError<LedgerError>>,
        what: &dyn std::fmt::Debug,
    ) {
        match outcome {
            Ok(()) if admitted => self.tally.accepted += 1,
            Err(e) if !admitted && is_a_reason(e) => self.tally.refused += 1,
            _ => panic!("{what:?}: the model said {admitted}, the ledger {outcome:?}"),
        }
    }

    /// Transfers all in flight at once: each posts or is refused for a reason of the ledger
    /// (never for contention), and the model books the ones that posted.
    async fn burst(&mut self, transfers: &[(usize, usize, i64)]) {
        let n = self.ids.len();
        let mut flight = Vec::new();
        for &(from, to, cents) in transfers {
            let (from, to) = (from % n, to % n);
            let currency = self.specs[from].currency;
            let legs = vec![(from, false), (to, true)];
            let t = self.transaction(Kind::Transfer, &legs, cents, currency);
            let (handler, tenant) = (self.handler.clone(), self.tenant.clone());
            flight.push((
                legs,
                cents,
                currency,
                t.transaction_id.clone(),
                tokio::spawn(async move {
                    let post = PostTransaction { transaction: t };
                    handler.run(&meta(&tenant), &post).await.map(|_| ())
                }),
            ));
        }
        for (legs, cents, currency, id, task) in flight {
            match task.await.expect("a transfer") {
                Ok(()) => {
                    self.tally.accepted += 1;
                    self.book(&legs, cents);
                    self.posted.push(Posted {
                        id,
                        kind: Kind::Transfer,
                        legs,
                        cents,
                        currency,
                        reversed: false,
                    });
                }
                Err(e) if is_a_reason(&e) => self.tally.refused += 1,
                Err(e) => panic!("a transfer in a burst failed: {e:?}"),
            }
        }
    }

    /// The store agrees with the model: each account's balance and status, and per currency
    /// the sum over all accounts equals what came in from outside.
    pub async fn check(&self) {
        let mut sums: BTreeMap<&str, i64> = BTreeMap::new();
        for (i, id) in self.ids.iter().enumerate() {
            let (account, _) = self
                .handler
                .state::<Account>(&self.tenant, &account_stream(id))
                .await
                .expect("an account");
            let cents = to_cents(account.balance.0);
            assert_eq!(cents, self.balances[i], "account {i}'s balance");
            assert!(
                cents >= -self.specs[i].overdraft,
                "account {i} is below its overdraft limit: {cents}"
            );
            let status = if self.frozen[i] {
                Status::Frozen
            } else {
                Status::Active
            };
            assert_eq!(account.status, status, "account {i}'s status");
            *sums.entry(self.specs[i].currency).or_default() += cents;
        }
        for (currency, outside) in &self.outside {
            assert_eq!(
                sums.get(currency).copied().unwrap_or_default(),
                *outside,
                "the {currency} held over all accounts is what came in from outside"
            );
        }
    }

    /// Every posting the store holds for the bank's accounts, in each account's order:
    /// each balance after it is the one before plus its amount, and none is below the
    /// account's overdraft limit.
    pub fn check_postings(&self, events: &[EventEnvelope]) -> usize {
        let mut last: BTreeMap<&str, (u64, i64)> = BTreeMap::new();
        let mut postings = 0;
        let mut ordered: Vec<&EventEnvelope> = events
            .iter()
            .filter(|e| e.stream_id.kind() == Account::KIND)
            .collect();
        ordered.sort_by_key(|e| (e.stream_id.to_string(), e.version));
        for e in ordered {
            let event = AccountEvent::from_stored(&e.event_type, e.schema_version, &e.payload)
                .expect("an account event");
            let (AccountEvent::Credited(p) | AccountEvent::Debited(p)) = &event else {
                continue;
            };
            let i = self
                .ids
                .iter()
                .position(|id| e.stream_id == account_stream(id))
                .expect("one of the bank's accounts");
            let signed = if matches!(event, AccountEvent::Credited(_)) {
                to_cents(p.amount.decimal())
            } else {
                -to_cents(p.amount.decimal())
            };
            let before = last.get(self.ids[i].as_str()).map_or(0, |(_, b)| *b);
            let after = to_cents(p.balance_after.0);
            assert_eq!(
                after,
                before + signed,
                "account {i} at version {}",
                e.version
            );
            assert!(
                after >= -self.specs[i].overdraft,
                "a posting took account {i} to {after}, below its overdraft limit"
            );
            last.insert(self.ids[i].as_str(), (e.version, after));
            postings += 1;
        }
        postings
    }
}

fn to_cents(d: Decimal) -> i64 {
    let cents = (d * Decimal::ONE_HUNDRED).trunc();
    i64::try_from(cents).expect("cents")
}

fn rand_digits() -> u64 {
    u64::from_le_bytes(
        uuid::Uuid::new_v4().as_bytes()[..8]
            .try_into()
            .expect("8 bytes"),
    )
}

impl Bank {
    /// The model's balance of each account, in cents.
    pub fn balances(&self) -> &[i64] {
        &self.balances
    }
}

/// The ledger's read models: accounts, their lines, transactions.
pub fn projections() -> Vec<std::sync::Arc<dyn projections::Projection>> {
    use projections::account_lines::AccountLinesProjection;
    use projections::accounts::AccountsProjection;
    use projections::transactions::TransactionsProjection;
    vec![
        std::sync::Arc::new(AccountsProjection),
        std::sync::Arc::new(AccountLinesProjection),
        std::sync::Arc::new(TransactionsProjection),
    ]
}

/// Four funded accounts (one with an overdraft), then 64 transfers between them all in
/// flight at once, drawn from `seed`: each posts or is refused for want of funds, none
/// fails for contention, and the store agrees with the model.
pub async fn sixty_four_in_flight(bank: &mut Bank, seed: u64) {
    let n = bank.ids.len();
    for account in 0..n {
        bank.step(&Op::OnAccount {
            kind: Kind::Deposit,
            account,
            cents: 100_000,
        })
        .await;
    }
    let mut dice = crate::Dice(seed);
    let transfers = (0..64)
        .map(|_| {
            let from = dice.roll(n);
            let to = (from + 1 + dice.roll(n - 1)) % n;
            (from, to, 1 + dice.roll(60_000) as i64)
        })
        .collect();
    let before = bank.tally;
    bank.step(&Op::Burst(transfers)).await;
    bank.check().await;
    let posted = bank.tally.accepted - before.accepted;
    let refused = bank.tally.refused - before.refused;
    assert_eq!(posted + refused, 64);
    assert!(posted > 0, "some transfers posted");
}

/// The specs of the 64-transfer run: four PKR accounts, one with an overdraft of 500.00.
pub const FOUR: [Spec; 4] = [
    Spec {
        currency: "PKR",
        overdraft: 0,
    },
    Spec {
        currency: "PKR",
        overdraft: 50_000,
    },
    Spec {
        currency: "PKR",
        overdraft: 0,
    },
    Spec {
        currency: "PKR",
        overdraft: 0,
    },
];
