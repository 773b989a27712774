//! End to end on the AWS emulator, every part a real process: `serve --backend aws`,
//! `relay`, and two `project` workers. Two tenants' tasks are created, changed and deleted
//! over HTTP; the read models converge to exactly what the embedded backend gives for the
//! same commands, and no event of one tenant reaches the other's views.

use chronicle_tests::aws::test_aws_with_prefix;
use chronicle_tests::process::{Http, HttpReply, Server, Worker};
use domain::{Role, TenantId};
use infra::aws::DynamoReadModelStore;
use projections::{ListQuery, ReadModelStore};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const SECRET: &str = "aws-e2e-secret-aws-e2e-secret-aws-e2e-00";

fn token(tenant: &str, user: &str, role: Role) -> String {
    chronicle_tests::mint(SECRET.as_bytes(), tenant, user, role)
}

fn consistency(r: &HttpReply) -> String {
    r.headers["x-consistency-token"]
        .to_str()
        .expect("ascii")
        .to_owned()
}

/// Runs the same commands for `tenant` against `server`; returns the tasks it ends with,
/// read back through each write's consistency token.
async fn script(http: &Http, server: &Server, tenant: &str) -> Vec<Value> {
    let admin = token(tenant, "root", Role::Admin);
    let member = token(tenant, "mia", Role::Member);
    let url = |p: &str| server.url(p);
    let send = |method: &'static str,
                path: String,
                who: &str,
                body: Option<Value>,
                if_match: Option<&'static str>| {
        let (http, who) = (http.clone(), who.to_owned());
        async move {
            let headers: Vec<(&str, &str)> =
                if_match.map(|v| ("if-match", v)).into_iter().collect();
            http.send(method, &path, &who, &headers, body.map(|b| b.to_string()))
                .await
                .expect("request")
        }
    };
    let a = send(
        "POST",
        url("/tasks"),
        &admin,
        Some(json!({"title": "alpha", "assigned_to": "bob"})),
        None,
    )
    .await;
    let b = send(
        "POST",
        url("/tasks"),
        &member,
        Some(json!({"title": "beta"})),
        None,
    )
    .await;
    let c = send(
        "POST",
        url("/tasks"),
        &admin,
        Some(json!({"title": "gamma", "description": "to go"})),
        None,
    )
    .await;
    for r in [&a, &b, &c] {
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let id = |r: &HttpReply| r.body["task_id"].as_str().expect("id").to_owned();
    let (a_id, b_id, c_id) = (id(&a), id(&b), id(&c));
    let mut writes = vec![
        (a_id.clone(), consistency(&a)),
        (b_id.clone(), consistency(&b)),
    ];

    let r = send(
        "PUT",
        url(&format!("/tasks/{a_id}")),
        &admin,
        Some(json!({"title": "alpha v2", "status": "IN_PROGRESS"})),
        Some("\"1\""),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = send(
        "PUT",
        url(&format!("/tasks/{b_id}")),
        &member,
        Some(json!({"assigned_to": "carol"})),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    writes.push((b_id.clone(), consistency(&r)));
    let r = send(
        "DELETE",
        url(&format!("/tasks/{c_id}")),
        &member,
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 403, "a MEMBER cannot delete");
    let r = send("DELETE", url(&format!("/tasks/{c_id}")), &admin, None, None).await;
    assert_eq!(r.status, 204);
    let deleted = consistency(&r);
    let r = send(
        "PUT",
        url(&format!("/tasks/{a_id}")),
        &admin,
        Some(json!({"status": "DONE"})),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    writes.push((a_id.clone(), consistency(&r)));

    for (task, token) in &writes {
        let r = http
            .send(
                "GET",
                &url(&format!("/tasks/{task}")),
                &admin,
                &[("x-consistency-token", token)],
                None,
            )
            .await
            .expect("get");
        assert_eq!(r.status, 200, "task {task} did not show up: {}", r.body);
    }
    let r = http
        .send(
            "GET",
            &url(&format!("/tasks/{c_id}")),
            &admin,
            &[("x-consistency-token", &deleted)],
            None,
        )
        .await
        .expect("get deleted");
    assert_eq!(
        r.status, 404,
        "the deleted task is gone from the read model"
    );
    let list = http
        .send("GET", &url("/tasks"), &admin, &[], None)
        .await
        .expect("list");
    assert_eq!(list.status, 200);
    list.body["items"].as_array().cloned().unwrap_or_default()
}

/// What must agree across backends: everything but ids and times.
fn normalized(items: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = items
        .iter()
        .map(|t| {
            json!({
                "tenant_id": t["tenant_id"], "title": t["title"], "description": t["description"],
                "status": t["status"], "assigned_to": t["assigned_to"], "created_by": t["created_by"],
                "version": t["version"],
            })
        })
        .collect();
    out.sort_by(|a, b| a["title"].as_str().cmp(&b["title"].as_str()));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_relay_and_two_projectors_converge_to_the_embedded_result() {
    let prefix = format!("e2e{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let aws = test_aws_with_prefix(&prefix).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let http = Http::default();

    let server = Server::start_with(
        dir.path(),
        SECRET,
        // The emulator is shared with the other AWS tests; give the pipeline time.
        &[
            "--backend",
            "aws",
            "--aws-prefix",
            &prefix,
            "--consistency-timeout-ms",
            "30000",
        ],
    );
    let _relay = Worker::start(&[
        "relay",
        "--backend",
        "aws",
        "--aws-prefix",
        &prefix,
        "--interval-ms",
        "50",
    ]);
    let _p1 = Worker::start(&[
        "project",
        "--backend",
        "aws",
        "--aws-prefix",
        &prefix,
        "--wait-seconds",
        "1",
    ]);
    let _p2 = Worker::start(&[
        "project",
        "--backend",
        "aws",
        "--aws-prefix",
        &prefix,
        "--wait-seconds",
        "1",
    ]);

    let embedded_dir = tempfile::tempdir().expect("tempdir");
    let embedded = Server::start(embedded_dir.path(), SECRET);

    let started = Instant::now();
    for tenant in ["acme", "globex"] {
        let on_aws = script(&http, &server, tenant).await;
        let on_embedded = script(&http, &embedded, tenant).await;
        assert_eq!(on_aws.len(), 2, "{on_aws:?}");
        assert!(
            on_aws.iter().all(|t| t["tenant_id"] == tenant),
            "only {tenant}'s tasks: {on_aws:?}"
        );
        assert_eq!(
            normalized(&on_aws),
            normalized(&on_embedded),
            "aws and embedded agree for {tenant}"
        );
    }
    eprintln!("two tenants converged in {:?}", started.elapsed());

    // Straight from the views table: each tenant's rows hold only its own tasks.
    let views = DynamoReadModelStore::new(&aws);
    for tenant in ["acme", "globex"] {
        let t = TenantId::parse(tenant).expect("tenant");
        let rows = views
            .list(
                "tasks",
                &t,
                &ListQuery {
                    search: None,
                    limit: 100,
                    ..ListQuery::default()
                },
            )
            .await
            .expect("list");
        assert_eq!(rows.len(), 2);
        assert!(
            rows.iter()
                .all(|r| r.doc.as_ref().is_some_and(|d| d["tenant_id"] == tenant))
        );
    }
    // A task of one tenant is invisible to the other.
    let acme = token("acme", "root", Role::Admin);
    let globex = token("globex", "root", Role::Admin);
    let acme_tasks = http
        .send("GET", &server.url("/tasks"), &acme, &[], None)
        .await
        .expect("list");
    let some_acme = acme_tasks.body["items"][0]["task_id"]
        .as_str()
        .expect("an acme task")
        .to_owned();
    let peek = http
        .send(
            "GET",
            &server.url(&format!("/tasks/{some_acme}")),
            &globex,
            &[],
            None,
        )
        .await
        .expect("get");
    assert_eq!(peek.status, 404);

    access_on_aws(&http, &server, &prefix).await;

    // The event stream on AWS: a task created after the stream opened arrives once the
    // projector has written its row, woken by the views table's DynamoDB stream (an idle
    // stream looks at the log on its own only every 10 s), and the other tenant's stream
    // stays silent.
    let acme_admin = token("acme", "root", Role::Admin);
    let mut acme = http
        .open_events(&server.url("/events/stream"), &acme_admin)
        .await;
    let mut globex = http
        .open_events(
            &server.url("/events/stream"),
            &token("globex", "root", Role::Admin),
        )
        .await;
    let made = http
        .send(
            "POST",
            &server.url("/tasks"),
            &acme_admin,
            &[],
            Some(json!({"title": "live on aws"}).to_string()),
        )
        .await
        .expect("create");
    assert_eq!(made.status, 201, "{:?}", made.body);
    let live = acme
        .next_event(Duration::from_secs(8))
        .await
        .unwrap_or_else(|| {
            let logs = server.logs.lock().expect("logs");
            let warned: Vec<&String> = logs.iter().filter(|l| l.contains("WARN")).collect();
            panic!("no event before the stream's own 10 s recheck; the server warned: {warned:#?}")
        });
    assert_eq!(live.event.as_deref(), Some("TaskCreated"), "{live:?}");
    let data: Value = serde_json::from_str(&live.data).expect("JSON");
    assert_eq!(data["payload"]["title"], "live on aws", "{data}");
    assert!(
        globex
            .next_event(Duration::from_millis(500))
            .await
            .is_none(),
        "nothing of acme's reaches globex"
    );
    let (_, metrics) = http
        .get_text(&server.url("/metrics"))
        .await
        .expect("metrics");
    let woken: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("chronicle_view_changes_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(woken >= 1.0, "woken by the views table's stream: {metrics}");
}

/// Sign-up, users, sign-in and tenant deletion on the AWS backend: the multi-stream
/// appends run as DynamoDB transactions, and the users view fills through the relay and
/// the SQS projectors.
async fn access_on_aws(http: &Http, server: &Server, prefix: &str) {
    let post = |path: &str, token: &str, body: Value| {
        let url = server.url(path);
        let token = token.to_owned();
        async move {
            http.send("POST", &url, &token, &[], Some(body.to_string()))
                .await
                .expect("POST")
        }
    };
    let signup = post(
        "/tenants",
        "",
        json!({"company_name": "Initech", "admin_email": "root@initech.test",
               "admin_password": chronicle_tests::PASSWORD, "tier": "basic"}),
    )
    .await;
    assert_eq!(signup.status, 201, "{:?}", signup.body);
    let tenant = signup.body["tenant_id"]
        .as_str()
        .expect("tenant")
        .to_owned();
    let admin = signup.body["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let user = json!({"email": "ann@initech.test", "password": chronicle_tests::PASSWORD});
    let ann = post("/users", &admin, user.clone()).await;
    assert_eq!(ann.status, 201, "{:?}", ann.body);

    let users = http
        .send(
            "GET",
            &server.url("/users"),
            &admin,
            &[("x-consistency-token", &consistency(&ann))],
            None,
        )
        .await
        .expect("GET /users");
    assert_eq!(users.status, 200, "{:?}", users.body);
    let emails: Vec<&str> = users.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|u| u["email"].as_str())
        .collect();
    assert_eq!(emails.len(), 2, "{}", users.body);
    assert!(emails.contains(&"ann@initech.test") && emails.contains(&"root@initech.test"));
    // A second ann conflicts inside the DynamoDB transaction. Tried only after the view
    // was checked: moto applies a transaction's puts in place and restores every table if
    // one condition fails, so a relay poll in between can see (and publish) the put that
    // is then rolled back. DynamoDB itself never shows a cancelled transaction's writes.
    let again = post("/users", &admin, user).await;
    assert_eq!(again.status, 409, "a second ann: {:?}", again.body);

    let signin = post(
        "/auth/signin",
        "",
        json!({"tenant_id": tenant, "email": "ann@initech.test", "password": chronicle_tests::PASSWORD}),
    )
    .await;
    assert_eq!(signin.status, 200, "{:?}", signin.body);
    let first = signin.body["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let rotated = post("/auth/refresh", "", json!({"refresh_token": first})).await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.body);
    let reuse = post("/auth/refresh", "", json!({"refresh_token": first})).await;
    assert_eq!(reuse.status, 401);

    // The operator CLI on the AWS backend: suspended calls are 403 within the tenant
    // cache's lifetime, and a reactivation lifts it.
    let cli = |action: &str| {
        let out = std::process::Command::new(chronicle_tests::process::chronicle_bin())
            .args([
                "tenant",
                action,
                "--tenant",
                &tenant,
                "--backend",
                "aws",
                "--aws-prefix",
                prefix,
            ])
            .output()
            .expect("run chronicle tenant");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).expect("JSON")
    };
    assert_eq!(cli("suspend")["status"], "suspended");
    let tasks = server.url("/tasks");
    let within = Duration::from_secs(10);
    let refused = http.get_until(&tasks, &admin, 403, within).await;
    assert_eq!(
        refused.body["type"],
        "urn:chronicle:problem:tenant-suspended"
    );
    assert_eq!(cli("reactivate")["status"], "active");
    assert_eq!(
        http.get_until(&tasks, &admin, 200, within).await.status,
        200
    );

    let gone = http
        .send(
            "DELETE",
            &server.url(&format!("/tenants/{tenant}")),
            &admin,
            &[],
            None,
        )
        .await
        .expect("DELETE");
    assert_eq!(gone.status, 204, "{:?}", gone.body);
    let after = http
        .send("GET", &server.url("/tasks"), &admin, &[], None)
        .await
        .expect("GET");
    assert_eq!(after.status, 403);
    assert_eq!(after.body["type"], "urn:chronicle:problem:tenant-deleted");
}
