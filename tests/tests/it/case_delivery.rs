//! Cases delivered to the tenant's Salesforce org (the local fake), on the embedded
//! backend: an upsert on the External ID field, so a retry after a lost answer never makes
//! a second Case; transient failures retried until Salesforce answers again, while case
//! creation goes on answering 201; a validation error that ends the delivery with its
//! reason; a staff change sent as the case then stands.

use axum::http::{Method, StatusCode};
use chronicle_tests::fake_salesforce::{Account, FakeSalesforce, REFUSED_SUBJECT};
use chronicle_tests::{SignedUp, TestApp};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const ACME: &str = "001DELIVER00000AAA";

async fn tenant(app: &TestApp, name: &str) -> (SignedUp, FakeSalesforce) {
    let admin = app
        .register_tenant(name, &format!("root@{name}.test"), "enterprise")
        .await;
    let org = FakeSalesforce::start(10).await;
    org.put(Account::new(
        ACME,
        "Acme",
        "Karachi",
        chrono::Utc::now() - chrono::Duration::hours(1),
    ));
    app.connect_and_sync(&admin, &org).await;
    (admin, org)
}

async fn open(app: &TestApp, who: &SignedUp, subject: &str) -> String {
    let reply = app
        .post(
            &format!("/customer/{ACME}/cases"),
            &who.access,
            &json!({"subject": subject, "description": "details", "priority": "low"}).to_string(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(reply.body["salesforce"]["state"], "pending");
    reply.body["case_id"].as_str().expect("id").to_owned()
}

/// The case once its delivery state is no longer `pending`.
async fn settled(app: &TestApp, who: &SignedUp, case_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = app
            .get(&format!("/cases/{case_id}"), &who.access, None)
            .await;
        if reply.status == StatusCode::OK && reply.body["salesforce"]["state"] != "pending" {
            return reply.body;
        }
        assert!(
            Instant::now() < deadline,
            "never delivered: {:?}",
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_case_reaches_salesforce_once_even_when_an_answer_is_lost() {
    let app = TestApp::start();
    let (admin, org) = tenant(&app, "deliver-once").await;
    // The first upsert is applied, but its answer comes after the worker's 1 s timeout.
    org.delay_next_case(Duration::from_millis(1500));
    let case_id = open(&app, &admin, "Printer on fire").await;
    let case = settled(&app, &admin, &case_id).await;
    assert_eq!(case["salesforce"]["state"], "delivered", "{case:?}");
    assert!(org.case_calls() >= 2, "the lost answer was retried");
    let cases = org.cases();
    assert_eq!(cases.len(), 1, "one Case in Salesforce: {cases:?}");
    let (key, record) = &cases[0];
    assert_eq!(key, &case_id);
    assert_eq!(case["salesforce"]["salesforce_id"], record["Id"]);
    assert_eq!(record["AccountId"], ACME);
    assert_eq!(record["Subject"], "Printer on fire");
    assert_eq!(record["Priority"], "Low");
    assert_eq!(record["Status"], "New");
    assert_eq!(record["Chronicle_Case_Id__c"], case_id.as_str());

    // A staff change goes as the case now stands, to the same Case.
    let moved = app
        .send(
            Method::PUT,
            &format!("/cases/{case_id}"),
            Some(&admin.access),
            &[],
            Some(r#"{"status":"ESCALATED"}"#),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
    let deadline = Instant::now() + Duration::from_secs(20);
    while org.cases()[0].1["Status"] != "Escalated" {
        assert!(Instant::now() < deadline, "{:?}", org.cases());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(org.cases().len(), 1);
}

#[tokio::test]
async fn delivery_waits_out_an_outage_and_stops_at_a_validation_error() {
    let app = TestApp::start();
    let (admin, org) = tenant(&app, "deliver-outage").await;
    // Salesforce answers 503 to the next five upserts: more than one round of attempts.
    org.fail_cases(5);
    let first = open(&app, &admin, "During the outage").await;
    let second = open(&app, &admin, "Also during the outage").await;
    for id in [&first, &second] {
        let case = settled(&app, &admin, id).await;
        assert_eq!(case["salesforce"]["state"], "delivered", "{case:?}");
    }
    assert_eq!(org.cases().len(), 2);
    assert!(org.case_calls() >= 7, "{}", org.case_calls());

    // A validation rule's refusal: failed, with Salesforce's reason, and not retried.
    let refused = open(&app, &admin, &format!("Bad {REFUSED_SUBJECT} subject")).await;
    let case = settled(&app, &admin, &refused).await;
    assert_eq!(case["salesforce"]["state"], "failed", "{case:?}");
    let reason = case["salesforce"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("FIELD_CUSTOM_VALIDATION_EXCEPTION") && reason.contains("Subject"),
        "{reason}"
    );
    let calls = org.case_calls();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(org.case_calls(), calls, "a refusal is not retried");
    assert_eq!(org.cases().len(), 2);
}

/// A sync run to its end; its counts.
async fn synced(app: &TestApp, admin: &SignedUp, org: &FakeSalesforce) -> Value {
    let id = app.connect_and_sync(admin, org).await;
    let s = app
        .get(&format!("/salesforce/sync/{id}"), &admin.access, None)
        .await;
    s.body["counts"].clone()
}

#[tokio::test]
async fn agents_changes_in_salesforce_come_back_and_chronicles_own_do_not() {
    let app = TestApp::start();
    let (admin, org) = tenant(&app, "deliver-back").await;
    let case_id = open(&app, &admin, "Modem blinking").await;
    assert_eq!(
        settled(&app, &admin, &case_id).await["salesforce"]["state"],
        "delivered"
    );

    // An agent escalates it in Salesforce and comments.
    org.agent_update(&case_id, "Escalated", Some("Sent to tier 2"));
    let calls = org.case_calls();
    let counts = synced(&app, &admin, &org).await;
    assert_eq!(counts["cases_updated"], 1, "{counts:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let case = loop {
        let c = app
            .get(&format!("/cases/{case_id}"), &admin.access, None)
            .await;
        if c.body["status"] == "ESCALATED" {
            break c.body;
        }
        assert!(Instant::now() < deadline, "{:?}", c.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(case["comments"][0]["body"], "Sent to tier 2");
    assert_eq!(case["comments"][0]["source"], "salesforce");
    // What came from Salesforce is not sent back to it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        org.case_calls(),
        calls,
        "no upsert of Salesforce's own change"
    );

    // Read again, nothing is new.
    let counts = synced(&app, &admin, &org).await;
    assert_eq!(counts["cases_updated"], 0, "{counts:?}");

    // A staff change goes to Salesforce, and the next sync does not echo it back.
    let moved = app
        .put(
            &format!("/cases/{case_id}"),
            &admin.access,
            r#"{"status":"WORKING"}"#,
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
    let deadline = Instant::now() + Duration::from_secs(20);
    while org.cases()[0].1["Status"] != "Working" {
        assert!(Instant::now() < deadline, "{:?}", org.cases());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let counts = synced(&app, &admin, &org).await;
    assert_eq!(counts["cases_updated"], 0, "{counts:?}");
    let c = app
        .get(&format!("/cases/{case_id}"), &admin.access, None)
        .await;
    assert_eq!(c.body["status"], "WORKING");
    assert_eq!(c.body["comments"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn while_salesforce_is_down_reads_go_on_and_its_circuit_stops_calling_it() {
    let app = TestApp::start();
    let (admin, org) = tenant(&app, "deliver-breaker").await;
    let before = app
        .get(&format!("/customer/{ACME}/cases"), &admin.access, None)
        .await;
    let synced = before
        .header("x-last-synced")
        .expect("X-Last-Synced")
        .to_owned();
    let at = chrono::DateTime::parse_from_rfc3339(&synced).expect("RFC 3339");
    assert!(chrono::Utc::now() - at.with_timezone(&chrono::Utc) < chrono::Duration::minutes(1));

    // Salesforce fails every call from now on.
    org.fail_cases(u32::MAX);
    let case_id = open(&app, &admin, "Opened during the outage").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = app.get("/ready", &admin.access, None).await;
        assert_eq!(ready.status, StatusCode::OK, "{:?}", ready.body);
        if ready.body["detail"]["salesforce"]["open_circuits"] == 1 {
            assert_eq!(ready.body["detail"]["salesforce"]["status"], "degraded");
            break;
        }
        assert!(Instant::now() < deadline, "{:?}", ready.body);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Open, the circuit lets at most a trial call through per 400 ms cool-down.
    let calls = org.case_calls();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        org.case_calls() <= calls + 1,
        "{} after {calls}",
        org.case_calls()
    );
    // Reads are served from the read models all along, saying how fresh they are.
    let during = app
        .get(
            &format!("/customer/{ACME}/cases/{case_id}"),
            &admin.access,
            None,
        )
        .await;
    assert_eq!(during.status, StatusCode::OK, "{:?}", during.body);
    assert_eq!(during.body["salesforce"]["state"], "pending");
    assert_eq!(during.header("x-last-synced"), Some(synced.as_str()));

    // Salesforce is back: the next trial closes the circuit and the case goes through.
    org.fail_cases(0);
    let case = settled(&app, &admin, &case_id).await;
    assert_eq!(case["salesforce"]["state"], "delivered", "{case:?}");
    let ready = app.get("/ready", &admin.access, None).await;
    assert_eq!(
        ready.body["detail"]["salesforce"]["open_circuits"], 0,
        "{:?}",
        ready.body
    );
    assert_eq!(org.cases().len(), 1);
}
