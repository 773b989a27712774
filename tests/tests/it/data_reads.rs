//! System logs of client data (seed 002, issue 17): with the tenant's `audit_reads` on,
//! every successful read of a client's data by staff appends a ClientDataRead event (who,
//! which operation, which path, which client), shown to OWNERs and ADMINs in
//! `/audit/events`; with it off (the default) reads write nothing. Failed reads, writes
//! and reads of other data are not recorded.

use crate::ledger::{CLIENT, bank, open};
use axum::http::StatusCode;
use chronicle_tests::{SignedUp, TestApp};
use serde_json::{Value, json};

async fn reads(app: &TestApp, admin: &SignedUp) -> Vec<Value> {
    let r = app
        .get("/audit/events?type=ClientDataRead", &admin.access, None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body["items"].as_array().expect("items").clone()
}

#[tokio::test]
async fn staff_reads_of_client_data_are_recorded_only_where_the_tenant_asks() {
    let app = TestApp::start();
    let admin = bank(&app, "reads").await;
    let account = open(&app, &admin, json!({"type": "checking", "currency": "PKR"})).await;
    let account = account["account_id"].as_str().expect("id").to_owned();
    let agent = app.member(&admin, "agent@reads.test").await;
    let path = format!("/accounts/{account}");

    // Off by default: reads write nothing.
    let r = app.get(&path, &agent.access, None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(reads(&app, &admin).await.is_empty());

    // A bad value is refused; `true` turns it on.
    let tenant = format!("/tenants/{}", admin.tenant_id);
    let bad = app
        .put(
            &tenant,
            &admin.access,
            r#"{"settings":{"audit_reads":"yes"}}"#,
        )
        .await;
    assert_eq!(
        bad.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        bad.body
    );
    assert!(
        bad.body.to_string().contains("audit_reads"),
        "{:?}",
        bad.body
    );
    let on = app
        .put(
            &tenant,
            &admin.access,
            r#"{"settings":{"audit_reads":true}}"#,
        )
        .await;
    assert_eq!(on.status, StatusCode::OK, "{:?}", on.body);

    let list = format!("/customers/{CLIENT}/accounts");
    assert_eq!(
        app.get(&list, &agent.access, None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get(&path, &admin.access, None).await.status,
        StatusCode::OK
    );
    // Not recorded: a read that fails, a write, a read of something other than a client's.
    let unknown = format!("/accounts/{}", uuid::Uuid::now_v7());
    assert_eq!(
        app.get(&unknown, &agent.access, None).await.status,
        StatusCode::NOT_FOUND
    );
    let freeze = app.post(&format!("{path}/freeze"), &admin.access, "").await;
    assert_eq!(freeze.status, StatusCode::OK, "{:?}", freeze.body);
    assert_eq!(
        app.get("/tasks", &agent.access, None).await.status,
        StatusCode::OK
    );

    let recorded = reads(&app, &admin).await;
    let seen: Vec<(&str, &str, &str, Option<&str>)> = recorded
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap_or_default(),
                e["payload"]["operation"].as_str().unwrap_or_default(),
                e["payload"]["path"].as_str().unwrap_or_default(),
                e["payload"]["customer_id"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                agent.user_id.as_str(),
                "ListCustomerAccounts",
                list.as_str(),
                Some(CLIENT)
            ),
            (admin.user_id.as_str(), "GetAccount", path.as_str(), None),
        ],
        "{recorded:?}"
    );
    // The system logs are the ADMINs' and OWNERs': an agent reads none of them.
    let denied = app
        .get("/audit/events?type=ClientDataRead", &agent.access, None)
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
}
