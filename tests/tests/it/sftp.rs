//! SFTP imports end to end on the embedded backend, against a real SFTP server (asyncssh
//! from PyPI, `chronicle_tests::sftp`): the connection checked against the server (a wrong
//! host key refused) and stored without its secret; an inbox of a few thousand lines with
//! bad ones imported into the ledger, each bad line reported; the same file again skipped,
//! a changed one imported; and a run cut off mid-file resumed without posting twice.

use crate::ledger::{bank, open};
use axum::http::StatusCode;
use chronicle_tests::sftp::{SftpServer, files_in};
use chronicle_tests::{SignedUp, TestApp};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const HEADER: &str = "account_number,kind,amount,currency,reference,value_date\n";

async fn connect(app: &TestApp, admin: &SignedUp, server: &SftpServer) {
    let r = app
        .put(
            "/integrations/sftp",
            &admin.access,
            &server.connection().to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}

async fn run(app: &TestApp, admin: &SignedUp) -> String {
    let r = app.post("/integrations/sftp/run", &admin.access, "").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert_eq!(r.body["status"], "RUNNING");
    let id = r.body["import_id"].as_str().expect("id").to_owned();
    assert_eq!(
        r.header("location"),
        Some(format!("/integrations/sftp/imports/{id}").as_str())
    );
    id
}

async fn ended(app: &TestApp, admin: &SignedUp, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = app
            .get(
                &format!("/integrations/sftp/imports/{id}"),
                &admin.access,
                None,
            )
            .await;
        if r.status == StatusCode::OK && r.body["status"] != "RUNNING" {
            return r.body;
        }
        assert!(
            Instant::now() < deadline,
            "import {id} never ended: {:?}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn balance(app: &TestApp, admin: &SignedUp, id: &str) -> String {
    let r = app
        .get(&format!("/accounts/{id}"), &admin.access, None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body["balance"].as_str().unwrap_or_default().to_owned()
}

/// Waits until the account's read model shows `want`.
async fn balance_reaches(app: &TestApp, admin: &SignedUp, id: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = balance(app, admin, id).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "balance {got}, not {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_connection_is_checked_and_stored_without_its_secret() {
    let server = SftpServer::start();
    let app = TestApp::start();
    let admin = app
        .register_tenant("Bank", "root@bank.test", "enterprise")
        .await;
    let put = |body: Value| {
        let (app, token) = (&app, admin.access.clone());
        async move {
            app.put("/integrations/sftp", &token, &body.to_string())
                .await
        }
    };
    let mut wrong_key = server.connection();
    wrong_key["host_key_fingerprint"] = json!("SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8");
    let r = put(wrong_key).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(r.body["field"], "host_key_fingerprint");
    assert!(
        r.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&server.fingerprint)),
        "the detail names the key the server showed: {:?}",
        r.body
    );
    let mut wrong_password = server.connection();
    wrong_password["password"] = json!("not it");
    let r = put(wrong_password).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(r.body["field"], "password");
    let mut no_dir = server.connection();
    no_dir["inbox_dir"] = json!("/nowhere");
    let r = put(no_dir).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(r.body["field"], "inbox_dir");
    let mut both = server.connection();
    both["private_key"] = json!(server.client_key);
    assert_eq!(put(both).await.body["field"], "password");
    assert_eq!(
        app.get("/integrations/sftp", &admin.access, None)
            .await
            .status,
        StatusCode::NOT_FOUND,
        "nothing was stored"
    );

    let r = put(server.connection()).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["auth"], "password");
    assert_eq!(r.body["schedule"], "1h");
    let shown = app.get("/integrations/sftp", &admin.access, None).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(
        shown.body["host_key_fingerprint"],
        server.fingerprint.as_str()
    );
    assert!(
        !shown
            .body
            .to_string()
            .contains(chronicle_tests::sftp::PASSWORD)
    );
    assert!(shown.body.get("password").is_none());

    let mut by_key = server.connection();
    by_key.as_object_mut().map(|o| o.remove("password"));
    by_key["private_key"] = json!(server.client_key);
    by_key["schedule"] = json!("off");
    let r = put(by_key).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["auth"], "private_key");
    assert_eq!(r.body["schedule"], "off");
    assert!(!r.body.to_string().contains("PRIVATE KEY"));

    let member = app.member(&admin, "clerk@bank.test").await;
    assert_eq!(
        app.get("/integrations/sftp", &member.access, None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let other = app
        .register_tenant("Other", "root@other.test", "basic")
        .await;
    assert_eq!(
        app.get("/integrations/sftp", &other.access, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete("/integrations/sftp", &admin.access).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete("/integrations/sftp", &admin.access).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.post("/integrations/sftp/run", &admin.access, "")
            .await
            .status,
        StatusCode::NOT_FOUND,
        "no connection, no run"
    );
}

#[tokio::test]
async fn an_inbox_is_imported_once_with_each_bad_line_reported() {
    let server = SftpServer::start();
    let app = TestApp::start();
    let admin = bank(&app, "sftp-import").await;
    let a = open(&app, &admin, json!({"type": "checking", "currency": "PKR"})).await;
    let b = open(&app, &admin, json!({"type": "savings", "currency": "PKR"})).await;
    let (a_id, a_no) = (
        a["account_id"].as_str().expect("value"),
        a["account_number"].as_str().expect("value"),
    );
    let (b_id, b_no) = (
        b["account_id"].as_str().expect("value"),
        b["account_number"].as_str().expect("value"),
    );
    // A number with valid check digits that no account has.
    let unknown = format!("{:012}", a_no.parse::<u64>().expect("value") + 97);
    connect(&app, &admin, &server).await;

    let mut csv = String::from(HEADER);
    let good = 3000u64;
    for i in 0..good {
        let no = if i % 2 == 0 { a_no } else { b_no };
        csv.push_str(&format!("{no},deposit,1.00,PKR,batch1-{i},2026-12-01\n"));
    }
    // Line numbers count the header as 1.
    let bad = [
        (
            format!("{unknown},deposit,1.00,PKR,bad-1,2026-12-01"),
            "no account numbered",
        ),
        (format!("{a_no},deposit,-5,PKR,bad-2,2026-12-01"), "amount"),
        (format!("{a_no},deposit,1.00,USD,bad-3,2026-12-01"), "USD"),
        (
            format!("{b_no},withdrawal,99999.00,PKR,bad-4,2026-12-01"),
            "",
        ),
        (format!("{a_no},refund,1.00,PKR,bad-5,2026-12-01"), "kind"),
        (
            format!("{a_no},deposit,1.00,PKR,bad-6,yesterday"),
            "value_date",
        ),
        (format!("{a_no},deposit,1.00,PKR"), "fields"),
    ];
    let mut bad_lines = Vec::new();
    for (i, (line, _)) in bad.iter().enumerate() {
        csv.push_str(line);
        csv.push('\n');
        bad_lines.push(good + 2 + i as u64);
    }
    // The same reference again: posted once only.
    csv.push_str(&format!("{a_no},deposit,1.00,PKR,batch1-0,2026-12-01\n"));
    server.drop_file("postings-1.csv", &csv);

    let id = run(&app, &admin).await;
    let done = ended(&app, &admin, &id).await;
    assert_eq!(done["status"], "COMPLETED", "{done:?}");
    let file = &done["files"][0];
    assert_eq!(file["file"], "postings-1.csv");
    assert_eq!(file["lines_read"], good + bad.len() as u64 + 1);
    assert_eq!(file["posted"], good, "{file:?}");
    assert_eq!(file["skipped"], 1, "the repeated reference");
    assert_eq!(file["failed"], bad.len());
    let failures = file["failures"].as_array().expect("failures");
    let lines: Vec<u64> = failures.iter().filter_map(|f| f["line"].as_u64()).collect();
    assert_eq!(lines, bad_lines);
    for (f, (_, why)) in failures.iter().zip(&bad) {
        let reason = f["reason"].as_str().unwrap_or_default();
        assert!(
            !reason.is_empty() && reason.contains(why),
            "{f:?} should say {why:?}"
        );
    }
    assert_eq!(file["moved_to"], "/processed/postings-1.csv");
    assert_eq!(files_in(&server.inbox()), Vec::<String>::new());
    assert_eq!(files_in(&server.processed()), ["postings-1.csv"]);
    balance_reaches(&app, &admin, a_id, "1500.00").await;
    balance_reaches(&app, &admin, b_id, "1500.00").await;

    // The same file again (same name, same content): skipped, nothing posted.
    server.drop_file("postings-1.csv", &csv);
    let again = ended(&app, &admin, &run(&app, &admin).await).await;
    assert_eq!(again["status"], "COMPLETED", "{again:?}");
    assert_eq!(again["skipped_files"], json!(["postings-1.csv"]));
    assert_eq!(again["posted"], 0);
    assert_eq!(files_in(&server.inbox()), Vec::<String>::new());
    let second = again["import_id"].as_str().unwrap_or_default();
    assert_eq!(
        files_in(&server.processed()),
        [
            "postings-1.csv".to_owned(),
            format!("postings-1.csv.{second}")
        ],
        "a name taken in the processed directory gets the run's id"
    );

    // A changed file of the same name is new.
    let mut changed = String::from(HEADER);
    changed.push_str(&format!("{a_no},deposit,2.50,PKR,batch2-0,2026-12-02\n"));
    changed.push_str(&format!("{a_no},deposit,1.00,PKR,batch1-2,2026-12-02\n"));
    server.drop_file("postings-1.csv", &changed);
    let third = ended(&app, &admin, &run(&app, &admin).await).await;
    assert_eq!(third["posted"], 1, "{third:?}");
    assert_eq!(third["skipped"], 1, "batch1-2 was posted by the first file");
    balance_reaches(&app, &admin, a_id, "1502.50").await;

    let list = app
        .get("/integrations/sftp/imports", &admin.access, None)
        .await;
    assert_eq!(
        list.body["items"].as_array().map(Vec::len),
        Some(3),
        "{:?}",
        list.body
    );
}

#[tokio::test]
async fn a_run_cut_off_mid_file_resumes_without_posting_twice() {
    let server = SftpServer::start();
    let app = TestApp::start();
    let admin = bank(&app, "sftp-resume").await;
    let a = open(&app, &admin, json!({"type": "checking", "currency": "PKR"})).await;
    let (a_id, a_no) = (
        a["account_id"].as_str().expect("value").to_owned(),
        a["account_number"].as_str().expect("value").to_owned(),
    );
    connect(&app, &admin, &server).await;
    let lines = 4000u64;
    let mut csv = String::from(HEADER);
    for i in 0..lines {
        csv.push_str(&format!("{a_no},deposit,1.00,PKR,resume-{i},2026-12-01\n"));
    }
    server.drop_file("big.csv", &csv);
    let id = run(&app, &admin).await;
    assert_eq!(
        app.post("/integrations/sftp/run", &admin.access, "")
            .await
            .status,
        StatusCode::CONFLICT,
        "one run per tenant at a time"
    );
    // Cut it off once some of the file is posted.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: f64 = balance(&app, &admin, &a_id).await.parse().unwrap_or(0.0);
        if got >= 50.0 {
            assert!(got < lines as f64, "the file was done before the cut");
            break;
        }
        assert!(Instant::now() < deadline, "nothing posted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let app = app.restart(None).await;
    let done = ended(&app, &admin, &id).await;
    assert_eq!(done["status"], "COMPLETED", "{done:?}");
    let file = &done["files"][0];
    assert_eq!(file["lines_read"], lines);
    // What it posted before the cut is skipped as posted when it resumes.
    let (posted, skipped) = (
        file["posted"].as_u64().unwrap_or(0),
        file["skipped"].as_u64().unwrap_or(0),
    );
    assert!(skipped > 0, "{file:?}");
    assert_eq!(posted + skipped, lines, "{file:?}");
    assert_eq!(file["failed"], 0);
    balance_reaches(&app, &admin, &a_id, "4000.00").await;
    assert_eq!(files_in(&server.processed()), ["big.csv"]);
}

/// The imports of the tenant, newest first.
async fn imports(app: &TestApp, admin: &SignedUp) -> Vec<Value> {
    let r = app
        .get("/integrations/sftp/imports", &admin.access, None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn imports_start_on_each_connections_schedule() {
    let server = SftpServer::start();
    // The scheduler looks every 100 ms; each connection says when its run is due.
    let app = TestApp::start_with_sftp_schedule(Duration::from_millis(100));
    let admin = bank(&app, "sftp-scheduled").await;
    let idle = bank(&app, "sftp-unscheduled").await;
    let a = open(&app, &admin, json!({"type": "checking", "currency": "PKR"})).await;
    let (a_id, a_no) = (
        a["account_id"].as_str().expect("value"),
        a["account_number"].as_str().expect("value"),
    );
    let mut csv = String::from(HEADER);
    for i in 0..20 {
        csv.push_str(&format!(
            "{a_no},deposit,1.00,PKR,scheduled-{i},2026-12-01\n"
        ));
    }
    server.drop_file("scheduled.csv", &csv);
    // A tenant whose schedule is off gets no run.
    let mut off = server.connection();
    off["schedule"] = json!("off");
    let r = app
        .put("/integrations/sftp", &idle.access, &off.to_string())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["schedule"], "off");

    // The default schedule (hourly): a first run is due at once.
    connect(&app, &admin, &server).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        if let Some(i) = imports(&app, &admin).await.first() {
            break i["import_id"].as_str().expect("id").to_owned();
        }
        assert!(Instant::now() < deadline, "the scheduler started no import");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let done = ended(&app, &admin, &first).await;
    assert_eq!(done["trigger"], "scheduled", "{done:?}");
    assert_eq!(done["requested_by"], "system:sftp-worker", "{done:?}");
    assert_eq!(done["status"], "COMPLETED", "{done:?}");
    assert_eq!(done["posted"], 20, "{done:?}");
    balance_reaches(&app, &admin, a_id, "20.00").await;

    // Many polls later, the next hourly run is not due yet; a manual run still is.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(imports(&app, &admin).await.len(), 1);
    let manual = ended(&app, &admin, &run(&app, &admin).await).await;
    assert_eq!(manual["trigger"], "manual");
    assert_eq!(imports(&app, &admin).await.len(), 2);
    assert!(imports(&app, &idle).await.is_empty(), "schedule off");

    // Removed, the connection is withdrawn from the schedule.
    let r = app.delete("/integrations/sftp", &admin.access).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(imports(&app, &admin).await.len(), 2);
}
