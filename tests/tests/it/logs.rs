//! The running binary's JSON logs: each request's lines carry its route, request id,
//! tenant and user, and no token.

use chronicle_tests::mint;
use chronicle_tests::process::{Http, Server};
use domain::Role;
use serde_json::Value;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

const SECRET: &str = "logs-secret-logs-secret-logs-secret-0123";

#[tokio::test]
async fn request_logs_carry_route_request_tenant_and_user_and_never_the_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_logging(dir.path(), SECRET, &[], "info,tower_http=debug");
    let http = Http::default();
    let token = mint(SECRET.as_bytes(), "logged", "lee", Role::Admin);
    let created = http
        .send(
            "POST",
            &server.url("/tasks"),
            &token,
            &[],
            Some(r#"{"title":"traced"}"#.into()),
        )
        .await
        .expect("POST");
    assert_eq!(created.status, 201, "{:?}", created.body);
    let task = created.body["task_id"].as_str().expect("id").to_owned();
    // With the write's token: the read waits until the read model shows it.
    let consistency = created
        .headers
        .get("x-consistency-token")
        .and_then(|v| v.to_str().ok())
        .expect("X-Consistency-Token")
        .to_owned();
    let got = http
        .send(
            "GET",
            &server.url(&format!("/tasks/{task}")),
            &token,
            &[("x-consistency-token", consistency.as_str())],
            None,
        )
        .await
        .expect("GET");
    assert_eq!(got.status, 200, "{:?}", got.body);
    let missing = http
        .send("GET", &server.url("/no/such/route"), &token, &[], None)
        .await
        .expect("GET");
    assert_eq!(missing.status, 404);

    let logs = server.logs.clone();
    assert!(server.stop().success());
    // The reader thread may still be copying the last lines.
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let lines = logs.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if lines.iter().any(|l| l.contains("\"stopped\"")) || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        lines.iter().all(|l| !l.contains(&token)),
        "a log line holds the token"
    );
    let finished: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "finished processing request")
        .collect();
    let span_of = |status: u16| {
        finished
            .iter()
            .find(|v| v["fields"]["status"] == status)
            .map(|v| v["span"].clone())
            .unwrap_or_else(|| panic!("no finished request with status {status} in {lines:#?}"))
    };

    let post = span_of(201);
    assert_eq!(post["method"], "POST");
    assert_eq!(post["route"], "/tasks");
    assert_eq!(post["tenant_id"], "logged");
    assert_eq!(post["user_id"], "lee");
    let request_id = created.headers["x-request-id"]
        .to_str()
        .expect("request id");
    assert_eq!(post["request_id"], request_id);

    // The route is the matched pattern, not the path with the task's id in it.
    let get = span_of(200);
    assert_eq!(get["route"], "/tasks/{id}");
    assert_eq!(get["tenant_id"], "logged");
    assert_ne!(get["request_id"], post["request_id"]);

    let unmatched = span_of(404);
    assert_eq!(unmatched["route"], "/no/such/route");
    assert!(
        unmatched["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
}

#[tokio::test]
async fn the_ai_providers_key_is_never_logged() {
    let fake = chronicle_tests::fake_openai::FakeOpenAi::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_logging(
        dir.path(),
        SECRET,
        &[
            "--openai-api-key",
            &fake.key,
            "--openai-base-url",
            &fake.base_url,
            "--ai-timeout",
            "2s",
        ],
        "debug",
    );
    let http = Http::default();
    let token = mint(SECRET.as_bytes(), "logged", "lee", Role::Admin);
    let mut ids = Vec::new();
    for prompt in ["log me", "bad-request, logged"] {
        let submitted = http
            .send(
                "POST",
                &server.url("/ai/query"),
                &token,
                &[],
                Some(serde_json::json!({ "prompt": prompt }).to_string()),
            )
            .await
            .expect("POST");
        assert_eq!(submitted.status, 202, "{:?}", submitted.body);
        ids.push(submitted.body["query_id"].as_str().expect("id").to_owned());
    }
    for (id, status) in ids.iter().zip(["COMPLETED", "FAILED"]) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let q = http
                .send(
                    "GET",
                    &server.url(&format!("/ai/query/{id}")),
                    &token,
                    &[],
                    None,
                )
                .await
                .expect("GET");
            if q.body["status"] == status {
                break;
            }
            assert!(Instant::now() < deadline, "{:?}", q.body);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let logs = server.logs.clone();
    assert!(server.stop().success());
    let lines = logs.lock().unwrap_or_else(PoisonError::into_inner).clone();
    assert!(
        lines.iter().any(|l| l.contains("AI query done")),
        "the worker logged its work: {lines:#?}"
    );
    assert!(
        lines.iter().all(|l| !l.contains(&fake.key)),
        "a log line holds the provider's key"
    );
}
