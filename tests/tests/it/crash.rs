//! Crash safety with the real binary, as a soak: `chronicle serve` under concurrent writes
//! (creates and updates) is killed with SIGKILL 20 times at moments drawn over 0.1–2.6 s
//! (so some land in a WAL checkpoint, every 2 s, and most in projector commits), and
//! restarted on the same data dir each time. After every kill:
//! - `chronicle audit verify` passes (every stream's versions gapless, hash chains intact);
//! - after the restart, every write acknowledged in that round reads back as acknowledged,
//!   through its consistency token;
//! - the read models equal a fresh replay of the store (`chronicle replay --all`), row for
//!   row.

use chronicle_tests::Dice;
use chronicle_tests::process::{Http, Server, chronicle_bin};
use chronicle_tests::read_models::live_rows;
use domain::Role;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const SECRET: &str = "crash-test-secret-crash-test-secret-0123";
const CLIENTS: usize = 8;
const KILLS: usize = 20;

fn token(tenant: &str) -> String {
    chronicle_tests::mint(SECRET.as_bytes(), tenant, "loader", Role::Admin)
}

/// An acknowledged write: the task as the answer showed it, and the answer's token. With
/// `then_unknown`, an update was sent after it and its answer lost with the server: the
/// task may show it too.
struct Acked {
    task: Value,
    consistency: String,
    then_unknown: bool,
}

/// Writes until `stop` or the server dies: each client creates a task, then renames it.
async fn load(
    http: Http,
    base: String,
    token: String,
    c: usize,
    stop: Arc<AtomicBool>,
) -> Vec<Acked> {
    let mut acked = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let body = format!(r#"{{"title":"client {c} task {i}","assigned_to":"u{c}"}}"#);
        let created = match http
            .send("POST", &format!("{base}/tasks"), &token, &[], Some(body))
            .await
        {
            Ok(r) if r.status == 201 => r,
            Ok(r) => panic!("unexpected status {} {}", r.status, r.body),
            Err(_) => break, // the server died mid-request: not acknowledged
        };
        let id = created.body["task_id"].as_str().expect("id").to_owned();
        let consistency = |r: &chronicle_tests::process::HttpReply| {
            r.headers["x-consistency-token"]
                .to_str()
                .expect("ascii")
                .to_owned()
        };
        let renamed = format!(r#"{{"title":"client {c} task {i} renamed"}}"#);
        match http
            .send(
                "PUT",
                &format!("{base}/tasks/{id}"),
                &token,
                &[],
                Some(renamed),
            )
            .await
        {
            Ok(r) if r.status == 200 => {
                let consistency = consistency(&r);
                acked.push(Acked {
                    task: r.body,
                    consistency,
                    then_unknown: false,
                });
            }
            Ok(r) => panic!("unexpected status {} {}", r.status, r.body),
            Err(_) => {
                // The update may or may not have landed; the create was acknowledged.
                let consistency = consistency(&created);
                acked.push(Acked {
                    task: created.body,
                    consistency,
                    then_unknown: true,
                });
                break;
            }
        }
        i += 1;
    }
    acked
}

fn chronicle(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(chronicle_bin())
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .expect("run chronicle");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_sigkills_under_load_lose_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let http = Http::default();
    let token = token("crash");
    let mut dice = Dice(0xC0FF_EE00_D15E_A5E5);
    let (mut checked, mut total_acked) = (0usize, 0usize);
    let mut server = Server::start(dir.path(), SECRET);
    for kill in 1..=KILLS {
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                tokio::spawn(load(
                    http.clone(),
                    server.url(""),
                    token.clone(),
                    c,
                    stop.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100 + dice.roll(2500) as u64)).await;
        server.kill();
        stop.store(true, Ordering::Relaxed);
        let mut acked = Vec::new();
        for c in clients {
            acked.extend(c.await.expect("client"));
        }
        total_acked += acked.len();

        let (ok, out) = chronicle(dir.path(), &["audit", "verify"]);
        assert!(ok, "kill {kill}: the store's chains and versions: {out}");

        server = Server::start(dir.path(), SECRET);
        for a in &acked {
            let id = a.task["task_id"].as_str().expect("id");
            let r = http
                .send(
                    "GET",
                    &server.url(&format!("/tasks/{id}")),
                    &token,
                    &[("x-consistency-token", &a.consistency)],
                    None,
                )
                .await
                .expect("get");
            assert_eq!(
                r.status, 200,
                "kill {kill}: acknowledged task lost: {}",
                a.task
            );
            if a.then_unknown && r.body["version"] == 2 {
                assert_eq!(r.body["created_at"], a.task["created_at"], "kill {kill}");
            } else {
                assert_eq!(
                    r.body, a.task,
                    "kill {kill}: the task reads back as acknowledged"
                );
            }
            checked += 1;
        }
        // One more write, read back with its token: the projector has applied all before it.
        let last = http
            .send(
                "POST",
                &server.url("/tasks"),
                &token,
                &[],
                Some(r#"{"title":"after the restart"}"#.into()),
            )
            .await
            .expect("post");
        assert_eq!(last.status, 201);
        let consistency = last.headers["x-consistency-token"]
            .to_str()
            .expect("ascii")
            .to_owned();
        let r = http
            .send(
                "GET",
                &server.url("/tasks?limit=1"),
                &token,
                &[("x-consistency-token", &consistency)],
                None,
            )
            .await
            .expect("list");
        assert_eq!(r.status, 200);
        let (live, _) = live_rows(dir.path());
        let (ok, out) = chronicle(dir.path(), &["replay", "--all"]);
        assert!(ok, "kill {kill}: replay: {out}");
        let (fresh, _) = live_rows(dir.path());
        assert_eq!(
            live, fresh,
            "kill {kill}: the read models equal a fresh replay"
        );
    }
    assert!(server.stop().success(), "clean shutdown on SIGTERM");
    assert!(
        total_acked > 20 * KILLS,
        "the load reached the server: {total_acked} acked"
    );
    eprintln!("crash soak: {KILLS} SIGKILLs survived, {checked} acknowledged writes checked");
}
