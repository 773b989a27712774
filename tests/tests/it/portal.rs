//! The customer portal end to end on the embedded backend: portal invitations and CUSTOMER
//! users bound to one customer, their cases, the staff's side of the same cases, the
//! hourly limit on new cases, and the isolation between two customers of one tenant and
//! between tenants.

use axum::http::{Method, StatusCode};
use chronicle_tests::fake_salesforce::{Account, FakeSalesforce};
use chronicle_tests::{PASSWORD, SignedUp, TestApp};
use serde_json::{Value, json};

pub(crate) const ACME: &str = "001PORTAL000000AAA";
pub(crate) const GLOBEX: &str = "001PORTAL000000BBB";

/// A tenant connected to an org with two customers, synced.
pub(crate) async fn tenant_with_customers(app: &TestApp, name: &str) -> (SignedUp, FakeSalesforce) {
    let admin = app
        .register_tenant(name, &format!("root@{name}.test"), "basic")
        .await;
    let org = FakeSalesforce::start(10).await;
    let hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    org.put(Account::new(ACME, "Acme", "Karachi", hour_ago));
    org.put(Account::new(GLOBEX, "Globex", "Lahore", hour_ago));
    app.connect_and_sync(&admin, &org).await;
    (admin, org)
}

async fn open_case(app: &TestApp, who: &SignedUp, customer: &str, subject: &str) -> Value {
    let body = json!({"subject": subject, "description": "It broke", "priority": "high"});
    let reply = app
        .post(
            &format!("/customer/{customer}/cases"),
            &who.access,
            &body.to_string(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let mut view = reply.body.clone();
    view["_token"] = json!(reply.header("x-consistency-token"));
    view
}

#[tokio::test]
async fn a_portal_user_opens_and_follows_their_cases_and_sees_nothing_else() {
    let app = TestApp::start();
    let (admin, _org) = tenant_with_customers(&app, "portal-one").await;

    // Invited for Acme, signed up: a CUSTOMER of Acme, with a token that says so.
    let alice = app.portal_user(&admin, ACME, "alice@acme.test").await;
    // Sign-up answers no consistency token: the users view catches up shortly.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let me = loop {
        let me = app
            .get(&format!("/users/{}", alice.user_id), &admin.access, None)
            .await;
        if me.status != StatusCode::NOT_FOUND || std::time::Instant::now() > deadline {
            break me;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(me.body["role"], "CUSTOMER", "{:?}", me.body);
    assert_eq!(me.body["customer_id"], ACME);
    // Signing in again gives the same binding.
    let again = app
        .post_public(
            "/auth/signin",
            &json!({"tenant_id": admin.tenant_id, "email": "alice@acme.test", "password": PASSWORD})
                .to_string(),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{:?}", again.body);
    assert_eq!(again.body["customer_id"], ACME);

    // Her case: NEW, pending delivery, hers to read.
    let case = open_case(&app, &alice, ACME, "Cannot log in").await;
    assert_eq!(case["status"], "NEW");
    assert_eq!(case["priority"], "high");
    assert_eq!(case["customer_id"], ACME);
    assert_eq!(case["salesforce"]["state"], "pending");
    assert_eq!(case["opened_by"], alice.user_id.as_str());
    let case_id = case["case_id"].as_str().expect("id").to_owned();
    let token = case["_token"].as_str().expect("token").to_owned();
    let mine = app
        .get(
            &format!("/customer/{ACME}/cases/{case_id}"),
            &alice.access,
            Some(&token),
        )
        .await;
    assert_eq!(mine.status, StatusCode::OK, "{:?}", mine.body);
    assert_eq!(mine.body["subject"], "Cannot log in");
    let list = app
        .get(&format!("/customer/{ACME}/cases"), &alice.access, None)
        .await;
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(1));

    // Another customer of the same tenant is not hers: 404, as an unknown id is.
    for path in [
        format!("/customer/{GLOBEX}/cases"),
        format!("/customer/{GLOBEX}/cases/{case_id}"),
        "/customer/001UNKNOWN00000ZZZ/cases".to_owned(),
    ] {
        let r = app.get(&path, &alice.access, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {:?}", r.body);
    }
    let r = app
        .post(
            &format!("/customer/{GLOBEX}/cases"),
            &alice.access,
            r#"{"subject":"not mine"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
    // Globex's own contact does not see Acme's case, even by its id under Globex.
    let bob = app.portal_user(&admin, GLOBEX, "bob@globex.test").await;
    for path in [
        format!("/customer/{ACME}/cases/{case_id}"),
        format!("/customer/{GLOBEX}/cases/{case_id}"),
    ] {
        let r = app.get(&path, &bob.access, Some(&token)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {:?}", r.body);
    }
    let theirs = app
        .get(&format!("/customer/{GLOBEX}/cases"), &bob.access, None)
        .await;
    assert_eq!(theirs.body["items"], json!([]), "{:?}", theirs.body);

    // Every staff route is closed to a CUSTOMER.
    for (method, path) in [
        (Method::GET, "/tasks".to_owned()),
        (Method::GET, "/cases".to_owned()),
        (Method::GET, format!("/cases/{case_id}")),
        (Method::GET, "/customers".to_owned()),
        (Method::GET, format!("/customers/{ACME}")),
        (Method::GET, "/users".to_owned()),
        (
            Method::GET,
            "/analytics/daily?from=2026-01-01&to=2026-01-02".to_owned(),
        ),
        (Method::POST, "/ai/query".to_owned()),
    ] {
        let body = (method == Method::POST).then_some(r#"{"prompt":"hi"}"#);
        let r = app
            .send(method.clone(), &path, Some(&alice.access), &[], body)
            .await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "{method} {path}: {:?}",
            r.body
        );
        r.problem();
    }

    // Staff work the case; its customer sees the change.
    let staff_list = app
        .get(
            &format!("/cases?customer_id={ACME}&status=NEW"),
            &admin.access,
            Some(&token),
        )
        .await;
    assert_eq!(staff_list.status, StatusCode::OK, "{:?}", staff_list.body);
    assert_eq!(staff_list.body["items"][0]["case_id"], case_id.as_str());
    let change = json!({"status": "WORKING", "comment": "Looking into it"}).to_string();
    let stale = app
        .send(
            Method::PUT,
            &format!("/cases/{case_id}"),
            Some(&admin.access),
            &[("if-match", "\"7\"")],
            Some(&change),
        )
        .await;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{:?}",
        stale.body
    );
    // Once delivered to Salesforce (which moves its version), the ETag the staff send.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let current = loop {
        let c = app
            .get(&format!("/cases/{case_id}"), &admin.access, None)
            .await;
        if c.body["salesforce"]["state"] == "delivered" {
            break c;
        }
        assert!(std::time::Instant::now() < deadline, "{:?}", c.body);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let etag = current.header("etag").expect("etag").to_owned();
    let moved = app
        .send(
            Method::PUT,
            &format!("/cases/{case_id}"),
            Some(&admin.access),
            &[("if-match", etag.as_str())],
            Some(&change),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
    assert_eq!(moved.body["status"], "WORKING");
    let seen = app
        .get(
            &format!("/customer/{ACME}/cases/{case_id}"),
            &alice.access,
            moved.header("x-consistency-token"),
        )
        .await;
    assert_eq!(seen.body["status"], "WORKING", "{:?}", seen.body);
    assert_eq!(seen.body["comments"][0]["body"], "Looking into it");
    assert_eq!(seen.body["comments"][0]["source"], "chronicle");
    // A CUSTOMER cannot change a case.
    let r = app
        .put(&format!("/cases/{case_id}"), &alice.access, &change)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Another tenant's staff know nothing of this tenant's customers or cases.
    let (other, _org2) = tenant_with_customers(&app, "portal-two").await;
    let r = app
        .get(&format!("/cases/{case_id}"), &other.access, None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .get(&format!("/customer/{ACME}/cases"), &other.access, None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "its own Acme: {:?}", r.body);
    assert_eq!(r.body["items"], json!([]));
    // A token of this tenant's CUSTOMER opens nothing of the other tenant: its tenant is
    // the token's.
    let r = app
        .get(&format!("/cases?customer_id={ACME}"), &other.access, None)
        .await;
    assert_eq!(r.body["items"], json!([]));
}

#[tokio::test]
async fn portal_invitations_and_roles_hold_their_bounds() {
    let app = TestApp::start();
    let (admin, _org) = tenant_with_customers(&app, "portal-bounds").await;
    // No customer of this tenant: nothing to invite to.
    let r = app
        .post(
            "/customers/001NOSUCH000000ZZZ/portal-invitations",
            &admin.access,
            r#"{"email":"x@y.test"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
    // The staff's invitation and user routes make no CUSTOMER.
    for (path, body) in [
        ("/users/invitations", json!({"role": "CUSTOMER"})),
        (
            "/users",
            json!({"email": "c@y.test", "password": PASSWORD, "role": "CUSTOMER"}),
        ),
    ] {
        let r = app.post(path, &admin.access, &body.to_string()).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path}: {:?}",
            r.body
        );
    }
    // The code is bound to the invited address.
    let invite = app
        .post(
            &format!("/customers/{ACME}/portal-invitations"),
            &admin.access,
            r#"{"email":"carol@acme.test"}"#,
        )
        .await;
    assert_eq!(invite.status, StatusCode::CREATED, "{:?}", invite.body);
    assert_eq!(invite.body["role"], "CUSTOMER");
    assert_eq!(invite.body["customer_id"], ACME);
    let wrong = json!({"tenant_id": admin.tenant_id, "invitation_code": invite.body["code"],
        "email": "mallory@acme.test", "password": PASSWORD});
    let r = app.post_public("/auth/signup", &wrong.to_string()).await;
    assert!(r.status.is_client_error(), "{:?}", r.body);
    let carol = app.portal_user(&admin, ACME, "carol2@acme.test").await;
    // A portal user takes no seat of the tenant's staff.
    let tenant = app
        .get(
            &format!("/tenants/{}", admin.tenant_id),
            &admin.access,
            None,
        )
        .await;
    assert_eq!(tenant.body["usage"]["users"], 1, "{:?}", tenant.body);
    // Never promoted; disabled, they sign in no more.
    let r = app
        .put(
            &format!("/users/{}", carol.user_id),
            &admin.access,
            r#"{"role":"ADMIN"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    let r = app
        .put(
            &format!("/users/{}", carol.user_id),
            &admin.access,
            r#"{"disabled":true}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = app
        .post_public(
            "/auth/signin",
            &json!({"tenant_id": admin.tenant_id, "email": "carol2@acme.test", "password": PASSWORD})
                .to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn new_cases_are_checked_and_limited_per_customer_and_hour() {
    let app = TestApp::start();
    let (admin, _org) = tenant_with_customers(&app, "portal-limits").await;
    let dave = app.portal_user(&admin, ACME, "dave@acme.test").await;
    let path = format!("/customer/{ACME}/cases");
    for (body, field) in [
        (json!({"subject": ""}), "subject"),
        (json!({"subject": "   "}), "subject"),
        (json!({"subject": "x".repeat(256)}), "subject"),
        (json!({"subject": "ok", "priority": "urgent"}), "priority"),
        (
            json!({"subject": "ok", "description": "d".repeat(32 * 1024 + 1)}),
            "description",
        ),
        (json!({"subject": "ok", "status": "CLOSED"}), "status"),
    ] {
        let r = app.post(&path, &dave.access, &body.to_string()).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field}: {:?}",
            r.body
        );
        r.problem();
        let detail = r.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(field), "{field}: {detail}");
    }
    // The basic tier: ten an hour for each customer.
    let big = json!({"subject": "Full", "description": "d".repeat(32 * 1024)});
    let r = app.post(&path, &dave.access, &big.to_string()).await;
    assert_eq!(r.status, StatusCode::CREATED, "32 KiB fits: {:?}", r.body);
    for i in 1..10 {
        open_case(&app, &dave, ACME, &format!("case {i}")).await;
    }
    let refused = app
        .post(&path, &dave.access, r#"{"subject":"the eleventh"}"#)
        .await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        refused.body
    );
    let retry: u64 = refused
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((3000..=3600).contains(&retry), "{retry}");
    assert_eq!(refused.body["limit"], "cases_per_customer_per_hour");
    // Refused, it wrote nothing; staff opening for the same customer count the same hour.
    let r = app
        .post(&path, &admin.access, r#"{"subject":"staff"}"#)
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let all = app
        .get(
            &format!("{path}?limit=100"),
            &dave.access,
            Some(&open_case_token(&app, &admin).await),
        )
        .await;
    assert_eq!(
        all.body["items"].as_array().map(Vec::len),
        Some(10),
        "{:?}",
        all.body
    );
    // Another customer's hour is its own.
    let r = app
        .post(
            &format!("/customer/{GLOBEX}/cases"),
            &admin.access,
            r#"{"subject":"for Globex"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
}

/// A token past every write so far: a case opened for the other customer.
async fn open_case_token(app: &TestApp, admin: &SignedUp) -> String {
    let c = open_case(app, admin, GLOBEX, "marker").await;
    c["_token"].as_str().expect("token").to_owned()
}
