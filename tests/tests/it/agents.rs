//! Agents and their clients (issue 17, seed 002): an ADMIN assigns a customer to an agent
//! (`PUT /customers/{id}/agent`); under the tenant's `customer_access: assigned` a MEMBER
//! sees only their own clients, with their accounts, transactions, cases, documents and
//! portal users, in lists, reads and searches alike, and everything else answers exactly as
//! an unknown id does. An agent opens their clients' accounts and never posts. Also the
//! read-model stores' `within` contract, on SQLite and on DynamoDB (the AWS emulator).

use axum::http::StatusCode;
use chronicle_tests::fake_salesforce::{Account, FakeSalesforce};
use chronicle_tests::{Reply, SignedUp, TestApp};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const MINE: &str = "001AGENT000000AAA";
const THEIRS: &str = "001AGENT000000BBB";
const NOBODYS: &str = "001AGENT000000CCC";
/// A well-formed id the tenant does not have: what every hidden client must look like.
const UNKNOWN: &str = "001AGENT000000ZZZ";

/// Retries `call` while it answers 404 (the read model a moment behind a write).
async fn until_found<F, Fut>(mut call: F) -> Reply
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = call().await;
        if r.status != StatusCode::NOT_FOUND || Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn token(r: &Reply) -> String {
    r.header("x-consistency-token")
        .unwrap_or_default()
        .to_owned()
}

fn ids(page: &Value, field: &str) -> Vec<String> {
    let mut out: Vec<String> = page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("a page: {page:?}"))
        .iter()
        .map(|i| i[field].as_str().unwrap_or_default().to_owned())
        .collect();
    out.sort();
    out
}

/// `path` answers `caller` as it answers for an id the tenant never had: the same status
/// and the same problem.
async fn hidden(app: &TestApp, caller: &SignedUp, path: &str, unknown_path: &str, fresh: &str) {
    let seen = app.get(path, &caller.access, Some(fresh)).await;
    let unknown = app.get(unknown_path, &caller.access, Some(fresh)).await;
    assert_eq!(
        seen.status,
        StatusCode::NOT_FOUND,
        "{path}: {:?}",
        seen.body
    );
    assert_eq!(
        (seen.status, seen.body["detail"].clone()),
        (unknown.status, unknown.body["detail"].clone()),
        "{path} must look like {unknown_path}"
    );
}

#[tokio::test]
async fn under_assigned_access_an_agent_sees_only_their_clients_and_what_belongs_to_them() {
    let app = TestApp::start();
    let admin = app
        .register_tenant("Agents Bank", "root@agents.test", "enterprise")
        .await;
    let org = FakeSalesforce::start(10).await;
    let an_hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    for (id, name) in [
        (MINE, "Mine Ltd"),
        (THEIRS, "Theirs Ltd"),
        (NOBODYS, "Nobodys Ltd"),
    ] {
        org.put(Account::new(id, name, "Karachi", an_hour_ago));
    }
    app.connect_and_sync(&admin, &org).await;
    let agent = app.member(&admin, "agent@agents.test").await;
    let other = app.member(&admin, "other@agents.test").await;

    // Assignments: ADMIN only; to an active staff user of this tenant; to a customer it has.
    let assign = |customer: &str, user: &str| {
        let path = format!("/customers/{customer}/agent");
        let body = json!({"user_id": user}).to_string();
        let admin = admin.access.clone();
        let app = &app;
        async move { app.put(&path, &admin, &body).await }
    };
    let mine = until_found(|| assign(MINE, &agent.user_id)).await;
    assert_eq!(mine.status, StatusCode::OK, "{:?}", mine.body);
    assert_eq!(mine.body["agent_id"], agent.user_id.as_str());
    assert_eq!(mine.body["customer_id"], MINE);
    let again = assign(MINE, &agent.user_id).await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "the same agent again changes nothing"
    );
    assert_eq!(again.header("etag"), mine.header("etag"));
    let theirs = assign(THEIRS, &other.user_id).await;
    assert_eq!(theirs.status, StatusCode::OK, "{:?}", theirs.body);
    let portal = app.portal_user(&admin, THEIRS, "contact@theirs.test").await;
    for (customer, user, status) in [
        (
            MINE,
            portal.user_id.as_str(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            MINE,
            "0190d0b8-0000-7000-8000-00000000dead",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (UNKNOWN, agent.user_id.as_str(), StatusCode::NOT_FOUND),
    ] {
        let r = assign(customer, user).await;
        assert_eq!(r.status, status, "{customer} to {user}: {:?}", r.body);
        r.problem();
    }
    let by_member = app
        .put(
            &format!("/customers/{NOBODYS}/agent"),
            &agent.access,
            &json!({"user_id": agent.user_id}).to_string(),
        )
        .await;
    assert_eq!(by_member.status, StatusCode::FORBIDDEN);
    let by_agent = app
        .get(
            &format!("/customers?agent_id={}", agent.user_id),
            &admin.access,
            Some(&token(&theirs)),
        )
        .await;
    assert_eq!(ids(&by_agent.body, "customer_id"), [MINE]);

    // Accounts: an ADMIN opens any client's, an agent only their own client's.
    let open = |customer: &str, who: &SignedUp| {
        let path = format!("/customers/{customer}/accounts");
        let who = who.access.clone();
        let app = &app;
        async move {
            app.post(&path, &who, r#"{"type":"checking","currency":"PKR"}"#)
                .await
        }
    };
    let my_account = open(MINE, &agent).await;
    assert_eq!(
        my_account.status,
        StatusCode::CREATED,
        "{:?}",
        my_account.body
    );
    let refused = open(THEIRS, &agent).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{:?}", refused.body);
    refused.problem();
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("agent"),
        "{:?}",
        refused.body
    );
    let their_account = open(THEIRS, &admin).await;
    assert_eq!(their_account.status, StatusCode::CREATED);
    let my_account = my_account.body["account_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let their_account = their_account.body["account_id"]
        .as_str()
        .expect("id")
        .to_owned();

    // Money on both; one transfer between them; a case for each client.
    let post = |body: Value| {
        let admin = admin.access.clone();
        let app = &app;
        async move { app.post("/transactions", &admin, &body.to_string()).await }
    };
    let deposit = |account: &str, reference: &str| {
        json!({"kind": "deposit", "account_id": account, "amount": "100", "currency": "PKR",
            "reference": reference, "value_date": "2026-12-01"})
    };
    let on_mine = post(deposit(&my_account, "AG-1")).await;
    let on_theirs = post(deposit(&their_account, "AG-2")).await;
    let transfer = post(
        json!({"kind": "transfer", "from": their_account, "to": my_account,
        "amount": "10", "currency": "PKR", "reference": "AG-3", "value_date": "2026-12-01"}),
    )
    .await;
    for r in [&on_mine, &on_theirs, &transfer] {
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
    let agent_posts = app
        .post(
            "/transactions",
            &agent.access,
            &deposit(&my_account, "AG-4").to_string(),
        )
        .await;
    assert_eq!(
        agent_posts.status,
        StatusCode::FORBIDDEN,
        "agents never post"
    );
    let tx_id = |r: &Reply| r.body["transaction_id"].as_str().expect("id").to_owned();
    let (on_mine, on_theirs, transfer_id) = (tx_id(&on_mine), tx_id(&on_theirs), tx_id(&transfer));
    let case = |customer: &str| {
        let path = format!("/customer/{customer}/cases");
        let admin = admin.access.clone();
        let app = &app;
        async move { app.post(&path, &admin, r#"{"subject":"help"}"#).await }
    };
    let my_case = case(MINE).await;
    let their_case = case(THEIRS).await;
    assert_eq!(my_case.status, StatusCode::CREATED, "{:?}", my_case.body);
    assert_eq!(their_case.status, StatusCode::CREATED);
    let my_case = my_case.body["case_id"].as_str().expect("id").to_owned();
    let their_case_id = their_case.body["case_id"].as_str().expect("id").to_owned();

    // Under the default, `all`, the agent sees every client.
    let fresh = token(&their_case);
    let all = app.get("/customers", &agent.access, Some(&fresh)).await;
    assert_eq!(ids(&all.body, "customer_id"), [MINE, THEIRS, NOBODYS]);

    // The tenant turns `assigned` on (a bad value is refused and changes nothing).
    let tenant_path = format!("/tenants/{}", admin.tenant_id);
    let bad = app
        .put(
            &tenant_path,
            &admin.access,
            r#"{"settings":{"customer_access":"mine"}}"#,
        )
        .await;
    assert_eq!(
        bad.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        bad.body
    );
    bad.problem();
    assert!(
        bad.body.to_string().contains("customer_access"),
        "{:?}",
        bad.body
    );
    let still = app.get("/customers", &agent.access, Some(&fresh)).await;
    assert_eq!(still.body["items"].as_array().map(Vec::len), Some(3));
    let set = app
        .put(
            &tenant_path,
            &admin.access,
            r#"{"settings":{"customer_access":"assigned"}}"#,
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);

    // Lists and searches: only the agent's own client and what belongs to it.
    let get = |path: String| {
        let agent = agent.access.clone();
        let fresh = fresh.clone();
        let app = &app;
        async move {
            let r = app.get(&path, &agent, Some(&fresh)).await;
            assert_eq!(r.status, StatusCode::OK, "{path}: {:?}", r.body);
            r.body
        }
    };
    assert_eq!(ids(&get("/customers".into()).await, "customer_id"), [MINE]);
    assert!(ids(&get("/customers?q=theirs".into()).await, "customer_id").is_empty());
    assert_eq!(
        ids(&get("/customers?q=ltd".into()).await, "customer_id"),
        [MINE]
    );
    assert_eq!(
        ids(&get("/cases".into()).await, "case_id"),
        [my_case.as_str()]
    );
    assert!(
        ids(
            &get(format!("/cases?customer_id={THEIRS}")).await,
            "case_id"
        )
        .is_empty()
    );
    let users = get("/users".into()).await;
    assert!(
        !ids(&users, "user_id").contains(&portal.user_id),
        "a portal user of another agent's client is hidden: {users:?}"
    );
    assert_eq!(
        ids(
            &get(format!("/customers/{MINE}/accounts")).await,
            "account_id"
        ),
        [my_account.as_str()]
    );
    let my_log = get(format!("/accounts/{my_account}/transactions")).await;
    assert_eq!(my_log["items"].as_array().map(Vec::len), Some(2));
    let my_lines = get(format!("/customers/{MINE}/transactions")).await;
    assert_eq!(my_lines["items"].as_array().map(Vec::len), Some(2));
    get(format!("/transactions/{on_mine}")).await;
    // A transfer is seen by whoever sees one of its accounts.
    get(format!("/transactions/{transfer_id}")).await;

    // Reads of another agent's client, its accounts, lines, cases and documents: 404, as
    // for an id the tenant never had.
    let no_account = "0190d0b8-0000-7000-8000-0000000000aa";
    for (path, unknown) in [
        (
            format!("/customers/{THEIRS}"),
            format!("/customers/{UNKNOWN}"),
        ),
        (
            format!("/customers/{NOBODYS}"),
            format!("/customers/{UNKNOWN}"),
        ),
        (
            format!("/customers/{THEIRS}/accounts"),
            format!("/customers/{UNKNOWN}/accounts"),
        ),
        (
            format!("/customers/{THEIRS}/transactions"),
            format!("/customers/{UNKNOWN}/transactions"),
        ),
        (
            format!("/accounts/{their_account}"),
            format!("/accounts/{no_account}"),
        ),
        (
            format!("/accounts/{their_account}/transactions"),
            format!("/accounts/{no_account}/transactions"),
        ),
        (
            format!("/accounts/{their_account}/statement?month=2026-12"),
            format!("/accounts/{no_account}/statement?month=2026-12"),
        ),
        (
            format!("/transactions/{on_theirs}"),
            format!("/transactions/{}", "0".repeat(32)),
        ),
        (
            format!("/cases/{their_case_id}"),
            "/cases/0190d0b8-0000-7000-8000-0000000000bb".to_owned(),
        ),
        (
            format!("/customer/{THEIRS}/cases"),
            format!("/customer/{UNKNOWN}/cases"),
        ),
        (
            format!("/customer/{THEIRS}/documents"),
            format!("/customer/{UNKNOWN}/documents"),
        ),
        (
            format!("/users/{}", portal.user_id),
            "/users/0190d0b8-0000-7000-8000-0000000000cc".to_owned(),
        ),
    ] {
        hidden(&app, &agent, &path, &unknown, &fresh).await;
    }
    // And writes: a case update or an account for a hidden client.
    let update = app
        .put(
            &format!("/cases/{their_case_id}"),
            &agent.access,
            r#"{"comment":"peek"}"#,
        )
        .await;
    assert_eq!(update.status, StatusCode::NOT_FOUND, "{:?}", update.body);
    assert_eq!(open(THEIRS, &agent).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.post(
            &format!("/customer/{THEIRS}/cases"),
            &agent.access,
            r#"{"subject":"peek"}"#
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let mine_updated = app
        .put(
            &format!("/cases/{my_case}"),
            &agent.access,
            r#"{"comment":"on it"}"#,
        )
        .await;
    assert_eq!(
        mine_updated.status,
        StatusCode::OK,
        "{:?}",
        mine_updated.body
    );

    // The other agent sees theirs; the ADMIN sees everyone's.
    let theirs_seen = app.get("/customers", &other.access, Some(&fresh)).await;
    assert_eq!(ids(&theirs_seen.body, "customer_id"), [THEIRS]);
    let admin_seen = app.get("/customers", &admin.access, Some(&fresh)).await;
    assert_eq!(admin_seen.body["items"].as_array().map(Vec::len), Some(3));
    let admin_case = app
        .get(
            &format!("/cases/{their_case_id}"),
            &admin.access,
            Some(&fresh),
        )
        .await;
    assert_eq!(admin_case.status, StatusCode::OK);

    // Unassigned, the client leaves the agent's sight.
    let removed = app
        .delete(&format!("/customers/{MINE}/agent"), &admin.access)
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{:?}", removed.body);
    let after = token(&removed);
    let none = app.get("/customers", &agent.access, Some(&after)).await;
    assert!(ids(&none.body, "customer_id").is_empty(), "{:?}", none.body);
    hidden(
        &app,
        &agent,
        &format!("/accounts/{my_account}"),
        &format!("/accounts/{no_account}"),
        &after,
    )
    .await;
    let cases = app.get("/cases", &agent.access, Some(&after)).await;
    assert!(ids(&cases.body, "case_id").is_empty(), "{:?}", cases.body);
}

#[tokio::test]
async fn the_sqlite_read_model_lists_only_rows_within_a_scope() {
    let dir = tempfile::tempdir().expect("dir");
    let views =
        infra::sqlite::SqliteReadModelStore::open(&dir.path().join("views.db")).expect("views");
    chronicle_tests::read_models::within_is_applied(&views).await;
}

#[tokio::test]
async fn aws_the_dynamodb_read_model_lists_only_rows_within_a_scope() {
    let aws = chronicle_tests::aws::test_aws().await;
    let views = infra::aws::DynamoReadModelStore::new(&aws);
    chronicle_tests::read_models::within_is_applied(&views).await;
}
