//! The audit tools on the embedded backend: `chronicle audit timeline|state|verify|digest`
//! against the data dir of a Chronicle that took real requests, `/audit/...` over HTTP,
//! and tampering done straight in the SQLite file: an altered payload is named by
//! `verify`, and a rewrite whose hashes were all recomputed passes the chain check but
//! not the digest kept from before.

use axum::http::StatusCode;
use chronicle_tests::TestApp;
use chronicle_tests::process::chronicle_bin;
use domain::{StreamId, TenantId};
use serde_json::{Value, json};
use std::process::Command;

fn audit(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(chronicle_bin())
        .arg("audit")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .expect("run chronicle audit");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_timeline_state_verify_and_digest_tell_what_happened_and_catch_tampering() {
    let app = TestApp::start();
    let shop = app
        .register_tenant("Shop", "root@shop.test", "premium")
        .await;
    let created = app
        .post("/tasks", &shop.access, r#"{"title": "first title"}"#)
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let task = created.body["task_id"].as_str().expect("id").to_owned();
    for title in ["second title", "third title"] {
        let r = app
            .put(
                &format!("/tasks/{task}"),
                &shop.access,
                &json!({"title": title}).to_string(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    let dir = app.dir.path();
    let t = shop.tenant_id.as_str();
    let stream = format!("task-{task}");

    // The timeline, as NDJSON: every event in order, with who and through which command.
    let (code, out, err) = audit(dir, &["timeline", "--tenant", t, "--format", "ndjson"]);
    assert_eq!(code, 0, "{err}");
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(events.iter().any(|e| e["event_type"] == "TenantRegistered"));
    let positions: Vec<u64> = events
        .iter()
        .filter_map(|e| e["position"].as_u64())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "in order");
    assert!(
        events.iter().all(|e| !e["stream_id"]
            .as_str()
            .unwrap_or_default()
            .starts_with("credential-")),
        "private streams are not shown"
    );
    let (_, out, _) = audit(
        dir,
        &[
            "timeline",
            "--tenant",
            t,
            "--type",
            "TaskUpdated",
            "--format",
            "json",
        ],
    );
    let updates: Vec<Value> = serde_json::from_str(&out).expect("a JSON array");
    assert_eq!(updates.len(), 2);
    assert_eq!(updates[0]["actor"], shop.user_id.as_str());
    assert!(updates[0]["command_id"].is_string() && updates[0]["correlation_id"].is_string());
    let (_, table, _) = audit(dir, &["timeline", "--tenant", t, "--stream", &stream]);
    assert_eq!(
        table.lines().count(),
        4,
        "a header and the task's three events:\n{table}"
    );

    // State as of a version, folded by the domain's own code.
    let (code, out, err) = audit(
        dir,
        &[
            "state",
            "--tenant",
            t,
            "--stream",
            &stream,
            "--version",
            "2",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let state: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(state["version"], 2);
    assert_eq!(state["state"]["title"], "second title");

    // Over HTTP, for ADMINs.
    let r = app
        .get(
            &format!("/audit/streams/{stream}/state?version=1"),
            &shop.access,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["state"]["title"], "first title");
    let r = app
        .get("/audit/events?type=TaskCreated", &shop.access, None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(1));
    let http_digest = app.get("/audit/digest", &shop.access, None).await;
    assert_eq!(http_digest.status, StatusCode::OK);

    // Untouched: verify passes; keep a digest.
    let (code, out, err) = audit(dir, &["verify", "--tenant", t]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("verified"), "{out}");
    let (code, digest, err) = audit(dir, &["digest", "--tenant", t]);
    assert_eq!(code, 0, "{err}");
    let kept: Value = serde_json::from_str(&digest).expect("digest");
    assert_eq!(
        kept["root"], http_digest.body["root"],
        "the CLI and HTTP agree"
    );
    let digest_file = dir.join("kept-digest.json");
    std::fs::write(&digest_file, &digest).expect("write");

    let db = rusqlite::Connection::open(dir.join("events.db")).expect("open");
    // 1. An altered payload: the chain breaks at that version.
    db.execute(
        "UPDATE events SET payload = ?1 WHERE tenant_id = ?2 AND stream_id = ?3 AND version = 2",
        rusqlite::params![
            r#"{"title":"forged","updated_at":"2026-01-01T00:00:00Z"}"#,
            t,
            stream
        ],
    )
    .expect("tamper");
    let (code, _, err) = audit(dir, &["verify", "--tenant", t]);
    assert_eq!(code, 1);
    assert!(err.contains(&stream) && err.contains("version 2"), "{err}");

    // 2. A rewrite with every hash recomputed: the chain holds, the digest does not.
    let tenant = TenantId::parse(t).expect("tenant");
    let mut events = commands::EventStore::read_stream(
        &app.embedded.events,
        &tenant,
        &StreamId::parse(stream.clone()).expect("stream"),
        1,
        100,
    )
    .await
    .expect("read");
    let mut prev = domain::GENESIS_HASH.to_owned();
    for e in &mut events {
        e.seal(&prev);
        prev.clone_from(&e.hash);
        db.execute(
            "UPDATE events SET payload = ?1, hash = ?2 WHERE tenant_id = ?3 AND stream_id = ?4 AND version = ?5",
            rusqlite::params![e.payload.to_string(), e.hash, t, stream, e.version as i64],
        )
        .expect("rewrite");
    }
    let (code, out, err) = audit(dir, &["verify", "--tenant", t]);
    assert_eq!(code, 0, "the recomputed chain holds: {out}{err}");
    let (code, _, err) = audit(
        dir,
        &["verify", "--digest", digest_file.to_str().expect("path")],
    );
    assert_eq!(code, 1, "the digest catches the rewrite");
    assert!(err.contains("rewritten"), "{err}");
}

#[tokio::test]
async fn members_get_403_on_audit_routes() {
    let app = TestApp::start();
    let shop = app
        .register_tenant("Shop", "root@shop.test", "premium")
        .await;
    let body =
        json!({"email": "m@shop.test", "password": chronicle_tests::PASSWORD, "role": "MEMBER"});
    assert_eq!(
        app.post("/users", &shop.access, &body.to_string())
            .await
            .status,
        StatusCode::CREATED
    );
    let signin = json!({"tenant_id": shop.tenant_id, "email": "m@shop.test", "password": chronicle_tests::PASSWORD});
    let member = chronicle_tests::SignedUp::from_reply(
        &app.post_public("/auth/signin", &signin.to_string()).await,
    );
    for path in ["/audit/events", "/audit/digest"] {
        assert_eq!(
            app.get(path, &member.access, None).await.status,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
}
