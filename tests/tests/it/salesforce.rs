//! Salesforce customer sync end to end on the embedded backend, against local fakes of
//! Salesforce orgs (`chronicle_tests::fake_salesforce`): connecting (the secret sealed and
//! never shown), full syncs over several pages, incremental and unchanged re-syncs,
//! records sharing one SystemModstamp across a page boundary, the API limit and the run
//! that resumes after it, deletions, an expired session, one sync at a time, and tenants
//! that never see each other's org.

use axum::http::StatusCode;
use chronicle_tests::fake_salesforce::{Account, FakeSalesforce};
use chronicle_tests::{PASSWORD, SignedUp, TestApp};
use chrono::{Duration as Span, Utc};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn connect(app: &TestApp, admin: &SignedUp, org: &FakeSalesforce) {
    let body = json!({"login_url": org.url, "client_id": org.client_id, "client_secret": org.client_secret});
    let reply = app
        .put("/salesforce/connection", &admin.access, &body.to_string())
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
}

async fn full_sync(app: &TestApp, admin: &SignedUp) -> String {
    let reply = app.post("/salesforce/sync", &admin.access, "").await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
    assert_eq!(reply.body["status"], "RUNNING");
    reply.body["sync_id"].as_str().expect("id").to_owned()
}

/// The scheduled poll, now: an incremental sync of every connected tenant.
async fn poll(app: &TestApp) -> Vec<String> {
    let worker = app.embedded.sync.as_ref().expect("sync worker");
    worker
        .schedule()
        .await
        .expect("schedule")
        .into_iter()
        .map(|(_, id)| id)
        .collect()
}

async fn ended(app: &TestApp, who: &SignedUp, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = app
            .get(&format!("/salesforce/sync/{id}"), &who.access, None)
            .await;
        if reply.status == StatusCode::OK && reply.body["status"] != "RUNNING" {
            return reply.body;
        }
        assert!(
            Instant::now() < deadline,
            "sync {id} never ended: {:?}",
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn counts(sync: &Value) -> (u64, u64, u64, u64, u64) {
    let c = &sync["counts"];
    let n = |k: &str| c[k].as_u64().unwrap_or(u64::MAX);
    (
        n("fetched"),
        n("imported"),
        n("updated"),
        n("deleted"),
        n("unchanged"),
    )
}

async fn customers(app: &TestApp, who: &SignedUp, query: &str) -> Vec<Value> {
    let reply = app
        .get(&format!("/customers{query}"), &who.access, None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body["items"].as_array().cloned().unwrap_or_default()
}

async fn member(app: &TestApp, admin: &SignedUp, email: &str) -> SignedUp {
    let body = json!({"email": email, "password": PASSWORD, "role": "MEMBER"});
    let added = app.post("/users", &admin.access, &body.to_string()).await;
    assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);
    let body = json!({"tenant_id": admin.tenant_id, "email": email, "password": PASSWORD});
    SignedUp::from_reply(&app.post_public("/auth/signin", &body.to_string()).await)
}

#[tokio::test]
async fn a_connection_checks_its_credentials_and_never_shows_its_secret() {
    let app = TestApp::start();
    let shop = app
        .register_tenant("Shop", "root@shop.test", "premium")
        .await;
    let org = FakeSalesforce::start(2).await;
    let wrong =
        json!({"login_url": org.url, "client_id": org.client_id, "client_secret": "not it"});
    let reply = app
        .put("/salesforce/connection", &shop.access, &wrong.to_string())
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        reply.body
    );
    assert_eq!(reply.body["field"], "client_secret");
    assert!(
        reply.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("invalid_client")
    );
    let missing = app.get("/salesforce/connection", &shop.access, None).await;
    assert_eq!(
        missing.status,
        StatusCode::NOT_FOUND,
        "a refused check wrote nothing"
    );
    let http = json!({"login_url": "http://acme.my.salesforce.com", "client_id": "x", "client_secret": "y"});
    let reply = app
        .put("/salesforce/connection", &shop.access, &http.to_string())
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["field"], "login_url");

    connect(&app, &shop, &org).await;
    let shown = app.get("/salesforce/connection", &shop.access, None).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.body["login_url"], org.url.as_str());
    assert_eq!(shown.body["api_version"], "60.0");
    assert!(!shown.body.to_string().contains(&org.client_secret));
    // Stored sealed: no event of the tenant holds the secret in clear.
    let tenant = domain::TenantId::parse(&shop.tenant_id).expect("tenant");
    let feed = commands::EventStore::read_tenant_feed(
        &app.embedded.events,
        &tenant,
        &commands::FeedCursor::start(),
        10_000,
    )
    .await
    .expect("feed");
    assert!(
        feed.events
            .iter()
            .any(|e| e.event_type == "SalesforceConnected")
    );
    assert!(
        feed.events
            .iter()
            .all(|e| !e.payload.to_string().contains(&org.client_secret)),
        "the secret is sealed at rest"
    );
    let m = member(&app, &shop, "m@shop.test").await;
    let reply = app
        .put("/salesforce/connection", &m.access, &wrong.to_string())
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.post("/salesforce/sync", &m.access, "").await.status,
        StatusCode::FORBIDDEN
    );

    let gone = app.delete("/salesforce/connection", &shop.access).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/salesforce/connection", &shop.access, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let reply = app.post("/salesforce/sync", &shop.access, "").await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "no connection, no sync");
}

#[tokio::test]
async fn full_incremental_and_unchanged_syncs_write_only_what_changed() {
    let app = TestApp::start();
    let shop = app
        .register_tenant("Shop", "root@shop.test", "premium")
        .await;
    let org = FakeSalesforce::start(2).await;
    let t0 = Utc::now() - Span::hours(3);
    for (i, (name, city)) in [
        ("Acme", "Karachi"),
        ("Globex", "Lahore"),
        ("Initech", "Karachi"),
        ("Umbrella", "Quetta"),
        ("Hooli", "Lahore"),
    ]
    .iter()
    .enumerate()
    {
        let mut a = Account::new(
            &format!("001FAKE00000000{i}AA"),
            name,
            city,
            t0 + Span::minutes(i as i64 * 10),
        );
        if i == 0 {
            a.contact = Some(("Ayesha Khan".into(), "ayesha@acme.test".into()));
        }
        org.put(a);
    }
    connect(&app, &shop, &org).await;
    let first = full_sync(&app, &shop).await;
    let s = ended(&app, &shop, &first).await;
    assert_eq!(s["status"], "COMPLETED", "{s:?}");
    assert_eq!(s["mode"], "full");
    assert_eq!(counts(&s), (5, 5, 0, 0, 0), "{s:?}");
    let token = app
        .get(&format!("/salesforce/sync/{first}"), &shop.access, None)
        .await;
    assert_eq!(token.status, StatusCode::OK);
    assert!(
        org.queries()
            .iter()
            .any(|q| q.contains("FROM Account") && !q.contains("SystemModstamp >=")),
        "a full sync reads every Account: {:?}",
        org.queries()
    );

    let all = customers(&app, &shop, "?limit=100").await;
    assert_eq!(all.len(), 5);
    let m = member(&app, &shop, "reader@shop.test").await;
    assert_eq!(
        customers(&app, &m, "?city=Karachi").await.len(),
        2,
        "MEMBERs read customers"
    );
    let found = customers(&app, &m, "?q=AYESHA").await;
    assert_eq!(found.len(), 1, "q searches the contact's email too");
    assert_eq!(found[0]["name"], "Acme");
    assert_eq!(found[0]["contact_name"], "Ayesha Khan");
    assert_eq!(customers(&app, &m, "?q=glob").await.len(), 1);
    let one = app
        .get("/customers/001FAKE000000001AA", &m.access, None)
        .await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.body["billing_city"], "Lahore");
    let versions: Vec<(Value, Value)> = all
        .iter()
        .map(|c| (c["customer_id"].clone(), c["version"].clone()))
        .collect();

    // The same data again: nothing written.
    let again = full_sync(&app, &shop).await;
    let s = ended(&app, &shop, &again).await;
    assert_eq!(counts(&s), (5, 0, 0, 0, 5), "{s:?}");
    let after: Vec<(Value, Value)> = customers(&app, &shop, "?limit=100")
        .await
        .iter()
        .map(|c| (c["customer_id"].clone(), c["version"].clone()))
        .collect();
    assert_eq!(after, versions, "an unchanged re-sync writes no event");

    // One changed, one new: an incremental run writes exactly those, with only the
    // changed field.
    let mut changed = org.account("001FAKE000000004AA");
    changed.phone = Some("+92 300 0000000".into());
    changed.modstamp = Utc::now() - Span::minutes(30);
    org.put(changed);
    org.put(Account::new(
        "001FAKE000000005AA",
        "Stark",
        "Multan",
        Utc::now() - Span::minutes(20),
    ));
    let ids = poll(&app).await;
    assert_eq!(ids.len(), 1, "the scheduled poll started one sync");
    let s = ended(&app, &shop, &ids[0]).await;
    assert_eq!(s["mode"], "incremental");
    let (fetched, imported, updated, deleted, unchanged) = counts(&s);
    assert_eq!((imported, updated, deleted), (1, 1, 0), "{s:?}");
    assert_eq!(fetched, imported + updated + unchanged);
    assert!(
        org.queries()
            .iter()
            .rfind(|q| q.contains("FROM Account") && !q.contains("FROM ContentDocumentLink"))
            .is_some_and(|q| q.contains("SystemModstamp >=")),
        "an incremental run reads from its watermark"
    );
    let tenant = domain::TenantId::parse(&shop.tenant_id).expect("tenant");
    let events = commands::EventStore::read_stream(
        &app.embedded.events,
        &tenant,
        &domain::StreamId::for_aggregate("customer", "001FAKE000000004AA"),
        1,
        100,
    )
    .await
    .expect("stream");
    let update = events.last().expect("update");
    assert_eq!(update.event_type, "CustomerUpdated");
    assert_eq!(
        update.payload["changes"],
        json!({"phone": "+92 300 0000000"})
    );

    // A deletion, through queryAll.
    let mut gone = org.account("001FAKE000000002AA");
    gone.deleted = true;
    gone.modstamp = Utc::now() - Span::minutes(5);
    org.put(gone);
    let ids = poll(&app).await;
    let s = ended(&app, &shop, &ids[0]).await;
    assert_eq!(counts(&s).3, 1, "{s:?}");
    assert!(org.queries().iter().any(|q| q.contains("IsDeleted = true")));
    assert_eq!(
        app.get("/customers/001FAKE000000002AA", &shop.access, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(customers(&app, &shop, "?limit=100").await.len(), 5);
    let runs = app.get("/salesforce/syncs", &shop.access, None).await;
    assert_eq!(runs.body["items"].as_array().map(Vec::len), Some(4));
}

#[tokio::test]
async fn the_api_limit_fails_a_run_that_the_next_resumes_across_a_shared_timestamp() {
    let app = TestApp::start();
    let shop = app
        .register_tenant("Shop", "root@shop.test", "premium")
        .await;
    let org = FakeSalesforce::start(2).await;
    // Three records share one SystemModstamp; a page holds two.
    let t = Utc::now() - Span::hours(1);
    for id in [
        "001SAME0000000AAA",
        "001SAME0000000BBB",
        "001SAME0000000CCC",
    ] {
        org.put(Account::new(id, id, "Karachi", t));
    }
    connect(&app, &shop, &org).await;
    org.limit_calls(Some(1));
    let first = full_sync(&app, &shop).await;
    let s = ended(&app, &shop, &first).await;
    assert_eq!(s["status"], "FAILED", "{s:?}");
    assert!(
        s["error"]
            .as_str()
            .unwrap_or_default()
            .contains("REQUEST_LIMIT_EXCEEDED"),
        "{s:?}"
    );
    assert_eq!(counts(&s).1, 2, "the first page was written");
    assert_eq!(s["watermark"]["id"], "001SAME0000000BBB");
    assert_eq!(customers(&app, &shop, "").await.len(), 2);

    org.limit_calls(None);
    let ids = poll(&app).await;
    let s = ended(&app, &shop, &ids[0]).await;
    assert_eq!(s["status"], "COMPLETED", "{s:?}");
    assert_eq!(
        s["since"]["id"], "001SAME0000000BBB",
        "it resumed from the watermark"
    );
    let (_, imported, updated, _, unchanged) = counts(&s);
    assert_eq!(
        (imported, updated),
        (1, 0),
        "the record past the boundary, once: {s:?}"
    );
    assert_eq!(unchanged, 2, "the look-back re-read the two it had");
    assert_eq!(customers(&app, &shop, "").await.len(), 3);
}

#[tokio::test]
async fn an_expired_session_gets_a_new_token_once_and_one_sync_runs_at_a_time() {
    let app = TestApp::start();
    let shop = app
        .register_tenant("Shop", "root@shop.test", "premium")
        .await;
    let org = FakeSalesforce::start(2).await;
    org.put(Account::new(
        "001EXP00000000AAA",
        "Expiring",
        "Karachi",
        Utc::now() - Span::hours(1),
    ));
    connect(&app, &shop, &org).await;
    let before = org.token_requests();
    org.expire_tokens();
    org.pause(Duration::from_millis(300));
    let first = full_sync(&app, &shop).await;
    let second = app.post("/salesforce/sync", &shop.access, "").await;
    assert_eq!(second.status, StatusCode::CONFLICT, "{:?}", second.body);
    assert!(
        second.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains(&first),
        "the 409 names the running sync: {:?}",
        second.body
    );
    let s = ended(&app, &shop, &first).await;
    assert_eq!(s["status"], "COMPLETED", "{s:?}");
    assert_eq!(counts(&s).1, 1);
    assert_eq!(
        org.token_requests(),
        before + 1,
        "one new token after INVALID_SESSION_ID"
    );
    let next = full_sync(&app, &shop).await;
    assert_eq!(
        ended(&app, &shop, &next).await["status"],
        "COMPLETED",
        "the slot was freed"
    );
}

#[tokio::test]
async fn each_tenant_syncs_its_own_org_and_sees_only_its_customers() {
    let app = TestApp::start();
    let a = app.register_tenant("A", "root@a.test", "premium").await;
    let b = app.register_tenant("B", "root@b.test", "premium").await;
    let org_a = FakeSalesforce::start(10).await;
    let org_b = FakeSalesforce::start(10).await;
    let t = Utc::now() - Span::hours(1);
    org_a.put(Account::new("001AAAA0000000AAA", "Alpha", "Karachi", t));
    org_b.put(Account::new("001BBBB0000000BBB", "Beta", "Lahore", t));
    connect(&app, &a, &org_a).await;
    connect(&app, &b, &org_b).await;
    let sa = full_sync(&app, &a).await;
    let sb = full_sync(&app, &b).await;
    ended(&app, &a, &sa).await;
    ended(&app, &b, &sb).await;
    let names = |v: Vec<Value>| v.iter().map(|c| c["name"].clone()).collect::<Vec<_>>();
    assert_eq!(names(customers(&app, &a, "").await), vec![json!("Alpha")]);
    assert_eq!(names(customers(&app, &b, "").await), vec![json!("Beta")]);
    assert_eq!(
        app.get("/customers/001BBBB0000000BBB", &a.access, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/salesforce/sync/{sb}"), &a.access, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}
