//! The banking ledger end to end on the embedded backend: accounts under check-digited
//! numbers, postings that hold the overdraft, the status and the currency (a refusal is
//! 422 and writes nothing), a transfer as one append over both accounts, references and
//! Idempotency-Keys that never post twice, reversals, and the logs with running balances.

use axum::http::{Method, StatusCode};
use chronicle_tests::fake_salesforce::{Account, FakeSalesforce};
use chronicle_tests::{SignedUp, TestApp};
use serde_json::{Value, json};

pub(crate) const CLIENT: &str = "001LEDGER00000AAA";

pub(crate) async fn bank(app: &TestApp, name: &str) -> SignedUp {
    let admin = app
        .register_tenant(name, &format!("root@{name}.test"), "enterprise")
        .await;
    let org = FakeSalesforce::start(10).await;
    org.put(Account::new(
        CLIENT,
        "Client",
        "Karachi",
        chrono::Utc::now() - chrono::Duration::hours(1),
    ));
    app.connect_and_sync(&admin, &org).await;
    admin
}

pub(crate) async fn open(app: &TestApp, admin: &SignedUp, body: Value) -> Value {
    // The customer reaches the read model a moment after the sync's end.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r = app
            .post(
                &format!("/customers/{CLIENT}/accounts"),
                &admin.access,
                &body.to_string(),
            )
            .await;
        if r.status == StatusCode::CREATED {
            return r.body;
        }
        assert!(
            r.status == StatusCode::NOT_FOUND && std::time::Instant::now() < deadline,
            "{:?}",
            r.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn post(app: &TestApp, admin: &SignedUp, body: Value) -> (StatusCode, Value, String) {
    let r = app
        .post("/transactions", &admin.access, &body.to_string())
        .await;
    let token = r
        .header("x-consistency-token")
        .unwrap_or_default()
        .to_owned();
    (r.status, r.body, token)
}

async fn account(app: &TestApp, admin: &SignedUp, id: &str, token: &str) -> Value {
    let r = app
        .get(
            &format!("/accounts/{id}"),
            &admin.access,
            Some(token).filter(|t| !t.is_empty()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body
}

fn deposit(account: &str, amount: &str, reference: &str) -> Value {
    json!({"kind": "deposit", "account_id": account, "amount": amount, "currency": "PKR",
        "reference": reference, "value_date": "2026-12-01"})
}

#[tokio::test]
async fn postings_fold_into_balances_and_every_refusal_writes_nothing() {
    let app = TestApp::start();
    let admin = bank(&app, "ledger-one").await;
    let a = open(
        &app,
        &admin,
        json!({"type": "checking", "currency": "PKR", "overdraft_limit": "100"}),
    )
    .await;
    let b = open(&app, &admin, json!({"type": "savings", "currency": "PKR"})).await;
    let usd = open(&app, &admin, json!({"type": "checking", "currency": "USD"})).await;
    let number = a["account_number"].as_str().expect("number");
    assert_eq!(number.len(), 12);
    assert_eq!(
        number.parse::<u64>().expect("digits") % 97,
        1,
        "ISO 7064 MOD 97-10"
    );
    assert_ne!(a["account_number"], b["account_number"]);
    assert_eq!(a["balance"], "0.00");
    assert_eq!(a["status"], "ACTIVE");
    let (a, b, usd) = (
        a["account_id"].as_str().expect("id").to_owned(),
        b["account_id"].as_str().expect("id").to_owned(),
        usd["account_id"].as_str().expect("id").to_owned(),
    );

    let (s, dep, _) = post(&app, &admin, deposit(&a, "500.00", "DEP-1")).await;
    assert_eq!(s, StatusCode::CREATED, "{dep:?}");
    let transfer = json!({"kind": "transfer", "from": a, "to": b, "amount": "550", "currency": "PKR",
        "reference": "TRF-1", "value_date": "2026-12-02"});
    let (s, trf, token) = post(&app, &admin, transfer).await;
    assert_eq!(s, StatusCode::CREATED, "{trf:?}");
    assert_eq!(account(&app, &admin, &a, &token).await["balance"], "-50.00");
    let seen_b = account(&app, &admin, &b, "").await;
    assert_eq!(seen_b["balance"], "550.00");
    assert_eq!(account(&app, &admin, &a, "").await["available"], "50.00");

    // Refused, each with its reason, and nothing written on any account.
    let refusals = [
        (
            json!({"kind": "withdrawal", "account_id": a, "amount": "50.01", "currency": "PKR",
            "reference": "WD-1", "value_date": "2026-12-03"}),
            "overdraft",
        ),
        (
            json!({"kind": "transfer", "from": b, "to": usd, "amount": "1", "currency": "PKR",
            "reference": "TRF-USD", "value_date": "2026-12-03"}),
            "USD",
        ),
        (
            json!({"kind": "transfer", "from": b, "to": b, "amount": "1", "currency": "PKR",
            "reference": "TRF-SELF", "value_date": "2026-12-03"}),
            "two different",
        ),
        (deposit(&a, "0", "ZERO"), "more than zero"),
        (
            deposit(&uuid::Uuid::now_v7().to_string(), "1", "NOWHERE"),
            "no such account",
        ),
        (
            json!({"kind": "deposit", "from": a, "to": b, "amount": "1", "currency": "PKR",
            "reference": "BAD-SHAPE", "value_date": "2026-12-03"}),
            "account_id",
        ),
    ];
    for (body, why) in refusals {
        let (s, p, _) = post(&app, &admin, body).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{why}: {p:?}");
        assert!(
            p["detail"].as_str().unwrap_or_default().contains(why),
            "{why}: {p:?}"
        );
    }
    // A repeated reference never posts twice.
    let (s, p, _) = post(&app, &admin, deposit(&a, "1", "DEP-1")).await;
    assert_eq!(s, StatusCode::CONFLICT, "{p:?}");
    // A retry under its Idempotency-Key answers the first result, posted once.
    let body = deposit(&b, "10", "DEP-2").to_string();
    let headers = [("idempotency-key", "retry-me")];
    let first = app
        .send(
            Method::POST,
            "/transactions",
            Some(&admin.access),
            &headers,
            Some(&body),
        )
        .await;
    let again = app
        .send(
            Method::POST,
            "/transactions",
            Some(&admin.access),
            &headers,
            Some(&body),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    assert_eq!(again.status, StatusCode::CREATED, "{:?}", again.body);
    assert_eq!(first.body["transaction_id"], again.body["transaction_id"]);
    let token = first
        .header("x-consistency-token")
        .unwrap_or_default()
        .to_owned();
    assert_eq!(account(&app, &admin, &b, &token).await["balance"], "560.00");
    assert_eq!(account(&app, &admin, &a, "").await["balance"], "-50.00");

    // Frozen, an account takes no posting; unfrozen, it does again.
    let r = app
        .post(&format!("/accounts/{b}/freeze"), &admin.access, "")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "FROZEN");
    let (s, p, _) = post(&app, &admin, deposit(&b, "1", "DEP-FROZEN")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p:?}");
    assert!(p["detail"].as_str().unwrap_or_default().contains("frozen"));
    let r = app
        .post(&format!("/accounts/{b}/unfreeze"), &admin.access, "")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

    // A reversal posts the opposite legs, once; the original is marked.
    let trf_id = trf["transaction_id"].as_str().expect("id");
    let r = app
        .post(
            &format!("/transactions/{trf_id}/reverse"),
            &admin.access,
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["kind"], "reversal");
    assert_eq!(r.body["reverses"], trf_id);
    let token = r
        .header("x-consistency-token")
        .unwrap_or_default()
        .to_owned();
    assert_eq!(account(&app, &admin, &a, &token).await["balance"], "500.00");
    assert_eq!(account(&app, &admin, &b, "").await["balance"], "10.00");
    let twice = app
        .post(
            &format!("/transactions/{trf_id}/reverse"),
            &admin.access,
            "",
        )
        .await;
    assert_eq!(twice.status, StatusCode::CONFLICT, "{:?}", twice.body);
    let original = app
        .get(
            &format!("/transactions/{trf_id}"),
            &admin.access,
            Some(&token),
        )
        .await;
    assert_eq!(
        original.body["reversed_by"], r.body["transaction_id"],
        "{:?}",
        original.body
    );

    // The log: oldest first, the balance after each line, read-only.
    let log = app
        .get(
            &format!("/accounts/{a}/transactions"),
            &admin.access,
            Some(&token),
        )
        .await;
    assert_eq!(log.status, StatusCode::OK, "{:?}", log.body);
    let lines: Vec<(String, String, String)> = log.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|l| {
            (
                l["kind"].as_str().unwrap_or_default().to_owned(),
                l["direction"].as_str().unwrap_or_default().to_owned(),
                l["balance_after"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("deposit", "credit", "500.00"),
        ("transfer", "debit", "-50.00"),
        ("reversal", "credit", "500.00"),
    ];
    assert_eq!(
        lines,
        expected
            .map(|(k, d, b)| (k.to_owned(), d.to_owned(), b.to_owned()))
            .to_vec()
    );
    let filtered = app
        .get(
            &format!("/accounts/{a}/transactions?kind=transfer&from=2026-12-02&to=2026-12-02"),
            &admin.access,
            None,
        )
        .await;
    assert_eq!(
        filtered.body["items"].as_array().map(Vec::len),
        Some(1),
        "{:?}",
        filtered.body
    );
    let client = app
        .get(
            &format!("/customers/{CLIENT}/transactions?limit=100"),
            &admin.access,
            None,
        )
        .await;
    assert_eq!(
        client.body["items"].as_array().map(Vec::len),
        Some(6),
        "{:?}",
        client.body
    );

    // A statement: the month's lines in value-date order, between balances that are folds
    // of the postings. A deposit posted later but valued in November moves December's
    // opening balance.
    let c = open(&app, &admin, json!({"type": "savings", "currency": "PKR"})).await;
    let c = c["account_id"].as_str().expect("id").to_owned();
    let mut dec = deposit(&c, "100", "C-DEC");
    dec["value_date"] = json!("2026-12-10");
    let mut nov = deposit(&c, "5", "C-NOV");
    nov["value_date"] = json!("2026-11-15");
    post(&app, &admin, dec).await;
    let (_, _, token) = post(&app, &admin, nov).await;
    let statement = |month: &'static str| {
        let (app, admin, c, token) = (&app, &admin, c.clone(), token.clone());
        async move {
            let r = app
                .get(
                    &format!("/accounts/{c}/statement?month={month}"),
                    &admin.access,
                    Some(&token),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
            r.body
        }
    };
    let november = statement("2026-11").await;
    assert_eq!(
        (&november["opening_balance"], &november["closing_balance"]),
        (&json!("0.00"), &json!("5.00"))
    );
    let december = statement("2026-12").await;
    assert_eq!(december["opening_balance"], "5.00");
    assert_eq!(december["lines"].as_array().map(Vec::len), Some(1));
    assert_eq!(december["lines"][0]["running_balance"], "105.00");
    assert_eq!(december["closing_balance"], "105.00");
    assert_eq!(
        account(&app, &admin, &c, &token).await["balance"],
        december["closing_balance"]
    );
    let r = app
        .get(
            &format!("/accounts/{c}/statement?month=2026-13"),
            &admin.access,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);

    // Closed only at zero.
    let r = app
        .post(&format!("/accounts/{a}/close"), &admin.access, "")
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    let r = app
        .post(&format!("/accounts/{usd}/close"), &admin.access, "")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "CLOSED");

    // Another tenant knows nothing of these.
    let other = bank(&app, "ledger-two").await;
    for path in [
        format!("/accounts/{a}"),
        format!("/accounts/{a}/transactions"),
        format!("/transactions/{trf_id}"),
    ] {
        let r = app.get(&path, &other.access, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {:?}", r.body);
    }
    let (s, p, _) = post(&app, &other, deposit(&a, "1", "THEIRS")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p:?}");
}
