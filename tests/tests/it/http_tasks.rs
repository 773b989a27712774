//! The `/tasks` contract end to end through the router, on the embedded backend.

use axum::http::{Method, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chronicle_tests::{SECRET, TestApp};
use domain::Role;
use serde_json::{Value, json};
use std::collections::HashSet;

fn id(reply: &chronicle_tests::Reply) -> String {
    reply.body["task_id"].as_str().expect("task_id").to_owned()
}

#[tokio::test]
async fn create_then_read_your_write_through_the_consistency_token() {
    let app = TestApp::start();
    let admin = app.token("karachi-tech", "ahmed", Role::Admin);
    let created = app
        .post("/tasks", &admin, r#"{"title":"Setup CI/CD pipeline","description":"GitHub Actions","assigned_to":"hassan.malik@company.pk"}"#)
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let b = &created.body;
    for field in [
        "task_id",
        "tenant_id",
        "title",
        "description",
        "status",
        "assigned_to",
        "created_by",
        "created_at",
        "updated_at",
        "version",
    ] {
        assert!(b.get(field).is_some(), "missing {field} in {b}");
    }
    assert_eq!(b["tenant_id"], "karachi-tech");
    assert_eq!(b["status"], "OPEN");
    assert_eq!(b["created_by"], "ahmed");
    assert_eq!(b["assigned_to"], "hassan.malik@company.pk");
    assert_eq!(b["version"], 1);
    let task = id(&created);
    assert_eq!(
        created.header("location"),
        Some(format!("/tasks/{task}").as_str())
    );

    let token = created.token();
    let one = app
        .get(&format!("/tasks/{task}"), &admin, Some(&token))
        .await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(
        one.body, created.body,
        "the read model shows exactly what the command returned"
    );
    let list = app.get("/tasks", &admin, Some(&token)).await;
    assert_eq!(list.body["items"], json!([created.body]));
    assert_eq!(list.body["next_cursor"], Value::Null);
}

#[tokio::test]
async fn update_changes_fields_and_if_match_guards_the_version() {
    let app = TestApp::start();
    let admin = app.token("t1", "root", Role::Admin);
    let task = id(&app.post("/tasks", &admin, r#"{"title":"first"}"#).await);
    let path = format!("/tasks/{task}");

    let updated = app
        .send(
            Method::PUT,
            &path,
            Some(&admin),
            &[("if-match", "\"1\"")],
            Some(r#"{"title":"second","status":"IN_PROGRESS","assigned_to":"bob"}"#),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{updated:?}");
    assert_eq!(updated.body["title"], "second");
    assert_eq!(updated.body["status"], "IN_PROGRESS");
    assert_eq!(updated.body["assigned_to"], "bob");
    assert_eq!(
        updated.body["version"], 4,
        "three kinds of change, three events"
    );
    assert_eq!(updated.header("etag"), Some("\"4\""));

    let stale = app
        .send(
            Method::PUT,
            &path,
            Some(&admin),
            &[("if-match", "\"1\"")],
            Some(r#"{"status":"DONE"}"#),
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert!(stale.problem().ends_with("precondition-failed"));

    let unassigned = app.put(&path, &admin, r#"{"assigned_to":null}"#).await;
    assert_eq!(unassigned.body["assigned_to"], Value::Null);
    let seen = app.get(&path, &admin, Some(&unassigned.token())).await;
    assert_eq!(seen.body, unassigned.body);

    let no_op = app.put(&path, &admin, r#"{"status":"IN_PROGRESS"}"#).await;
    assert_eq!(no_op.status, StatusCode::OK);
    assert_eq!(
        no_op.body["version"], unassigned.body["version"],
        "no change, no event"
    );
}

#[tokio::test]
async fn delete_is_admin_only_and_a_deleted_task_is_gone() {
    let app = TestApp::start();
    let admin = app.token("t1", "root", Role::Admin);
    let member = app.token("t1", "mia", Role::Member);
    let task = id(&app.post("/tasks", &member, r#"{"title":"mine"}"#).await);
    let path = format!("/tasks/{task}");

    let refused = app.delete(&path, &member).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.problem().ends_with("forbidden"));

    let deleted = app.delete(&path, &admin).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let token = deleted.token();
    assert_eq!(
        app.get(&path, &admin, Some(&token)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/tasks", &admin, Some(&token)).await.body["items"],
        json!([])
    );
    let change = app.put(&path, &admin, r#"{"title":"again"}"#).await;
    assert_eq!(change.status, StatusCode::GONE);
    assert_eq!(app.delete(&path, &admin).await.status, StatusCode::GONE);
    assert_eq!(
        app.delete("/tasks/0192a000-0000-7000-8000-000000000000", &admin)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_member_updates_only_tasks_they_created_or_are_assigned() {
    let app = TestApp::start();
    let alice = app.token("t1", "alice", Role::Member);
    let bob = app.token("t1", "bob", Role::Member);
    let carol = app.token("t1", "carol", Role::Member);
    let task = id(&app
        .post("/tasks", &alice, r#"{"title":"t","assigned_to":"bob"}"#)
        .await);
    let path = format!("/tasks/{task}");
    assert_eq!(
        app.put(&path, &alice, r#"{"status":"IN_PROGRESS"}"#)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.put(&path, &bob, r#"{"status":"DONE"}"#).await.status,
        StatusCode::OK
    );
    let refused = app.put(&path, &carol, r#"{"status":"OPEN"}"#).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("MEMBER")
    );
}

#[tokio::test]
async fn another_tenants_task_is_not_found_on_every_route() {
    let app = TestApp::start();
    let owner = app.token("tenant-a", "root", Role::Admin);
    let intruder = app.token("tenant-b", "root", Role::Admin);
    let created = app.post("/tasks", &owner, r#"{"title":"secret"}"#).await;
    let token = created.token();
    let path = format!("/tasks/{}", id(&created));
    assert_eq!(
        app.get(&path, &intruder, Some(&token)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.put(&path, &intruder, r#"{"title":"x"}"#).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete(&path, &intruder).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/tasks", &intruder, Some(&token)).await.body["items"],
        json!([])
    );
    // And the owner's task is untouched.
    let still = app.get(&path, &owner, Some(&token)).await;
    assert_eq!(still.body["title"], "secret");
    assert_eq!(still.body["version"], 1);
}

#[tokio::test]
async fn bad_input_gets_a_precise_problem_and_changes_nothing() {
    let app = TestApp::start();
    let admin = app.token("t1", "root", Role::Admin);
    let cases: Vec<(&str, StatusCode, &str, Option<&str>)> = vec![
        (
            r#"{"title": "#,
            StatusCode::BAD_REQUEST,
            "malformed-json",
            None,
        ),
        (
            r#"{"title": ""}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
            Some("title"),
        ),
        (
            r#"{"title": 42}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
            Some("title"),
        ),
        (
            r#"{"description": "no title"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
            Some("title"),
        ),
        (
            r#"{"title": "ok", "colour": "red"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
            Some("colour"),
        ),
        (
            r#"{"title": "ok", "assigned_to": "a b"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
            Some("assigned_to"),
        ),
    ];
    for (body, status, kind, field) in cases {
        let r = app.post("/tasks", &admin, body).await;
        assert_eq!(r.status, status, "{body}: {r:?}");
        assert!(r.problem().ends_with(kind), "{body}: {r:?}");
        assert!(!r.body["detail"].as_str().unwrap_or_default().is_empty());
        if let Some(f) = field {
            assert_eq!(r.body["field"], f, "{body}: {r:?}");
        }
    }
    let long = format!(r#"{{"title": "{}"}}"#, "x".repeat(201));
    assert_eq!(
        app.post("/tasks", &admin, &long).await.body["field"],
        "title"
    );
    let huge = format!(
        r#"{{"title": "x", "description": "{}"}}"#,
        "d".repeat(70 * 1024)
    );
    let too_large = app.post("/tasks", &admin, &huge).await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(too_large.problem().ends_with("payload-too-large"));
    let no_type = app
        .send(Method::POST, "/tasks", Some(&admin), &[], None)
        .await;
    assert_eq!(no_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let task = id(&app.post("/tasks", &admin, r#"{"title":"ok"}"#).await);
    let path = format!("/tasks/{task}");
    let bad_status = app.put(&path, &admin, r#"{"status":"CLOSED"}"#).await;
    assert_eq!(bad_status.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad_status.body["field"], "status");
    assert!(
        bad_status.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("CLOSED")
    );
    assert_eq!(
        app.put(&path, &admin, "{}").await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    // Only the one valid create reached the store.
    let last = app.put(&path, &admin, r#"{"title":"still ok"}"#).await;
    let list = app.get("/tasks", &admin, Some(&last.token())).await;
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(list.body["items"][0]["version"], 2);
}

#[tokio::test]
async fn idempotency_key_replays_the_first_response() {
    let app = TestApp::start();
    let admin = app.token("t1", "root", Role::Admin);
    let body = r#"{"title":"once"}"#;
    let send = |b: &'static str| {
        app.send(
            Method::POST,
            "/tasks",
            Some(&admin),
            &[("idempotency-key", "k-1")],
            Some(b),
        )
    };
    let first = send(body).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let again = send(body).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(
        again.body, first.body,
        "the first response, task id and all"
    );
    let other = send(r#"{"title":"twice"}"#).await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(other.problem().ends_with("idempotency-key-reused"));
    let list = app.get("/tasks", &admin, Some(&first.token())).await;
    assert_eq!(
        list.body["items"].as_array().map(Vec::len),
        Some(1),
        "one task written"
    );
}

#[tokio::test]
async fn lists_filter_by_status_and_assignee_and_page_with_cursors() {
    let app = TestApp::start();
    let admin = app.token("t1", "root", Role::Admin);
    let mut token = String::new();
    for i in 0..7 {
        let assignee = if i % 2 == 0 { "bob" } else { "eve" };
        let c = app
            .post(
                "/tasks",
                &admin,
                &format!(r#"{{"title":"task {i}","assigned_to":"{assignee}"}}"#),
            )
            .await;
        token = c.token();
        if i < 3 {
            token = app
                .put(
                    &format!("/tasks/{}", id(&c)),
                    &admin,
                    r#"{"status":"DONE"}"#,
                )
                .await
                .token();
        }
    }
    let titles = |r: &chronicle_tests::Reply| -> Vec<String> {
        r.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|t| t["title"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let done = app.get("/tasks?status=DONE", &admin, Some(&token)).await;
    assert_eq!(titles(&done), ["task 0", "task 1", "task 2"]);
    let bob = app
        .get("/tasks?assigned_to=bob", &admin, Some(&token))
        .await;
    assert_eq!(titles(&bob), ["task 0", "task 2", "task 4", "task 6"]);
    let both = app
        .get("/tasks?assigned_to=eve&status=OPEN", &admin, None)
        .await;
    assert_eq!(titles(&both), ["task 3", "task 5"]);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/tasks?limit=3&cursor={c}"),
            None => "/tasks?limit=3".to_owned(),
        };
        let page = app.get(&path, &admin, None).await;
        assert_eq!(page.status, StatusCode::OK);
        let items = titles(&page);
        assert!(items.len() <= 3);
        seen.extend(items);
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        7,
        "no task twice across pages"
    );

    for bad in [
        "/tasks?status=CLOSED",
        "/tasks?limit=0",
        "/tasks?limit=101",
        "/tasks?limit=x",
        "/tasks?cursor=%%%",
    ] {
        let r = app.get(bad, &admin, None).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {r:?}");
    }
    let foreign = URL_SAFE_NO_PAD.encode("zzzz");
    let past_the_end = app
        .get(&format!("/tasks?cursor={foreign}"), &admin, None)
        .await;
    assert_eq!(past_the_end.body["items"], json!([]));
}

fn forge(header: &Value, claims: &Value, secret: Option<&[u8]>) -> String {
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let signing_input = format!("{}.{}", enc(header), enc(claims));
    match secret {
        None => format!("{signing_input}."),
        Some(s) => {
            let key = jsonwebtoken::EncodingKey::from_secret(s);
            let h: jsonwebtoken::Header = serde_json::from_value(header.clone()).expect("header");
            jsonwebtoken::encode(&h, claims, &key).expect("sign")
        }
    }
}

#[tokio::test]
async fn bad_tokens_are_401_with_a_challenge() {
    let app = TestApp::start();
    let now = chrono::Utc::now().timestamp();
    let claims = |exp: i64| json!({"sub": "root", "tenant_id": "t1", "roles": ["ADMIN"], "exp": exp, "iat": now, "iss": "chronicle"});
    let hs256 = json!({"alg": "HS256", "typ": "JWT"});
    let good = forge(&hs256, &claims(now + 600), Some(SECRET));
    assert_eq!(
        app.get("/tasks", &good, None).await.status,
        StatusCode::OK,
        "the forger itself is sound"
    );

    let tokens = [
        ("expired", forge(&hs256, &claims(now - 600), Some(SECRET))),
        (
            "wrong key",
            forge(
                &hs256,
                &claims(now + 600),
                Some(b"another-secret-another-secret-00"),
            ),
        ),
        (
            "alg none",
            forge(
                &json!({"alg": "none", "typ": "JWT"}),
                &claims(now + 600),
                None,
            ),
        ),
        (
            "wrong issuer",
            forge(
                &hs256,
                &json!({"sub": "root", "tenant_id": "t1", "roles": ["ADMIN"], "exp": now + 600, "iss": "evil"}),
                Some(SECRET),
            ),
        ),
        ("garbage", "not.a.token".to_owned()),
    ];
    for (what, token) in tokens {
        let r = app.get("/tasks", &token, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}");
        assert!(
            r.header("www-authenticate")
                .is_some_and(|h| h.starts_with("Bearer")),
            "{what}"
        );
        assert!(r.problem().ends_with("unauthenticated"));
    }
    let none = app.send(Method::GET, "/tasks", None, &[], None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert!(none.header("www-authenticate").is_some());
    let basic = app
        .send(
            Method::GET,
            "/tasks",
            None,
            &[("authorization", "Basic YTpi")],
            None,
        )
        .await;
    assert_eq!(basic.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn health_and_ready() {
    let app = TestApp::start();
    let health = app.send(Method::GET, "/health", None, &[], None).await;
    assert_eq!(health.status, StatusCode::OK);
    // The projector starts on its own task; readiness follows within moments.
    let mut ready = app.send(Method::GET, "/ready", None, &[], None).await;
    for _ in 0..50 {
        if ready.status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        ready = app.send(Method::GET, "/ready", None, &[], None).await;
    }
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.body["status"], "ready");
    app.embedded.shutdown().await;
}
