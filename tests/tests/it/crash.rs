//! Crash safety with the real binary: SIGKILL under concurrent load loses no acknowledged
//! task, and after a restart the read model equals a fresh replay of the store.

use chronicle_tests::process::{Http, Server};
use domain::{Role, TenantId};
use infra::sqlite::{SqliteEventStore, SqliteReadModelStore};
use projections::tasks::{TasksProjection, VIEW};
use projections::{ListQuery, ProjectionProgress, Projector, ProjectorConfig, ReadModelStore};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const SECRET: &str = "crash-test-secret-crash-test-secret-0123";
const CLIENTS: usize = 16;

fn token(tenant: &str) -> String {
    chronicle_tests::mint(SECRET.as_bytes(), tenant, "loader", Role::Admin)
}

async fn all_rows(
    store: &SqliteReadModelStore,
    tenant: &TenantId,
) -> Vec<(String, u64, Option<Value>)> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let q = ListQuery {
            search: None,
            filters: vec![],
            after: after.clone(),
            limit: 1000,
        };
        let page = store.list(VIEW, tenant, &q).await.expect("list");
        if page.is_empty() {
            return out;
        }
        after = page.last().map(|r| r.row_id.clone());
        out.extend(page.into_iter().map(|r| (r.row_id, r.version, r.doc)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_no_acknowledged_task() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), SECRET);
    let http = Http::default();
    let token = token("crash");
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (http, url, token, stop) = (
            http.clone(),
            server.url("/tasks"),
            token.clone(),
            stop.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let body = format!(r#"{{"title":"client {c} task {i}","assigned_to":"u{c}"}}"#);
                match http.send("POST", &url, &token, &[], Some(body)).await {
                    Ok(r) if r.status == 201 => {
                        let consistency = r.headers["x-consistency-token"]
                            .to_str()
                            .expect("ascii")
                            .to_owned();
                        acked.push((r.body, consistency));
                    }
                    Ok(r) => panic!("unexpected status {} {}", r.status, r.body),
                    Err(_) => break, // the server died mid-request: not acknowledged
                }
                i += 1;
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill();
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for c in clients {
        acked.extend(c.await.expect("client"));
    }
    assert!(
        acked.len() > 50,
        "the load reached the server: {} acked",
        acked.len()
    );

    let server = Server::start(dir.path(), SECRET);
    for (body, consistency) in &acked {
        let url = server.url(&format!("/tasks/{}", body["task_id"].as_str().expect("id")));
        let r = http
            .send(
                "GET",
                &url,
                &token,
                &[("x-consistency-token", consistency)],
                None,
            )
            .await
            .expect("get");
        assert_eq!(r.status, 200, "acknowledged task lost: {body}");
        assert_eq!(&r.body, body, "the task reads back as acknowledged");
    }
    // One more write, read back with its token: the projector has applied everything before it.
    let last = http
        .send(
            "POST",
            &server.url("/tasks"),
            &token,
            &[],
            Some(r#"{"title":"after restart"}"#.into()),
        )
        .await
        .expect("post");
    assert_eq!(last.status, 201);
    let consistency = last.headers["x-consistency-token"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let list = http
        .send(
            "GET",
            &server.url("/tasks?limit=1"),
            &token,
            &[("x-consistency-token", &consistency)],
            None,
        )
        .await
        .expect("list");
    assert_eq!(list.status, 200);
    assert!(server.stop().success(), "clean shutdown on SIGTERM");

    let tenant = TenantId::parse("crash").expect("tenant");
    let live = SqliteReadModelStore::open(&dir.path().join("views.db")).expect("live views");
    let events = SqliteEventStore::open(&dir.path().join("events.db")).expect("events");
    let fresh_dir = tempfile::tempdir().expect("tempdir");
    let fresh =
        SqliteReadModelStore::open(&fresh_dir.path().join("views.db")).expect("fresh views");
    let projector = Projector::new(
        Arc::new(TasksProjection),
        Arc::new(fresh.clone()),
        Arc::new(events.clone()),
        ProjectionProgress::default(),
        ProjectorConfig::default(),
    );
    projector.catch_up(&events).await.expect("replay");
    let live_rows = all_rows(&live, &tenant).await;
    assert!(
        live_rows.len() > acked.len(),
        "every acked task plus the last one"
    );
    assert_eq!(
        live_rows,
        all_rows(&fresh, &tenant).await,
        "the live read model equals a fresh replay"
    );
}
