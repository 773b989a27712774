//! Walks every route of the policy table with seven callers (no token, a bad token, a
//! MEMBER, an ADMIN, the tenant's OWNER, a CUSTOMER of one of the tenant's customers,
//! another tenant's ADMIN) and checks each answer against the table. The router
//! registers routes only through the table, so a route cannot be missing from the walk.

use api::policy::Access;
use axum::http::{Method, StatusCode};
use chronicle_tests::fake_salesforce::{Account, FakeSalesforce};
use chronicle_tests::{PASSWORD, SignedUp, TestApp};
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Caller {
    Anonymous,
    BadToken,
    Member,
    Admin,
    Owner,
    Customer,
    OtherTenantAdmin,
}

/// The status a route answers on success.
fn success(method: &Method, path: &str) -> StatusCode {
    match (method.as_str(), path) {
        ("POST", "/auth/signin" | "/auth/refresh") => StatusCode::OK,
        ("POST", "/auth/signout") => StatusCode::NO_CONTENT,
        (
            "POST",
            "/ai/query" | "/salesforce/sync" | "/llm" | "/messages" | "/integrations/sftp/run",
        ) => StatusCode::ACCEPTED,
        ("POST", p)
            if p.starts_with("/orders/")
                || p.ends_with("/inventory")
                || p.starts_with("/accounts/") =>
        {
            StatusCode::OK
        }
        ("GET", p) if p.ends_with("/download") => StatusCode::FOUND,
        ("POST", _) => StatusCode::CREATED,
        ("DELETE", _) => StatusCode::NO_CONTENT,
        _ => StatusCode::OK,
    }
}

fn expected(access: Access, caller: Caller, has_id: bool, ok: StatusCode) -> Vec<StatusCode> {
    use Caller::*;
    match (access, caller) {
        (Access::Public, _) => vec![ok, StatusCode::NOT_FOUND /* /metrics off in tests */],
        (_, Anonymous | BadToken) => vec![StatusCode::UNAUTHORIZED],
        (Access::Admin, Member) => vec![StatusCode::FORBIDDEN],
        (Access::Admin | Access::Member, Customer) => vec![StatusCode::FORBIDDEN],
        (_, OtherTenantAdmin) if has_id => vec![StatusCode::NOT_FOUND],
        _ => vec![ok],
    }
}

/// A registered tenant with its OWNER (`admin`, who signed it up), an ADMIN and a MEMBER,
/// as the walk of one route needs it.
struct Fixture {
    admin: SignedUp,
    real_admin: SignedUp,
    member: SignedUp,
    member_email: String,
}

async fn fixture(app: &TestApp, n: usize) -> Fixture {
    let admin = app
        .register_tenant(
            &format!("Walk {n}"),
            &format!("root{n}@walk.test"),
            "enterprise",
        )
        .await;
    let member_email = format!("member{n}@walk.test");
    let body = json!({"email": member_email, "password": PASSWORD, "role": "MEMBER"});
    let created = app.post("/users", &admin.access, &body.to_string()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let member = sign_in(app, &admin.tenant_id, &member_email).await;
    let admin_email = format!("admin{n}@walk.test");
    let body = json!({"email": admin_email, "password": PASSWORD, "role": "ADMIN"});
    let created = app.post("/users", &admin.access, &body.to_string()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let real_admin = sign_in(app, &admin.tenant_id, &admin_email).await;
    Fixture {
        admin,
        real_admin,
        member,
        member_email,
    }
}

async fn sign_in(app: &TestApp, tenant: &str, email: &str) -> SignedUp {
    let body = json!({"tenant_id": tenant, "email": email, "password": PASSWORD});
    let reply = app.post_public("/auth/signin", &body.to_string()).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    SignedUp::from_reply(&reply)
}

fn address(street: &str) -> serde_json::Value {
    json!({"street": street, "city": "Karachi", "state": "Sindh", "zip": "75500"})
}

fn order_body(product_id: &str) -> serde_json::Value {
    json!({
        "customer_email": "buyer@walk.test",
        "items": [{"product_id": product_id, "quantity": 1}],
        "shipping_address": address("1 Walk Lane"),
    })
}

/// The customer the walk's tenants sync from their org, and its document.
const WALKED: &str = "001WALK0000000AAA";
const WALKED_DOCUMENT: &str = "069WALK0000000AAA";

/// What a route of the walk needs: a product and an order (an order placed by the MEMBER,
/// moved as far along as the route needs: confirmed before a ship, shipped before a
/// delivery), a synced customer with a case and a CUSTOMER of it, or nothing.
#[derive(Default)]
struct Needs {
    product_id: String,
    /// The `{id}` of an order, AI query, sync, customer or case route.
    id: String,
    case_id: String,
    token: String,
    /// A signed-up CUSTOMER of the walked customer.
    customer: Option<String>,
}

/// The walk's SFTP server, stopped at the walk's end.
static SFTP: std::sync::Mutex<Option<chronicle_tests::sftp::SftpServer>> =
    std::sync::Mutex::new(None);

async fn commerce_fixture(app: &TestApp, f: &Fixture, path: &str, unique: &str) -> Needs {
    if path.starts_with("/integrations/sftp") {
        // Connected to the walk's server, with no run under way (one per tenant at a
        // time), and one run done for the run routes.
        let body = SFTP
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert_with(chronicle_tests::sftp::SftpServer::start)
            .connection();
        let c = app
            .put("/integrations/sftp", &f.admin.access, &body.to_string())
            .await;
        assert_eq!(c.status, StatusCode::OK, "{:?}", c.body);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let id = loop {
            let run = app
                .post("/integrations/sftp/run", &f.admin.access, "")
                .await;
            if run.status == StatusCode::ACCEPTED {
                break run.body["import_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
            }
            assert!(std::time::Instant::now() < deadline, "{:?}", run.body);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        loop {
            let r = app
                .get(
                    &format!("/integrations/sftp/imports/{id}"),
                    &f.admin.access,
                    None,
                )
                .await;
            if r.status == StatusCode::OK && r.body["status"] != "RUNNING" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{:?}", r.body);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        return Needs {
            product_id: body.to_string(),
            id,
            ..Needs::default()
        };
    }
    if path.starts_with("/messages/suppressions") {
        // A recipient the SMTP server refused for good (550), so suppressed.
        let recipient = format!("reject-{unique}@client.test");
        let body = json!({"recipient": recipient, "subject": "Walk", "body": "walked"});
        let m = app
            .post("/messages", &f.member.access, &body.to_string())
            .await;
        assert_eq!(m.status, StatusCode::ACCEPTED, "{:?}", m.body);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let at = format!("/messages/suppressions/{recipient}");
        while app.get(&at, &f.admin.access, None).await.status != StatusCode::OK {
            assert!(
                std::time::Instant::now() < deadline,
                "{recipient} never suppressed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        return Needs {
            id: recipient,
            ..Needs::default()
        };
    }
    if path.starts_with("/messages/") {
        // A message of the MEMBER's: the ADMIN sees it too, another tenant does not.
        let body = json!({"recipient": "walk@client.test", "subject": "Walk", "body": "walked"});
        let m = app
            .post("/messages", &f.member.access, &body.to_string())
            .await;
        assert_eq!(m.status, StatusCode::ACCEPTED, "{:?}", m.body);
        return Needs {
            id: m.body["message_id"].as_str().unwrap_or_default().to_owned(),
            token: m
                .header("x-consistency-token")
                .unwrap_or_default()
                .to_owned(),
            ..Needs::default()
        };
    }
    let ledger = path.starts_with("/accounts")
        || path.starts_with("/transactions")
        || path.ends_with("/accounts")
        || path.ends_with("/transactions");
    if ledger {
        // A synced client with an account (frozen, for an unfreeze), and a deposit on it
        // (for the transaction routes; an account with money in it cannot be closed).
        let org = FakeSalesforce::start(10).await;
        org.put(Account::new(
            WALKED,
            "Walked",
            "Karachi",
            chrono::Utc::now() - chrono::Duration::hours(1),
        ));
        app.connect_and_sync(&f.admin, &org).await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let opened = loop {
            let r = app
                .post(
                    &format!("/customers/{WALKED}/accounts"),
                    &f.admin.access,
                    r#"{"type":"checking","currency":"PKR"}"#,
                )
                .await;
            if r.status != StatusCode::NOT_FOUND || std::time::Instant::now() > deadline {
                break r;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        assert_eq!(opened.status, StatusCode::CREATED, "{:?}", opened.body);
        let account = opened.body["account_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut token = opened
            .header("x-consistency-token")
            .unwrap_or_default()
            .to_owned();
        let mut transaction = String::new();
        if path.starts_with("/transactions") {
            let body = json!({"kind": "deposit", "account_id": account, "amount": "10", "currency": "PKR",
                "reference": format!("WALK-{unique}"), "value_date": "2026-12-01"});
            let d = app
                .post("/transactions", &f.admin.access, &body.to_string())
                .await;
            assert_eq!(d.status, StatusCode::CREATED, "{:?}", d.body);
            transaction = d.body["transaction_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            token = d
                .header("x-consistency-token")
                .unwrap_or_default()
                .to_owned();
        }
        if path.ends_with("/unfreeze") {
            let r = app
                .post(&format!("/accounts/{account}/freeze"), &f.admin.access, "")
                .await;
            assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
            token = r
                .header("x-consistency-token")
                .unwrap_or_default()
                .to_owned();
        }
        return Needs {
            product_id: account.clone(),
            id: if path.starts_with("/transactions") {
                transaction
            } else if path.starts_with("/accounts") {
                account
            } else {
                WALKED.to_owned()
            },
            token,
            ..Needs::default()
        };
    }
    if path.starts_with("/customer/") || path.starts_with("/cases") {
        let org = FakeSalesforce::start(10).await;
        org.put(Account::new(
            WALKED,
            "Walked",
            "Karachi",
            chrono::Utc::now() - chrono::Duration::hours(1),
        ));
        org.put_document(chronicle_tests::fake_salesforce::Document {
            document_id: WALKED_DOCUMENT.into(),
            account_id: WALKED.into(),
            version_id: "068WALK0000000AAA".into(),
            title: "Walked".into(),
            extension: "txt".into(),
            bytes: std::sync::Arc::new(b"walked".to_vec()),
            modified: chrono::Utc::now() - chrono::Duration::hours(1),
        });
        app.connect_and_sync(&f.admin, &org).await;
        let case = app
            .post(
                &format!("/customer/{WALKED}/cases"),
                &f.admin.access,
                r#"{"subject":"walked"}"#,
            )
            .await;
        assert_eq!(case.status, StatusCode::CREATED, "{:?}", case.body);
        let case_id = case.body["case_id"].as_str().unwrap_or_default().to_owned();
        let customer = app
            .portal_user(&f.admin, WALKED, &format!("contact{unique}@walk.test"))
            .await;
        return Needs {
            id: if path.starts_with("/cases") {
                case_id.clone()
            } else {
                WALKED.to_owned()
            },
            case_id,
            token: case
                .header("x-consistency-token")
                .unwrap_or_default()
                .to_owned(),
            customer: Some(customer.access),
            ..Needs::default()
        };
    }
    if path.starts_with("/salesforce") || path.starts_with("/customers") {
        // The tenant connected to its own org, with one customer synced by one run.
        let org = FakeSalesforce::start(10).await;
        org.put(Account::new(
            "001WALK0000000AAA",
            "Walked",
            "Karachi",
            chrono::Utc::now() - chrono::Duration::hours(1),
        ));
        let body = json!({"login_url": org.url, "client_id": org.client_id, "client_secret": org.client_secret});
        let c = app
            .put("/salesforce/connection", &f.admin.access, &body.to_string())
            .await;
        assert_eq!(c.status, StatusCode::OK, "{:?}", c.body);
        // The walk's own POST /salesforce/sync may still be running: one at a time.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let sync = loop {
            let sync = app.post("/salesforce/sync", &f.admin.access, "").await;
            if sync.status != StatusCode::CONFLICT || std::time::Instant::now() > deadline {
                break sync;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        assert_eq!(sync.status, StatusCode::ACCEPTED, "{:?}", sync.body);
        let id = sync.body["sync_id"].as_str().unwrap_or_default().to_owned();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let token = loop {
            let s = app
                .get(&format!("/salesforce/sync/{id}"), &f.admin.access, None)
                .await;
            if s.body["status"] == "COMPLETED" {
                break s.header("etag").unwrap_or_default().to_owned();
            }
            assert!(std::time::Instant::now() < deadline, "{:?}", s.body);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        let _ = token;
        let target = if path.starts_with("/customers") {
            WALKED.to_owned()
        } else {
            id
        };
        return Needs {
            product_id: serde_json::to_string(&body).unwrap_or_default(),
            id: target,
            ..Needs::default()
        };
    }
    if path.starts_with("/ai/") {
        // A query of the MEMBER's: the ADMIN sees it too, another tenant does not.
        let q = app
            .post("/ai/query", &f.member.access, r#"{"prompt": "walk"}"#)
            .await;
        assert_eq!(q.status, StatusCode::ACCEPTED, "{:?}", q.body);
        let id = q.body["query_id"].as_str().unwrap_or_default().to_owned();
        let token = q
            .header("x-consistency-token")
            .unwrap_or_default()
            .to_owned();
        return Needs {
            id,
            token,
            ..Needs::default()
        };
    }
    if !(path.starts_with("/products") || path.starts_with("/orders")) {
        return Needs::default();
    }
    let product = app
        .post(
            "/products",
            &f.admin.access,
            &json!({"name": "Walk item", "price": "3.00", "category": "Walk",
                "sku": format!("FIX-{unique}"), "inventory": 10})
            .to_string(),
        )
        .await;
    assert_eq!(product.status, StatusCode::CREATED, "{:?}", product.body);
    let product_id = product.body["product_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let order = app
        .post(
            "/orders",
            &f.member.access,
            &order_body(&product_id).to_string(),
        )
        .await;
    assert_eq!(order.status, StatusCode::CREATED, "{:?}", order.body);
    let order_id = order.body["order_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut token = order
        .header("x-consistency-token")
        .unwrap_or_default()
        .to_owned();
    let steps: &[&str] = match path {
        "/orders/{id}/ship" => &["confirm"],
        "/orders/{id}/deliver" => &["confirm", "ship"],
        _ => &[],
    };
    for step in steps {
        let moved = app
            .post(&format!("/orders/{order_id}/{step}"), &f.admin.access, "")
            .await;
        assert_eq!(moved.status, StatusCode::OK, "{step}: {:?}", moved.body);
        token = moved
            .header("x-consistency-token")
            .unwrap_or_default()
            .to_owned();
    }
    Needs {
        product_id,
        id: order_id,
        token,
        ..Needs::default()
    }
}

#[tokio::test]
async fn every_route_answers_every_caller_as_the_policy_says() {
    let fake = chronicle_tests::fake_openai::FakeOpenAi::start().await;
    let smtp = chronicle_tests::smtp::SmtpServer::start();
    let app = TestApp::start_with_mail(smtp.config(), Some(&fake));
    let other = app
        .register_tenant("Globex", "root@globex.test", "enterprise")
        .await;
    let mut walked = 0;
    let policy = api::app::policy();
    for (n, rule) in policy.rules.iter().enumerate() {
        let f = fixture(&app, n).await;
        for caller in [
            Caller::Anonymous,
            Caller::BadToken,
            Caller::Member,
            Caller::Admin,
            Caller::Owner,
            Caller::Customer,
            Caller::OtherTenantAdmin,
        ] {
            walked += 1;
            // A fresh task per call, assigned to the member, so a DELETE cannot spoil the next.
            let created = app
                .post(
                    "/tasks",
                    &f.admin.access,
                    &json!({"title": "walk", "assigned_to": f.member.user_id}).to_string(),
                )
                .await;
            // Once the walk deleted the fixture's tenant (DELETE /tenants/{id} as ADMIN),
            // nothing more can be created in it; the caller that follows is another tenant's.
            let task_id = created.body["task_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(
                created.status == StatusCode::CREATED || rule.path == "/tenants/{id}",
                "{:?}",
                created.body
            );
            let needs = commerce_fixture(&app, &f, rule.path, &format!("{n}-{walked}")).await;
            let (product_id, order_id, commerce_token) = (needs.product_id, needs.id, needs.token);
            let id = match rule.path {
                p if p.starts_with("/tenants/") => f.admin.tenant_id.clone(),
                p if p.starts_with("/users/") => f.member.user_id.clone(),
                p if p.starts_with("/products/") => product_id.clone(),
                p if p.starts_with("/orders/")
                    || p.starts_with("/integrations/")
                    || p.starts_with("/ai/")
                    || p.starts_with("/messages/")
                    || p.starts_with("/salesforce/")
                    || p.starts_with("/customers/")
                    || p.starts_with("/customer/")
                    || p.starts_with("/cases/")
                    || p.starts_with("/accounts/")
                    || p.starts_with("/transactions/") =>
                {
                    order_id.clone()
                }
                _ => task_id.clone(),
            };
            let mut path = rule
                .path
                .replace("{id}", &id)
                .replace("{recipient}", &id)
                .replace("{case_id}", &needs.case_id)
                .replace("{document_id}", WALKED_DOCUMENT)
                .replace("{stream_id}", &format!("task-{task_id}"));
            if rule.path.ends_with("/state") {
                path.push_str("?version=1");
            }
            if rule.path.ends_with("/statement") {
                path.push_str("?month=2026-12");
            }
            if rule.path == "/analytics/daily" {
                path.push_str("?from=2026-01-01&to=2026-01-31");
            }
            let token = match caller {
                Caller::Anonymous => None,
                Caller::BadToken => Some("not-a-token".to_owned()),
                Caller::Member => Some(f.member.access.clone()),
                Caller::Admin => Some(f.real_admin.access.clone()),
                Caller::Owner => Some(f.admin.access.clone()),
                // A route without a customer of its own: a CUSTOMER token of the walked
                // customer, as the server signs them; its role alone decides.
                Caller::Customer => Some(needs.customer.clone().unwrap_or_else(|| {
                    app.customer_token(&f.admin.tenant_id, &f.member.user_id, WALKED)
                })),
                Caller::OtherTenantAdmin => Some(other.access.clone()),
            };
            let unique = format!("{n}-{walked}");
            let body = match (rule.method.as_str(), rule.path) {
                ("POST", "/tasks") => Some(json!({"title": "by the walk"})),
                ("PUT", "/tasks/{id}") => Some(json!({"status": "DONE"})),
                ("POST", "/tenants") => Some(json!({
                    "company_name": "Signed up by the walk",
                    "admin_email": format!("new{unique}@walk.test"),
                    "admin_password": PASSWORD,
                })),
                ("PUT", "/tenants/{id}") => Some(json!({"settings": {"walked": true}})),
                ("POST", "/users") => Some(json!({
                    "email": format!("user{unique}@walk.test"),
                    "password": PASSWORD,
                })),
                ("PUT", "/users/{id}") => Some(json!({"role": "MEMBER"})),
                ("POST", "/products") => Some(json!({
                    "name": "Walked", "price": "1.50", "category": "Walk",
                    "sku": format!("WALK-{unique}"), "inventory": 5,
                })),
                ("PUT", "/products/{id}") => Some(json!({"price": "2.00"})),
                ("POST", "/products/{id}/inventory") => Some(json!({"delta": 1, "reason": "walk"})),
                ("POST", "/orders") => Some(order_body(&product_id)),
                ("POST", "/ai/query") => Some(json!({"prompt": "asked by the walk"})),
                ("POST", "/llm") => Some(json!({"action": "generate", "prompt": "walked"})),
                ("POST", "/messages") => Some(
                    json!({"recipient": "walk@client.test", "subject": "Walk", "body": "walked"}),
                ),
                ("POST", "/customer/{id}/cases") => Some(json!({"subject": "walked in"})),
                ("POST", "/customers/{id}/accounts") => {
                    Some(json!({"type": "savings", "currency": "PKR"}))
                }
                ("POST", "/transactions") => {
                    Some(json!({"kind": "deposit", "account_id": product_id,
                    "amount": "1", "currency": "PKR", "reference": format!("BY-WALK-{unique}"),
                    "value_date": "2026-12-01"}))
                }
                ("POST", p) if p.starts_with("/accounts/") || p.ends_with("/reverse") => None,
                ("PUT", "/customers/{id}/agent") => Some(json!({"user_id": f.member.user_id})),
                ("PUT", "/cases/{id}") => Some(json!({"status": "WORKING", "comment": "walk"})),
                ("POST", "/customers/{id}/portal-invitations") => {
                    Some(json!({"email": format!("portal{unique}@walk.test")}))
                }
                ("PUT", "/salesforce/connection") => {
                    Some(serde_json::from_str(&product_id).unwrap_or_default())
                }
                ("POST", "/salesforce/sync") => None,
                ("PUT", "/integrations/sftp") => {
                    Some(serde_json::from_str(&product_id).unwrap_or_default())
                }
                ("POST", "/integrations/sftp/run") => None,
                ("PUT", "/orders/{id}") => {
                    Some(json!({"shipping_address": address("2 Walk Lane")}))
                }
                ("POST", p) if p.starts_with("/orders/{id}/") => None,
                ("POST", "/users/invitations") => Some(json!({"role": "MEMBER"})),
                ("POST", "/auth/signup") => {
                    let inv = app
                        .post(
                            "/users/invitations",
                            &f.admin.access,
                            r#"{"role":"MEMBER"}"#,
                        )
                        .await;
                    Some(json!({
                        "tenant_id": f.admin.tenant_id,
                        "invitation_code": inv.body["code"],
                        "email": format!("invited{unique}@walk.test"),
                        "password": PASSWORD,
                    }))
                }
                ("POST", "/auth/signin") => Some(json!({
                    "tenant_id": f.admin.tenant_id,
                    "email": f.member_email,
                    "password": PASSWORD,
                })),
                ("POST", "/auth/refresh" | "/auth/signout") => {
                    let session = sign_in(&app, &f.admin.tenant_id, &f.member_email).await;
                    Some(json!({"refresh_token": session.refresh}))
                }
                (method, path) => {
                    assert!(
                        method == "GET" || method == "DELETE",
                        "the walk has no body for {method} {path}: add one"
                    );
                    None
                }
            };
            let body = body.map(|b| b.to_string());
            // Reads wait for the task to reach the read model.
            let fresh = if commerce_token.is_empty() {
                created.header("x-consistency-token").unwrap_or_default()
            } else {
                commerce_token.as_str()
            };
            let headers: Vec<(&str, &str)> = [("x-consistency-token", fresh)]
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .collect();
            // A stream never ends: its answer's status is what the walk checks.
            let reply = if rule.path == "/events/stream" {
                match app.open_events(&path, token.as_deref(), &[]).await {
                    Ok(_) => chronicle_tests::Reply {
                        status: StatusCode::OK,
                        headers: Default::default(),
                        body: serde_json::Value::Null,
                    },
                    Err(refused) => refused,
                }
            } else {
                app.send(
                    rule.method.clone(),
                    &path,
                    token.as_deref(),
                    &headers,
                    body.as_deref(),
                )
                .await
            };
            let mut allowed = expected(
                rule.access,
                caller,
                rule.path.contains('{'),
                success(&rule.method, rule.path),
            );
            // A link the walk was never given: refused, whoever presents it (the documents
            // test follows real ones).
            if rule.path == "/downloads/{token}" {
                allowed = vec![StatusCode::FORBIDDEN];
            }
            // The ADMIN before deleted the tenant: its OWNER finds it gone.
            if (rule.method.as_str(), rule.path) == ("DELETE", "/tenants/{id}")
                && caller == Caller::Owner
            {
                allowed = vec![StatusCode::FORBIDDEN];
            }
            // Another tenant's account is no account to post to: as unknown as one never made.
            if (rule.method.as_str(), rule.path) == ("POST", "/transactions")
                && caller == Caller::OtherTenantAdmin
            {
                allowed = vec![StatusCode::UNPROCESSABLE_ENTITY];
            }
            // A MEMBER opens accounts only for the clients they are the agent of; the walked
            // one has none (the ledger test assigns one).
            if (rule.method.as_str(), rule.path) == ("POST", "/customers/{id}/accounts")
                && caller == Caller::Member
            {
                allowed = vec![StatusCode::FORBIDDEN];
            }
            // Another tenant's product is no product to order: as unknown as one never made.
            if (rule.method.as_str(), rule.path) == ("POST", "/orders")
                && caller == Caller::OtherTenantAdmin
            {
                allowed = vec![StatusCode::UNPROCESSABLE_ENTITY];
            }
            // Another tenant has no connection of its own (unless the walk's PUT just gave
            // it one): nothing to show, remove or sync.
            if (rule.path.starts_with("/salesforce/") || rule.path.starts_with("/integrations/"))
                && !rule.path.contains("{id}")
                && caller == Caller::OtherTenantAdmin
            {
                allowed.extend([StatusCode::NOT_FOUND, StatusCode::CONFLICT]);
            }
            assert!(
                allowed.contains(&reply.status),
                "{} {} as {caller:?}: got {}, policy says {allowed:?}: {}",
                rule.method,
                rule.path,
                reply.status,
                reply.body
            );
            if reply.status.is_client_error() {
                reply.problem();
            }
        }
    }
    assert_eq!(walked, policy.rules.len() * 7);
    SFTP.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
}
