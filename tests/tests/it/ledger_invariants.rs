//! The ledger's invariants, proven over random runs on the embedded backend (SQLite): a
//! property test drives postings, transfers, reversals, freezes and bursts of concurrent
//! transfers through the real commands while a model predicts every outcome; the sum of a
//! currency over all accounts moves only by deposits, withdrawals, fees and interest; no
//! posting leaves a balance below its overdraft limit; and the read models, kept batch by
//! batch while the run goes on, equal a fresh replay of the store.

use chronicle_tests::ledger::{Bank, FOUR, Op, Spec, projections, sixty_four_in_flight};
use chronicle_tests::replayed::{replay, rows, tenant_events};
use commands::CommandHandler;
use domain::TenantId;
use domain::account::Kind;
use infra::SystemClock;
use infra::sqlite::{SqliteEventStore, SqliteReadModelStore};
use projections::{ProjectionProgress, Projector, ProjectorConfig};
use proptest::prelude::*;
use std::sync::Arc;

const SPECS: [Spec; 5] = [
    Spec {
        currency: "PKR",
        overdraft: 0,
    },
    Spec {
        currency: "PKR",
        overdraft: 10_000,
    },
    Spec {
        currency: "PKR",
        overdraft: 0,
    },
    Spec {
        currency: "USD",
        overdraft: 5_000,
    },
    Spec {
        currency: "USD",
        overdraft: 0,
    },
];

/// An embedded store, a bank on it, and live read models that catch up after each step.
struct Embedded {
    _dir: tempfile::TempDir,
    events: Arc<SqliteEventStore>,
    views: SqliteReadModelStore,
    live: Vec<Projector>,
    bank: Bank,
}

impl Embedded {
    async fn open(specs: &[Spec]) -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let events =
            Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).expect("events"));
        let views = SqliteReadModelStore::open(&dir.path().join("views.db")).expect("views");
        let live = projections()
            .into_iter()
            .map(|p| {
                Projector::new(
                    p,
                    Arc::new(views.clone()),
                    events.clone(),
                    ProjectionProgress::default(),
                    ProjectorConfig::default(),
                )
            })
            .collect();
        let handler = CommandHandler::new(events.clone(), Arc::new(SystemClock));
        let bank = Bank::open(handler, TenantId::parse("bank").expect("tenant"), specs).await;
        Self {
            _dir: dir,
            events,
            views,
            live,
            bank,
        }
    }

    async fn catch_up(&self) {
        for p in &self.live {
            p.catch_up(self.events.as_ref()).await.expect("catch up");
        }
    }

    /// Every posting in the store holds the overdraft and folds to its balance, and the
    /// live read models equal a replay; their balances are the model's.
    async fn settle(&self) {
        self.catch_up().await;
        let tenant = &self.bank.tenant;
        let all = tenant_events(self.events.as_ref(), tenant).await;
        self.bank.check_postings(&all);
        let replayed = replay(self.events.clone(), tenant, &projections()).await;
        let live = rows(&self.views, tenant, &projections()).await;
        assert_eq!(live, replayed, "the live read models equal a replay");
        for (i, id) in self.bank.ids.iter().enumerate() {
            let row = live
                .iter()
                .find(|r| r.0 == "accounts" && &r.1 == id)
                .expect("the account's row");
            let balance: rust_decimal::Decimal = row.3.doc.as_ref().expect("a live row")["balance"]
                .as_str()
                .expect("a balance")
                .parse()
                .expect("a decimal");
            assert_eq!(
                balance,
                rust_decimal::Decimal::new(self.bank.balances()[i], 2),
                "account {i} in the read model"
            );
        }
    }
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Deposit),
        Just(Kind::Withdrawal),
        Just(Kind::Fee),
        Just(Kind::Interest),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let cents = 1i64..=60_000;
    prop_oneof![
        5 => (kind(), 0usize..5, cents.clone())
            .prop_map(|(kind, account, cents)| Op::OnAccount { kind, account, cents }),
        4 => (0usize..5, 0usize..5, cents)
            .prop_map(|(from, to, cents)| Op::Transfer { from, to, cents }),
        2 => any::<usize>().prop_map(|nth| Op::Reverse { nth }),
        1 => (0usize..5).prop_map(Op::Freeze),
        1 => (0usize..5).prop_map(Op::Unfreeze),
        1 => prop::collection::vec((0usize..5, 0usize..5, 1i64..=30_000), 2..12)
            .prop_map(Op::Burst),
    ]
}

/// 48 runs, or `PROPTEST_CASES` of them.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(48)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn the_ledger_holds_its_invariants_over_any_run(ops in prop::collection::vec(op(), 1..60)) {
        runtime().block_on(async {
            let mut e = Embedded::open(&SPECS).await;
            for op in &ops {
                e.bank.step(op).await;
                e.bank.check().await;
                e.catch_up().await;
            }
            e.settle().await;
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_transfers_in_flight_on_sqlite() {
    let mut e = Embedded::open(&FOUR).await;
    sixty_four_in_flight(&mut e.bank, 0x5EED_0017).await;
    e.settle().await;
}
