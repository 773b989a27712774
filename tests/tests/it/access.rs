//! Tenants, users and sign-in over HTTP (issue 4, seed 003): sign-up, tier limits, unique
//! emails, argon2 sign-in with uniform failures, refresh-token rotation with family
//! revocation, invitations, soft delete, and tenant isolation.

use axum::http::{Method, StatusCode};
use chronicle_tests::{PASSWORD, SignedUp, TestApp};
use commands::EventStore;
use domain::TenantId;
use serde_json::{Value, json};

async fn add_user(app: &TestApp, admin: &str, email: &str, role: &str) -> chronicle_tests::Reply {
    let body = json!({"email": email, "password": PASSWORD, "role": role});
    app.post("/users", admin, &body.to_string()).await
}

async fn sign_in(
    app: &TestApp,
    tenant: &str,
    email: &str,
    password: &str,
) -> chronicle_tests::Reply {
    let body = json!({"tenant_id": tenant, "email": email, "password": password});
    app.post_public("/auth/signin", &body.to_string()).await
}

async fn refresh(app: &TestApp, token: &str) -> chronicle_tests::Reply {
    app.post_public(
        "/auth/refresh",
        &json!({"refresh_token": token}).to_string(),
    )
    .await
}

#[tokio::test]
async fn sign_up_gives_a_working_admin_and_the_tenant_shows_its_plan() {
    let app = TestApp::start();
    let acme = app
        .register_tenant("Acme Ltd", "Root@Acme.test", "premium")
        .await;
    // The access token works at once.
    let task = app
        .post("/tasks", &acme.access, r#"{"title":"first"}"#)
        .await;
    assert_eq!(task.status, StatusCode::CREATED);
    assert_eq!(task.body["tenant_id"], acme.tenant_id.as_str());
    assert_eq!(task.body["created_by"], acme.user_id.as_str());

    let t = app
        .get(&format!("/tenants/{}", acme.tenant_id), &acme.access, None)
        .await;
    assert_eq!(t.status, StatusCode::OK, "{:?}", t.body);
    assert_eq!(t.body["company_name"], "Acme Ltd");
    assert_eq!(t.body["admin_email"], "root@acme.test");
    assert_eq!(t.body["tier"], "premium");
    assert_eq!(t.body["status"], "active");
    assert_eq!(t.body["limits"]["max_users"], 50);
    assert_eq!(t.body["features"]["advanced_analytics"], true);
    assert_eq!(t.body["usage"]["users"], 1);

    let users = app.get("/users", &acme.access, Some(&task.token())).await;
    assert_eq!(users.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        users.body["items"][0]["role"], "OWNER",
        "the first user owns the tenant"
    );
    assert_eq!(users.body["items"][0]["email"], "root@acme.test");
    assert!(
        !users.body.to_string().contains("password"),
        "{}",
        users.body
    );
}

#[tokio::test]
async fn sign_up_input_is_validated_field_by_field() {
    let app = TestApp::start();
    for (body, field) in [
        (
            json!({"company_name": "", "admin_email": "a@b.test", "admin_password": PASSWORD}),
            "company_name",
        ),
        (
            json!({"company_name": "A", "admin_email": "not-an-email", "admin_password": PASSWORD}),
            "admin_email",
        ),
        (
            json!({"company_name": "A", "admin_email": "a@b.test", "admin_password": "short"}),
            "admin_password",
        ),
        (
            json!({"company_name": "A", "admin_email": "a@b.test", "admin_password": PASSWORD, "tier": "gold"}),
            "tier",
        ),
    ] {
        let r = app.post_public("/tenants", &body.to_string()).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(r.problem(), "urn:chronicle:problem:validation-failed");
        assert_eq!(r.body["field"], field, "{:?}", r.body);
        assert!(
            !r.body.to_string().contains("short"),
            "the password is never echoed"
        );
    }
    let r = app.post_public("/tenants", r#"{"company_name": "A""#).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn emails_are_unique_per_tenant_whatever_their_case() {
    let app = TestApp::start();
    let acme = app.register_tenant("Acme", "root@acme.test", "basic").await;
    let globex = app
        .register_tenant("Globex", "root@globex.test", "basic")
        .await;
    let first = add_user(&app, &acme.access, "ann@acme.test", "MEMBER").await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    assert_eq!(first.body["email"], "ann@acme.test");
    assert_eq!(first.body["role"], "MEMBER");
    let again = add_user(&app, &acme.access, "ANN@acme.test", "ADMIN").await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{:?}", again.body);
    assert_eq!(again.problem(), "urn:chronicle:problem:conflict");
    // A retry under the same Idempotency-Key answers the first result and writes nothing.
    let body = json!({"email": "bob@acme.test", "password": PASSWORD}).to_string();
    let key = [("idempotency-key", "add-bob")];
    let bob = app
        .send(
            Method::POST,
            "/users",
            Some(&acme.access),
            &key,
            Some(&body),
        )
        .await;
    assert_eq!(bob.status, StatusCode::CREATED, "{:?}", bob.body);
    let retry = app
        .send(
            Method::POST,
            "/users",
            Some(&acme.access),
            &key,
            Some(&body),
        )
        .await;
    assert_eq!(retry.status, StatusCode::CREATED, "{:?}", retry.body);
    assert_eq!(retry.body["user_id"], bob.body["user_id"]);
    let other = json!({"email": "carol@acme.test", "password": PASSWORD}).to_string();
    let reused = app
        .send(
            Method::POST,
            "/users",
            Some(&acme.access),
            &key,
            Some(&other),
        )
        .await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        reused.problem(),
        "urn:chronicle:problem:idempotency-key-reused"
    );
    // The admin's own address is reserved too.
    let admin = add_user(&app, &acme.access, "root@acme.test", "MEMBER").await;
    assert_eq!(admin.status, StatusCode::CONFLICT);
    // Another tenant may use the same address.
    let other = add_user(&app, &globex.access, "ann@acme.test", "MEMBER").await;
    assert_eq!(other.status, StatusCode::CREATED);
    // The refused attempts wrote nothing: one seat each besides the admin.
    let t = app
        .get(&format!("/tenants/{}", acme.tenant_id), &acme.access, None)
        .await;
    assert_eq!(t.body["usage"]["users"], 3, "admin, ann, bob");
}

#[tokio::test]
async fn the_tier_limit_on_users_is_a_403_naming_it_and_holds_under_a_race() {
    let app = TestApp::start();
    let acme = app.register_tenant("Acme", "root@acme.test", "basic").await;
    // basic: max_users 10; the admin holds one seat. Fill eight more.
    for i in 0..8 {
        let r = add_user(&app, &acme.access, &format!("u{i}@acme.test"), "MEMBER").await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
    // Six admins race for the last seat: exactly one wins.
    let racers = (0..6).map(|i| {
        let app = &app;
        let token = acme.access.clone();
        async move { add_user(app, &token, &format!("racer{i}@acme.test"), "MEMBER").await }
    });
    let replies = futures::future::join_all(racers).await;
    let won = replies
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .count();
    assert_eq!(won, 1, "{replies:?}");
    for r in replies.iter().filter(|r| r.status != StatusCode::CREATED) {
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
        assert_eq!(r.problem(), "urn:chronicle:problem:limit-reached");
        assert_eq!(r.body["limit"], "max_users");
        assert_eq!(r.body["value"], 10);
        assert!(
            r.body["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("max_users")
        );
    }
    let t = app
        .get(&format!("/tenants/{}", acme.tenant_id), &acme.access, None)
        .await;
    assert_eq!(t.body["usage"]["users"], 10);
    // A downgrade is checked against the same limit; disabling a user frees a seat.
    let list = app
        .get("/users?role=MEMBER&limit=1", &acme.access, None)
        .await;
    let member = list.body["items"][0]["user_id"]
        .as_str()
        .expect("a member")
        .to_owned();
    let off = app
        .put(
            &format!("/users/{member}"),
            &acme.access,
            r#"{"disabled":true}"#,
        )
        .await;
    assert_eq!(off.status, StatusCode::OK, "{:?}", off.body);
    assert_eq!(off.body["disabled"], true);
    let r = add_user(&app, &acme.access, "late@acme.test", "MEMBER").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let back = app
        .put(
            &format!("/users/{member}"),
            &acme.access,
            r#"{"disabled":false}"#,
        )
        .await;
    assert_eq!(
        back.status,
        StatusCode::FORBIDDEN,
        "no seat to come back to: {:?}",
        back.body
    );
    assert_eq!(back.body["limit"], "max_users");
}

#[tokio::test]
async fn sign_in_fails_alike_for_a_wrong_password_and_an_unknown_email() {
    let app = TestApp::start();
    let acme = app.register_tenant("Acme", "root@acme.test", "basic").await;
    let ok = sign_in(&app, &acme.tenant_id, "ROOT@acme.test", PASSWORD).await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    let me = SignedUp::from_reply(&ok);
    assert_eq!(me.user_id, acme.user_id);
    assert_eq!(ok.body["role"], "OWNER");
    assert_eq!(ok.body["expires_in"], 900);
    assert_eq!(ok.header("cache-control"), Some("no-store"));
    let listed = app.get("/tasks", &me.access, None).await;
    assert_eq!(listed.status, StatusCode::OK);

    let wrong = sign_in(&app, &acme.tenant_id, "root@acme.test", "wrong password").await;
    let unknown = sign_in(&app, &acme.tenant_id, "nobody@acme.test", PASSWORD).await;
    let other_tenant = sign_in(&app, "no-such-tenant", "root@acme.test", PASSWORD).await;
    for r in [&wrong, &unknown, &other_tenant] {
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
        assert_eq!(
            r.body, wrong.body,
            "one answer for every credential failure"
        );
    }
    // A disabled user cannot sign in either, with the same answer.
    let ann = add_user(&app, &acme.access, "ann@acme.test", "MEMBER").await;
    let ann_id = ann.body["user_id"].as_str().expect("id");
    app.put(
        &format!("/users/{ann_id}"),
        &acme.access,
        r#"{"disabled":true}"#,
    )
    .await;
    let disabled = sign_in(&app, &acme.tenant_id, "ann@acme.test", PASSWORD).await;
    assert_eq!(disabled.status, StatusCode::UNAUTHORIZED);
    assert_eq!(disabled.body, wrong.body);
}

#[tokio::test]
async fn a_refresh_token_rotates_and_its_reuse_revokes_the_family() {
    let app = TestApp::start();
    let acme = app.register_tenant("Acme", "root@acme.test", "basic").await;
    let first = refresh(&app, &acme.refresh).await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    let second = SignedUp::from_reply(&first);
    assert_ne!(second.refresh, acme.refresh);
    assert_eq!(
        app.get("/tasks", &second.access, None).await.status,
        StatusCode::OK
    );
    // The retired token comes back (stolen copy): refused, and the family is revoked.
    let replay = refresh(&app, &acme.refresh).await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    let current = refresh(&app, &second.refresh).await;
    assert_eq!(
        current.status,
        StatusCode::UNAUTHORIZED,
        "the whole family is revoked"
    );
    // Other sessions of the user are untouched.
    let other = sign_in(&app, &acme.tenant_id, "root@acme.test", PASSWORD).await;
    let other = SignedUp::from_reply(&other);
    assert_eq!(refresh(&app, &other.refresh).await.status, StatusCode::OK);
    // Garbage is refused without a server error.
    assert_eq!(
        refresh(&app, "").await.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "an empty token is malformed"
    );
    for junk in [
        "x",
        "not.a.token",
        "0192f0c0-0000-7000-8000-000000000000.abc.acme",
    ] {
        assert_eq!(
            refresh(&app, junk).await.status,
            StatusCode::UNAUTHORIZED,
            "{junk:?}"
        );
    }
}

#[tokio::test]
async fn sign_out_revokes_the_refresh_token() {
    let app = TestApp::start();
    let acme = app.register_tenant("Acme", "root@acme.test", "basic").await;
    let out = app
        .post_public(
            "/auth/signout",
            &json!({"refresh_token": acme.refresh}).to_string(),
        )
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert_eq!(
        refresh(&app, &acme.refresh).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Unknown tokens get the same answer.
    let unknown = app
        .post_public("/auth/signout", r#"{"refresh_token":"whatever"}"#)
        .await;
    assert_eq!(unknown.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn an_invitation_signs_up_one_user_once() {
    let app = TestApp::start();
    let acme = app.register_tenant("Acme", "root@acme.test", "basic").await;
    let member = app
        .post(
            "/users",
            &acme.access,
            &json!({"email":"m@acme.test","password":PASSWORD}).to_string(),
        )
        .await;
    assert_eq!(member.status, StatusCode::CREATED);
    let m = SignedUp::from_reply(&sign_in(&app, &acme.tenant_id, "m@acme.test", PASSWORD).await);
    let refused = app
        .post("/users/invitations", &m.access, r#"{"role":"MEMBER"}"#)
        .await;
    assert_eq!(
        refused.status,
        StatusCode::FORBIDDEN,
        "only an ADMIN invites"
    );

    let inv = app
        .post(
            "/users/invitations",
            &acme.access,
            r#"{"role":"MEMBER","email":"new@acme.test"}"#,
        )
        .await;
    assert_eq!(inv.status, StatusCode::CREATED, "{:?}", inv.body);
    let code = inv.body["code"].as_str().expect("code").to_owned();
    let signup = |email: &str, code: &str| {
        json!({"tenant_id": acme.tenant_id, "invitation_code": code, "email": email, "password": PASSWORD})
            .to_string()
    };
    let wrong_email = app
        .post_public("/auth/signup", &signup("else@acme.test", &code))
        .await;
    assert_eq!(
        wrong_email.status,
        StatusCode::FORBIDDEN,
        "{:?}",
        wrong_email.body
    );
    assert_eq!(wrong_email.body["type"], "urn:chronicle:problem:forbidden");
    let ok = app
        .post_public("/auth/signup", &signup("new@acme.test", &code))
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{:?}", ok.body);
    assert_eq!(ok.body["role"], "MEMBER");
    let new = SignedUp::from_reply(&ok);
    assert_eq!(
        app.get("/tasks", &new.access, None).await.status,
        StatusCode::OK
    );
    let twice = app
        .post_public("/auth/signup", &signup("new2@acme.test", &code))
        .await;
    assert_eq!(twice.status, StatusCode::FORBIDDEN, "single use");
    let forged = app
        .post_public(
            "/auth/signup",
            &signup("new@acme.test", &format!("{}x", &code)),
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let t = app
        .get(&format!("/tenants/{}", acme.tenant_id), &acme.access, None)
        .await;
    assert_eq!(t.body["usage"]["users"], 3);
}

#[tokio::test]
async fn admins_manage_users_and_cannot_lock_themselves_out() {
    let app = TestApp::start();
    let acme = app.register_tenant("Acme", "root@acme.test", "basic").await;
    let ann = add_user(&app, &acme.access, "ann@acme.test", "MEMBER").await;
    let ann_id = ann.body["user_id"].as_str().expect("id").to_owned();
    let promoted = app
        .put(
            &format!("/users/{ann_id}"),
            &acme.access,
            r#"{"role":"ADMIN"}"#,
        )
        .await;
    assert_eq!(promoted.status, StatusCode::OK, "{:?}", promoted.body);
    assert_eq!(promoted.body["role"], "ADMIN");
    let seen = app
        .get(
            &format!("/users/{ann_id}"),
            &acme.access,
            Some(&promoted.token()),
        )
        .await;
    assert_eq!(seen.body["role"], "ADMIN");
    let bad = app
        .put(
            &format!("/users/{ann_id}"),
            &acme.access,
            r#"{"role":"ROOT"}"#,
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.body["field"], "role");
    let me = app
        .put(
            &format!("/users/{}", acme.user_id),
            &acme.access,
            r#"{"disabled":true}"#,
        )
        .await;
    assert_eq!(me.status, StatusCode::CONFLICT, "{:?}", me.body);
    let missing = app
        .put(
            "/users/0192f0c0-0000-7000-8000-000000000000",
            &acme.access,
            r#"{"role":"ADMIN"}"#,
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn another_tenants_tenant_and_users_do_not_exist() {
    let app = TestApp::start();
    let acme = app.register_tenant("Acme", "root@acme.test", "basic").await;
    let globex = app
        .register_tenant("Globex", "root@globex.test", "basic")
        .await;
    let ann = add_user(&app, &acme.access, "ann@acme.test", "MEMBER").await;
    let ann_id = ann.body["user_id"].as_str().expect("id").to_owned();
    let fresh = ann.token();
    for (method, path, body) in [
        (Method::GET, format!("/tenants/{}", acme.tenant_id), None),
        (
            Method::PUT,
            format!("/tenants/{}", acme.tenant_id),
            Some(r#"{"tier":"basic"}"#),
        ),
        (Method::DELETE, format!("/tenants/{}", acme.tenant_id), None),
        (Method::GET, format!("/users/{ann_id}"), None),
        (
            Method::PUT,
            format!("/users/{ann_id}"),
            Some(r#"{"disabled":true}"#),
        ),
    ] {
        let r = app
            .send(
                method.clone(),
                &path,
                Some(&globex.access),
                &[("x-consistency-token", &fresh)],
                body,
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {:?}",
            r.body
        );
    }
    let list = app.get("/users", &globex.access, Some(&fresh)).await;
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(1));
    let still = app
        .get(&format!("/users/{ann_id}"), &acme.access, Some(&fresh))
        .await;
    assert_eq!(still.body["disabled"], false);
}

#[tokio::test]
async fn a_tier_change_is_the_tenants_not_the_tokens() {
    let app = TestApp::start();
    let acme = app.register_tenant("Acme", "root@acme.test", "basic").await;
    let up = app
        .put(
            &format!("/tenants/{}", acme.tenant_id),
            &acme.access,
            r#"{"tier":"enterprise","company_name":"Acme Corp","settings":{"theme":"dark"}}"#,
        )
        .await;
    assert_eq!(up.status, StatusCode::OK, "{:?}", up.body);
    assert_eq!(up.body["tier"], "enterprise");
    assert_eq!(up.body["company_name"], "Acme Corp");
    assert_eq!(up.body["settings"]["theme"], "dark");
    assert_eq!(up.body["limits"]["max_users"], 1000);
    let stale = app
        .send(
            Method::PUT,
            &format!("/tenants/{}", acme.tenant_id),
            Some(&acme.access),
            &[("if-match", "\"1\"")],
            Some(r#"{"tier":"premium"}"#),
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    let bad = app
        .put(
            &format!("/tenants/{}", acme.tenant_id),
            &acme.access,
            r#"{"settings":[1,2]}"#,
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.body["field"], "settings");
    // Branding is a feature of the premium tiers: a downgrade that would keep it is refused.
    let brand = app
        .put(
            &format!("/tenants/{}", acme.tenant_id),
            &acme.access,
            r#"{"settings":{"branding":{"logo":"https://acme.test/logo.svg"}}}"#,
        )
        .await;
    assert_eq!(brand.status, StatusCode::OK, "{:?}", brand.body);
    let down = app
        .put(
            &format!("/tenants/{}", acme.tenant_id),
            &acme.access,
            r#"{"tier":"basic"}"#,
        )
        .await;
    assert_eq!(down.status, StatusCode::FORBIDDEN, "{:?}", down.body);
    assert_eq!(down.problem(), "urn:chronicle:problem:feature-unavailable");
    assert_eq!(down.body["feature"], "custom_branding");
    // A MEMBER may read the tenant but not change it.
    add_user(&app, &acme.access, "m@acme.test", "MEMBER").await;
    let m = SignedUp::from_reply(&sign_in(&app, &acme.tenant_id, "m@acme.test", PASSWORD).await);
    assert_eq!(
        app.get(&format!("/tenants/{}", acme.tenant_id), &m.access, None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.put(
            &format!("/tenants/{}", acme.tenant_id),
            &m.access,
            r#"{"tier":"basic"}"#
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn a_deleted_tenant_is_refused_everywhere_and_keeps_its_events() {
    let app = TestApp::start();
    let acme = app.register_tenant("Acme", "root@acme.test", "basic").await;
    let task = app
        .post("/tasks", &acme.access, r#"{"title":"kept"}"#)
        .await;
    assert_eq!(task.status, StatusCode::CREATED);
    let gone = app
        .delete(&format!("/tenants/{}", acme.tenant_id), &acme.access)
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{:?}", gone.body);
    for (method, path) in [
        (Method::GET, "/tasks".to_owned()),
        (Method::POST, "/tasks".to_owned()),
        (Method::GET, format!("/tenants/{}", acme.tenant_id)),
        (Method::GET, "/users".to_owned()),
    ] {
        let body = (method == Method::POST).then_some(r#"{"title":"x"}"#);
        let r = app
            .send(method.clone(), &path, Some(&acme.access), &[], body)
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(r.problem(), "urn:chronicle:problem:tenant-deleted");
        assert!(
            r.body["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("deleted")
        );
    }
    let again = sign_in(&app, &acme.tenant_id, "root@acme.test", PASSWORD).await;
    assert_eq!(again.status, StatusCode::FORBIDDEN);
    assert_eq!(
        refresh(&app, &acme.refresh).await.status,
        StatusCode::FORBIDDEN
    );
    // Soft delete: every event is still in the store, the chain intact.
    let tenant = TenantId::parse(acme.tenant_id.as_str()).expect("tenant");
    let page = app
        .embedded
        .events
        .read_tenant_feed(&tenant, &commands::FeedCursor::start(), 1000)
        .await
        .expect("feed");
    let types: Vec<&str> = page.events.iter().map(|e| e.event_type.as_str()).collect();
    for t in [
        "TenantRegistered",
        "UserRegistered",
        "EmailReserved",
        "TaskCreated",
        "TenantDeleted",
    ] {
        assert!(types.contains(&t), "{t} in {types:?}");
    }
}

#[tokio::test]
async fn passwords_appear_in_no_event_in_clear() {
    let app = TestApp::start();
    let acme = app.register_tenant("Acme", "root@acme.test", "basic").await;
    add_user(&app, &acme.access, "ann@acme.test", "MEMBER").await;
    sign_in(&app, &acme.tenant_id, "ann@acme.test", PASSWORD).await;
    let tenant = TenantId::parse(acme.tenant_id.as_str()).expect("tenant");
    let page = app
        .embedded
        .events
        .read_tenant_feed(&tenant, &commands::FeedCursor::start(), 1000)
        .await
        .expect("feed");
    let mut hashes = 0;
    for e in &page.events {
        let text = e.payload.to_string();
        assert!(
            !text.contains(PASSWORD),
            "{} holds the password",
            e.event_type
        );
        assert!(
            !text.contains(&acme.refresh),
            "{} holds a refresh token",
            e.event_type
        );
        if let Some(Value::String(h)) = e.payload.get("password_hash") {
            assert!(h.starts_with("$argon2id$"), "{h}");
            assert!(
                domain::user::is_private(&e.stream_id),
                "a hash outside a private stream: {}",
                e.stream_id
            );
            hashes += 1;
        }
    }
    assert_eq!(hashes, 2);
}

#[tokio::test]
async fn password_guessing_on_one_account_is_throttled_and_others_go_on() {
    let app = TestApp::start();
    let acme = app.register_tenant("Acme", "root@acme.test", "basic").await;
    add_user(&app, &acme.access, "ann@acme.test", "MEMBER").await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(
            sign_in(&app, &acme.tenant_id, "root@acme.test", "guess")
                .await
                .status,
        );
    }
    assert!(
        statuses[..10]
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    let throttled = sign_in(&app, &acme.tenant_id, "root@acme.test", PASSWORD).await;
    assert_eq!(
        throttled.status,
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits"
    );
    assert_eq!(
        throttled.problem(),
        "urn:chronicle:problem:too-many-attempts"
    );
    assert!(throttled.header("retry-after").is_some());
    // Another account of the tenant signs in as usual.
    let ann = sign_in(&app, &acme.tenant_id, "ann@acme.test", PASSWORD).await;
    assert_eq!(ann.status, StatusCode::OK);
}

#[tokio::test]
async fn every_event_carries_the_requests_actor_and_ids() {
    let app = TestApp::start();
    let body = json!({"company_name": "Acme", "admin_email": "root@acme.test",
        "admin_password": PASSWORD, "tier": "basic"})
    .to_string();
    let signup_request = uuid::Uuid::now_v7().to_string();
    let reply = app
        .send(
            Method::POST,
            "/tenants",
            None,
            &[("x-request-id", signup_request.as_str())],
            Some(&body),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let acme = SignedUp::from_reply(&reply);
    let task_request = uuid::Uuid::now_v7().to_string();
    let created = app
        .send(
            Method::POST,
            "/tasks",
            Some(&acme.access),
            &[("x-request-id", task_request.as_str())],
            Some(r#"{"title":"traced"}"#),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let tenant = TenantId::parse(acme.tenant_id.as_str()).expect("tenant");
    let page = app
        .embedded
        .events
        .read_tenant_feed(&tenant, &commands::FeedCursor::start(), 1000)
        .await
        .expect("feed");
    let of = |request: &str| -> Vec<&domain::EventEnvelope> {
        page.events
            .iter()
            .filter(|e| e.correlation_id.to_string() == request)
            .collect()
    };
    // Sign-up is one command over five streams: one command id, the request's correlation.
    let signup = of(&signup_request);
    assert!(signup.len() >= 5, "{} sign-up events", signup.len());
    assert!(signup.iter().all(|e| e.command_id == signup[0].command_id));
    assert!(signup.iter().all(|e| e.actor == acme.user_id));
    let task = of(&task_request);
    assert_eq!(task.len(), 1);
    assert_eq!(task[0].event_type, "TaskCreated");
    assert_eq!(task[0].actor, acme.user_id);
    assert_ne!(task[0].command_id, signup[0].command_id);
}

#[tokio::test]
async fn only_an_owner_manages_admins_and_the_last_owner_stays() {
    let app = TestApp::start();
    let acme = app
        .register_tenant("Acme", "root@acme.test", "premium")
        .await;
    let id = |r: chronicle_tests::Reply| r.body["user_id"].as_str().expect("user_id").to_owned();
    let admin_id = id(add_user(&app, &acme.access, "ada@acme.test", "ADMIN").await);
    let member_id = id(add_user(&app, &acme.access, "max@acme.test", "MEMBER").await);
    let signed = sign_in(&app, &acme.tenant_id, "ada@acme.test", PASSWORD).await;
    assert_eq!(signed.body["role"], "ADMIN", "{:?}", signed.body);
    let ada = SignedUp::from_reply(&signed);

    // An ADMIN manages MEMBERs, and everything else of the tenant...
    let r = app
        .put(
            &format!("/users/{member_id}"),
            &ada.access,
            r#"{"disabled":true}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let body = json!({"email": "mo@acme.test", "password": PASSWORD, "role": "MEMBER"});
    let r = app.post("/users", &ada.access, &body.to_string()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    // ...but never an ADMIN or an OWNER: none made, promoted, demoted or disabled.
    let refused = [
        (
            "POST",
            "/users".to_owned(),
            json!({"email": "eve@acme.test", "password": PASSWORD, "role": "ADMIN"}),
        ),
        (
            "POST",
            "/users/invitations".to_owned(),
            json!({"role": "ADMIN"}),
        ),
        (
            "PUT",
            format!("/users/{member_id}"),
            json!({"role": "ADMIN"}),
        ),
        (
            "PUT",
            format!("/users/{}", acme.user_id),
            json!({"disabled": true}),
        ),
        (
            "PUT",
            format!("/users/{}", acme.user_id),
            json!({"role": "MEMBER"}),
        ),
    ];
    for (method, path, body) in refused {
        let r = app
            .send(
                method.parse().expect("method"),
                &path,
                Some(&ada.access),
                &[],
                Some(&body.to_string()),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "{method} {path} {body}: {:?}",
            r.body
        );
        assert!(r.problem().ends_with("forbidden"));
    }
    // The OWNER may; and the tenant keeps an active OWNER whatever happens.
    let r = app
        .put(
            &format!("/users/{}", acme.user_id),
            &acme.access,
            r#"{"role":"ADMIN"}"#,
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CONFLICT,
        "the only OWNER demoting themselves: {:?}",
        r.body
    );
    let r = app
        .put(
            &format!("/users/{admin_id}"),
            &acme.access,
            r#"{"role":"OWNER"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["role"], "OWNER");
    let signed = sign_in(&app, &acme.tenant_id, "ada@acme.test", PASSWORD).await;
    let ada = SignedUp::from_reply(&signed);
    assert_eq!(signed.body["role"], "OWNER");
    // Two OWNERs: one may now step down, the other then not.
    let r = app
        .put(
            &format!("/users/{}", acme.user_id),
            &ada.access,
            r#"{"role":"ADMIN"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = app
        .put(
            &format!("/users/{}", acme.user_id),
            &ada.access,
            r#"{"disabled":true}"#,
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "an ADMIN disabled by an OWNER: {:?}",
        r.body
    );
    let root = sign_in(&app, &acme.tenant_id, "root@acme.test", PASSWORD).await;
    assert_eq!(root.status, StatusCode::UNAUTHORIZED);
    let r = app
        .put(
            &format!("/users/{}", acme.user_id),
            &ada.access,
            r#"{"disabled":false,"role":"OWNER"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = app
        .put(
            &format!("/users/{admin_id}"),
            &acme.access,
            r#"{"disabled":true}"#,
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "root, an OWNER again, disables ada: {:?}",
        r.body
    );
    let r = app
        .put(
            &format!("/users/{}", acme.user_id),
            &acme.access,
            r#"{"role":"MEMBER"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
}

/// A tenant as sign-up wrote it before the OWNER role: its first user an ADMIN, no owner.
struct LegacySignUp {
    tenant: domain::TenantId,
    user: domain::UserId,
    email: domain::user::Email,
    hash: String,
}

impl commands::Command for LegacySignUp {
    type Output = ();
    type Error = std::convert::Infallible;
    const NAME: &'static str = "tenant";

    async fn decide(
        &self,
        tx: &mut commands::Tx<'_>,
    ) -> Result<(), commands::CommandError<std::convert::Infallible>> {
        use domain::Aggregate;
        use domain::tenant::{CompanyName, Tenant, TenantCommand};
        use domain::user::{Credential, EmailReservation, User, UserCommand};
        let ctx = tx.ctx().clone();
        let mut t = Tenant::default();
        let mut events = t
            .decide(
                &TenantCommand::Register {
                    tenant_id: self.tenant.clone(),
                    company_name: CompanyName::parse("Legacy").expect("name"),
                    admin_email: self.email.as_str().to_owned(),
                    tier: domain::Tier::Premium,
                },
                &ctx,
            )
            .expect("register");
        for e in &events {
            t.apply(e);
        }
        events.extend(
            t.decide(
                &TenantCommand::TakeSeat {
                    user_id: self.user.clone(),
                },
                &ctx,
            )
            .expect("seat"),
        );
        let user = User::default()
            .decide(
                &UserCommand::Register {
                    user_id: self.user.clone(),
                    email: self.email.clone(),
                    role: domain::Role::Admin,
                    customer_id: None,
                },
                &ctx,
            )
            .expect("user");
        let email = EmailReservation::default()
            .decide(&self.user, &ctx)
            .expect("email");
        let credential = Credential::default()
            .decide(&self.hash, &ctx)
            .expect("credential");
        use domain::StreamId;
        tx.write::<Tenant>(
            &StreamId::for_aggregate(Tenant::KIND, &self.tenant),
            &events,
        );
        tx.write::<User>(&StreamId::for_aggregate(User::KIND, &self.user), &user);
        tx.write::<EmailReservation>(
            &StreamId::for_aggregate(EmailReservation::KIND, self.email.reservation_id()),
            &email,
        );
        tx.write::<Credential>(
            &StreamId::for_aggregate(Credential::KIND, &self.user),
            &credential,
        );
        Ok(())
    }
}

#[tokio::test]
async fn a_tenant_from_before_owners_gets_its_first_admin_as_owner_by_an_event() {
    let app = TestApp::start();
    let tenant = domain::TenantId::parse(uuid::Uuid::now_v7().to_string()).expect("tenant");
    let user = domain::UserId::parse(uuid::Uuid::now_v7().to_string()).expect("user");
    let legacy = LegacySignUp {
        tenant: tenant.clone(),
        user: user.clone(),
        email: domain::user::Email::parse("old@legacy.test").expect("email"),
        hash: commands::access::hash_password(PASSWORD).expect("hash"),
    };
    let meta = commands::CommandMeta::of(
        tenant.clone(),
        domain::Actor {
            user_id: user.clone(),
            role: domain::Role::Admin,
        },
        commands::RequestIds::fresh(),
        None,
    );
    app.embedded
        .state
        .commands
        .run(&meta, &legacy)
        .await
        .expect("legacy sign-up");

    let first = sign_in(&app, tenant.as_str(), "old@legacy.test", PASSWORD).await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    assert_eq!(first.body["role"], "OWNER", "promoted at sign-in");
    let me = SignedUp::from_reply(&first);
    // By events on the user's and the tenant's streams, not by a rewrite.
    let audit = app
        .get(
            &format!("/audit/events?stream=user-{user}"),
            &me.access,
            None,
        )
        .await;
    let types: Vec<&str> = audit.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["event_type"].as_str())
        .collect();
    assert_eq!(
        types,
        ["UserRegistered", "UserRoleChanged"],
        "{:?}",
        audit.body
    );
    let owners = app
        .get(
            &format!("/audit/events?stream=tenant-{tenant}&type=TenantOwnerAdded"),
            &me.access,
            None,
        )
        .await;
    assert_eq!(
        owners.body["items"].as_array().map(Vec::len),
        Some(1),
        "{:?}",
        owners.body
    );
    // Once: the next sign-in changes nothing.
    let again = sign_in(&app, tenant.as_str(), "old@legacy.test", PASSWORD).await;
    assert_eq!(again.body["role"], "OWNER");
    let audit = app
        .get(
            &format!("/audit/events?stream=user-{user}"),
            &me.access,
            None,
        )
        .await;
    assert_eq!(audit.body["items"].as_array().map(Vec::len), Some(2));
}

/// The `Set-Cookie` of an answer, which must be the refresh cookie.
fn refresh_cookie(r: &chronicle_tests::Reply) -> String {
    let set = r.header("set-cookie").expect("a Set-Cookie").to_owned();
    assert!(set.starts_with("chronicle_refresh="), "{set}");
    set
}

fn cookie_value(set: &str) -> String {
    set.split(';').next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_browser_keeps_its_refresh_token_in_an_http_only_cookie_only_it_sends() {
    let app = TestApp::start();
    let admin = app
        .register_tenant("Cookies", "root@cookies.test", "basic")
        .await;
    let body =
        json!({"tenant_id": admin.tenant_id, "email": "root@cookies.test", "password": PASSWORD})
            .to_string();
    let signed = app
        .send(
            Method::POST,
            "/auth/signin",
            None,
            &[("x-refresh-cookie", "1")],
            Some(&body),
        )
        .await;
    assert_eq!(signed.status, StatusCode::OK, "{:?}", signed.body);
    assert!(signed.body["access_token"].is_string());
    assert!(
        signed.body.get("refresh_token").is_none(),
        "kept out of the script's reach: {:?}",
        signed.body
    );
    let set = refresh_cookie(&signed);
    for part in ["HttpOnly", "SameSite=Strict", "Path=/auth", "Max-Age="] {
        assert!(set.contains(part), "{set} lacks {part}");
    }
    assert!(
        !set.contains("Secure"),
        "served over plain HTTP here: {set}"
    );
    let cookie = cookie_value(&set);

    // The cookie alone is not enough: a cross-site form could send it.
    let bare = app
        .send(
            Method::POST,
            "/auth/refresh",
            None,
            &[("cookie", &cookie)],
            Some("{}"),
        )
        .await;
    assert_eq!(bare.status, StatusCode::UNAUTHORIZED, "{:?}", bare.body);
    let both = [("cookie", cookie.as_str()), ("x-refresh-cookie", "1")];
    let renewed = app
        .send(Method::POST, "/auth/refresh", None, &both, Some("{}"))
        .await;
    assert_eq!(renewed.status, StatusCode::OK, "{:?}", renewed.body);
    let next = cookie_value(&refresh_cookie(&renewed));
    assert_ne!(next, cookie, "the refresh token rotates");
    // The retired one is refused, and revokes its family.
    let replayed = app
        .send(Method::POST, "/auth/refresh", None, &both, Some("{}"))
        .await;
    assert_eq!(replayed.status, StatusCode::UNAUTHORIZED);

    // Behind a TLS proxy the cookie is Secure; signing out clears it.
    let over_tls = app
        .send(
            Method::POST,
            "/auth/signin",
            None,
            &[("x-refresh-cookie", "1"), ("x-forwarded-proto", "https")],
            Some(&body),
        )
        .await;
    let set = refresh_cookie(&over_tls);
    assert!(set.contains("; Secure"), "{set}");
    let cookie = cookie_value(&set);
    let out = app
        .send(
            Method::POST,
            "/auth/signout",
            None,
            &[("cookie", cookie.as_str()), ("x-refresh-cookie", "1")],
            Some("{}"),
        )
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert!(refresh_cookie(&out).contains("Max-Age=0"));
    let after = app
        .send(
            Method::POST,
            "/auth/refresh",
            None,
            &[("cookie", cookie.as_str()), ("x-refresh-cookie", "1")],
            Some("{}"),
        )
        .await;
    assert_eq!(
        after.status,
        StatusCode::UNAUTHORIZED,
        "revoked by the sign-out"
    );
}
