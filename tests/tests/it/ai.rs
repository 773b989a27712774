//! AI queries end to end on the embedded backend, against a local fake of the OpenAI API
//! (`chronicle_tests::fake_openai`): submission, the worker's attempts and retries, the
//! tier's prompt limit and token budget, who sees which query, and resuming after a
//! restart.

use axum::http::StatusCode;
use chronicle_tests::fake_openai::FakeOpenAi;
use chronicle_tests::{SignedUp, TestApp, ai_config};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn submit(app: &TestApp, who: &SignedUp, prompt: &str) -> String {
    let reply = app
        .post(
            "/ai/query",
            &who.access,
            &json!({"prompt": prompt}).to_string(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
    assert_eq!(reply.body["status"], "QUEUED");
    let id = reply.body["query_id"].as_str().expect("id").to_owned();
    assert_eq!(
        reply.header("location"),
        Some(format!("/ai/query/{id}").as_str())
    );
    assert!(reply.header("x-consistency-token").is_some());
    id
}

/// Polls the query until it is COMPLETED or FAILED.
async fn settled(app: &TestApp, who: &SignedUp, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = app.get(&format!("/ai/query/{id}"), &who.access, None).await;
        if reply.status == StatusCode::OK {
            let status = reply.body["status"].as_str().unwrap_or_default();
            if status == "COMPLETED" || status == "FAILED" {
                return reply.body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "query {id} never settled: {:?}",
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn without_a_provider_a_query_is_503_and_writes_nothing() {
    let app = TestApp::start();
    let shop = app.register_tenant("Shop", "root@shop.test", "basic").await;
    let reply = app
        .post("/ai/query", &shop.access, r#"{"prompt": "hello"}"#)
        .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.problem(), "urn:chronicle:problem:not-configured");
    assert!(
        reply.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("OPENAI_API_KEY")),
        "{:?}",
        reply.body
    );
    let list = app.get("/ai/queries", &shop.access, None).await;
    assert_eq!(list.body["items"], json!([]));
}

#[tokio::test]
async fn a_query_is_answered_and_its_tokens_are_metered() {
    let fake = FakeOpenAi::start().await;
    let app = TestApp::start_with_ai(&fake);
    let shop = app.register_tenant("Shop", "root@shop.test", "basic").await;
    let id = submit(&app, &shop, "what is event sourcing?").await;
    let q = settled(&app, &shop, &id).await;
    assert_eq!(q["status"], "COMPLETED", "{q:?}");
    assert_eq!(q["answer"], "echo: what is event sourcing?");
    assert_eq!(q["prompt"], "what is event sourcing?");
    assert_eq!(q["model"], "gpt-test-2026-01-01", "the model that answered");
    assert_eq!(q["requested_model"], "gpt-test");
    assert_eq!(
        q["usage"],
        json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15})
    );
    assert_eq!(q["attempts"], 1);
    assert!(q["started_at"].is_string() && q["completed_at"].is_string());
    assert!(q["submitted_at"].is_string());
    assert_eq!(q["error"], Value::Null);
    assert_eq!(fake.calls("what is event sourcing?"), 1);

    let tenant = app
        .get(&format!("/tenants/{}", shop.tenant_id), &shop.access, None)
        .await;
    assert_eq!(tenant.body["usage"]["ai_tokens"], 15, "{:?}", tenant.body);
    assert_eq!(tenant.body["usage"]["ai_queries"], 1);
    assert_eq!(tenant.body["limits"]["ai_tokens_per_month"], 100_000);
    assert_eq!(tenant.body["limits"]["max_prompt_chars"], 4_000);
}

#[tokio::test]
async fn retryable_failures_are_retried_and_the_rest_fail_at_once() {
    let fake = FakeOpenAi::start().await;
    let app = TestApp::start_with_ai(&fake);
    let shop = app
        .register_tenant("Shop", "root@shop.test", "premium")
        .await;
    let cases = [
        // (prompt, status, attempts)
        ("rate-limit-once", "COMPLETED", 2),
        ("slow-once", "COMPLETED", 2),
        ("server-error", "FAILED", 3),
        ("insufficient-quota", "FAILED", 1),
        ("malformed", "FAILED", 1),
        ("bad-request", "FAILED", 1),
    ];
    let mut ids = Vec::new();
    for (prompt, _, _) in &cases {
        ids.push(submit(&app, &shop, prompt).await);
    }
    for ((prompt, status, attempts), id) in cases.iter().zip(&ids) {
        let q = settled(&app, &shop, id).await;
        assert_eq!(q["status"], *status, "{prompt}: {q:?}");
        assert_eq!(q["attempts"], *attempts, "{prompt}: {q:?}");
        assert_eq!(
            fake.calls(prompt),
            *attempts,
            "{prompt}: one call per attempt"
        );
        if *status == "FAILED" {
            assert!(q["error"].is_string(), "{prompt}: {q:?}");
            assert!(q["completed_at"].is_string());
            assert_eq!(q["answer"], Value::Null);
        }
    }
    let q = settled(&app, &shop, &ids[2]).await;
    let error = q["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("500") && error.contains("after 3 attempts"),
        "{error}"
    );
    let q = settled(&app, &shop, &ids[3]).await;
    assert!(
        q["error"]
            .as_str()
            .is_some_and(|e| e.contains("insufficient_quota")),
        "{q:?}"
    );
    // Only completed queries count against the budget: 2 x 15 tokens.
    let tenant = app
        .get(&format!("/tenants/{}", shop.tenant_id), &shop.access, None)
        .await;
    assert_eq!(tenant.body["usage"]["ai_tokens"], 30);
    // The list filters by status.
    let failed = app
        .get("/ai/queries?status=FAILED", &shop.access, None)
        .await;
    assert_eq!(failed.body["items"].as_array().map(Vec::len), Some(4));
}

#[tokio::test]
async fn the_tier_limits_the_prompt_and_the_month_and_refusals_write_nothing() {
    let fake = FakeOpenAi::start().await;
    let app = TestApp::start_with_ai(&fake);
    let shop = app.register_tenant("Shop", "root@shop.test", "basic").await;
    let long = "x".repeat(4_001);
    let reply = app
        .post(
            "/ai/query",
            &shop.access,
            &json!({"prompt": long}).to_string(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["field"], "prompt");
    assert!(
        reply.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("max_prompt_chars") && d.contains("4000")),
        "{:?}",
        reply.body
    );
    for bad in [
        r#"{"prompt": ""}"#,
        r#"{"prompt": 7}"#,
        r#"{"prompt": "hi", "model": "no spaces"}"#,
        "{}",
    ] {
        let reply = app.post("/ai/query", &shop.access, bad).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {:?}",
            reply.body
        );
    }
    let just_fits = "y".repeat(4_000);
    let ok = submit(&app, &shop, &just_fits).await;
    settled(&app, &shop, &ok).await;

    // One heavy query takes the basic tier's 100,000 tokens and more.
    let heavy = submit(&app, &shop, "heavy").await;
    assert_eq!(settled(&app, &shop, &heavy).await["status"], "COMPLETED");
    let reply = app
        .post("/ai/query", &shop.access, r#"{"prompt": "one more"}"#)
        .await;
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        reply.body
    );
    assert_eq!(reply.problem(), "urn:chronicle:problem:quota-exceeded");
    assert_eq!(reply.body["budget"], 100_000);
    assert_eq!(reply.body["used"], 1_000_015);
    assert!(reply.body["resets_at"].is_string());
    assert!(reply.header("retry-after").is_some());
    let all = app.get("/ai/queries", &shop.access, None).await;
    assert_eq!(
        all.body["items"].as_array().map(Vec::len),
        Some(2),
        "refusals wrote nothing"
    );
    assert_eq!(fake.calls("one more"), 0);
}

#[tokio::test]
async fn a_member_sees_their_own_queries_and_no_tenant_sees_another() {
    let fake = FakeOpenAi::start().await;
    let app = TestApp::start_with_ai(&fake);
    let shop = app
        .register_tenant("Shop", "root@shop.test", "premium")
        .await;
    let other = app
        .register_tenant("Other", "root@other.test", "premium")
        .await;
    let invite = app
        .post(
            "/users",
            &shop.access,
            &json!({"email": "m@shop.test", "role": "MEMBER", "password": chronicle_tests::PASSWORD}).to_string(),
        )
        .await;
    assert_eq!(invite.status, StatusCode::CREATED, "{:?}", invite.body);
    let signin = app
        .post_public(
            "/auth/signin",
            &json!({"tenant_id": shop.tenant_id, "email": "m@shop.test", "password": chronicle_tests::PASSWORD}).to_string(),
        )
        .await;
    assert_eq!(signin.status, StatusCode::OK, "{:?}", signin.body);
    let member = SignedUp::from_reply(&signin);
    let admins = submit(&app, &shop, "the admin's question").await;
    let members = submit(&app, &member, "the member's question").await;
    settled(&app, &member, &members).await;
    settled(&app, &shop, &admins).await;

    let mine = app.get("/ai/queries", &member.access, None).await;
    let ids: Vec<&str> = mine.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|q| q["query_id"].as_str())
        .collect();
    assert_eq!(ids, vec![members.as_str()]);
    let all = app.get("/ai/queries", &shop.access, None).await;
    assert_eq!(all.body["items"].as_array().map(Vec::len), Some(2));
    let theirs = app
        .get(&format!("/ai/query/{admins}"), &member.access, None)
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    let elsewhere = app
        .get(&format!("/ai/query/{admins}"), &other.access, None)
        .await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
    let none = app.get("/ai/queries", &other.access, None).await;
    assert_eq!(none.body["items"], json!([]));
}

#[tokio::test]
async fn an_unfinished_query_resumes_after_a_restart() {
    let fake = FakeOpenAi::start().await;
    let app = TestApp::start_with_ai(&fake);
    let shop = app.register_tenant("Shop", "root@shop.test", "basic").await;
    // Answered after 3 s, past the 1 s timeout: the first attempt is still running when
    // the process stops.
    let id = submit(&app, &shop, "slow-once, then resume").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.calls("slow-once, then resume") == 0 {
        assert!(
            Instant::now() < deadline,
            "the worker never called the model"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let q = app
        .get(&format!("/ai/query/{id}"), &shop.access, None)
        .await;
    assert_eq!(q.body["status"], "PROCESSING", "{:?}", q.body);
    let app = app.restart(Some(ai_config(&fake))).await;
    let q = settled(&app, &shop, &id).await;
    assert_eq!(q["status"], "COMPLETED", "{q:?}");
    assert_eq!(
        q["attempts"], 2,
        "the cut-off attempt is not run again: the next one is"
    );
    assert_eq!(fake.calls("slow-once, then resume"), 2);
}
