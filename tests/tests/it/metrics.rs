//! `/metrics` of the running binary: requests, commands and appended events are each
//! counted under their labels, and every request of a kind adds to the same series.

use chronicle_tests::mint;
use chronicle_tests::process::{Http, Server};
use domain::Role;
use std::collections::BTreeMap;

const SECRET: &str = "metrics-secret-metrics-secret-0123456";

/// The value of the sample `name{labels}` in a Prometheus text page, whatever the order
/// of its labels; `None` when there is no such series.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<&str, &str> = labels.iter().copied().collect();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, labels) = series.split_once('{').unwrap_or((series, "}"));
            if metric != name {
                return None;
            }
            let got: BTreeMap<&str, &str> = labels
                .strip_suffix('}')?
                .split(',')
                .filter_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    Some((k, v.trim_matches('"')))
                })
                .collect();
            if got == want {
                value.parse().ok()
            } else {
                None
            }
        })
}

#[tokio::test]
async fn requests_commands_and_events_are_counted_by_label() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), SECRET);
    let http = Http::default();
    let admin = mint(SECRET.as_bytes(), "metered", "ada", Role::Admin);
    let call = |method: &'static str, path: String, body: Option<&'static str>| {
        let (http, admin, url) = (http.clone(), admin.clone(), server.url(&path));
        async move {
            http.send(method, &url, &admin, &[], body.map(str::to_owned))
                .await
                .expect("request")
        }
    };
    let mut ids = Vec::new();
    for body in [r#"{"title":"one"}"#, r#"{"title":"two"}"#] {
        let created = call("POST", "/tasks".into(), Some(body)).await;
        assert_eq!(created.status, 201, "{:?}", created.body);
        ids.push(
            created.body["task_id"]
                .as_str()
                .map(str::to_owned)
                .expect("id"),
        );
    }
    let updated = call(
        "PUT",
        format!("/tasks/{}", ids[0]),
        Some(r#"{"status":"DONE"}"#),
    )
    .await;
    assert_eq!(updated.status, 200, "{:?}", updated.body);
    let deleted = call("DELETE", format!("/tasks/{}", ids[1]), None).await;
    assert_eq!(deleted.status, 204);
    // A change to a deleted task: the aggregate refuses it, and nothing is appended.
    let refused = call(
        "PUT",
        format!("/tasks/{}", ids[1]),
        Some(r#"{"title":"again"}"#),
    )
    .await;
    assert_eq!(refused.status, 410, "{:?}", refused.body);
    assert_eq!(
        refused.body["type"].as_str().map(|t| t.ends_with("gone")),
        Some(true)
    );
    // Refused at the door (empty title): no command runs.
    let invalid = call("POST", "/tasks".into(), Some(r#"{"title":""}"#)).await;
    assert_eq!(invalid.status, 422);

    let (status, text) = http
        .get_text(&server.url("/metrics"))
        .await
        .expect("/metrics");
    assert_eq!(status, 200);
    let commands = |outcome| {
        sample(
            &text,
            "chronicle_commands_total",
            &[("aggregate", "task"), ("outcome", outcome)],
        )
    };
    assert_eq!(commands("ok"), Some(4.0), "{text}");
    assert_eq!(commands("rejected"), Some(1.0), "{text}");
    let events = |t| {
        sample(
            &text,
            "chronicle_events_appended_total",
            &[("event_type", t)],
        )
    };
    assert_eq!(events("TaskCreated"), Some(2.0), "{text}");
    assert_eq!(events("TaskDeleted"), Some(1.0), "{text}");
    let requests = |method, route, status| {
        sample(
            &text,
            "chronicle_http_requests_total",
            &[("method", method), ("route", route), ("status", status)],
        )
    };
    assert_eq!(requests("POST", "/tasks", "201"), Some(2.0), "{text}");
    assert_eq!(requests("POST", "/tasks", "422"), Some(1.0), "{text}");
    assert_eq!(requests("PUT", "/tasks/{id}", "410"), Some(1.0), "{text}");
    // The analytics consumer's lag, in log positions, sampled each second.
    assert!(
        sample(&text, "chronicle_analytics_positions_behind", &[]).is_some_and(|v| v >= 0.0),
        "{text}"
    );
    // How late the request runtime ran a due timer, sampled every 10 ms from the start.
    assert!(
        sample(&text, "chronicle_runtime_delay_seconds_count", &[]).is_some_and(|n| n >= 1.0),
        "{text}"
    );
}

#[tokio::test]
async fn the_orgs_salesforce_api_usage_is_exported_per_tenant_and_its_secret_never_logged() {
    use chronicle_tests::fake_salesforce::{Account, FakeSalesforce};
    let org = FakeSalesforce::start(10).await;
    org.put(Account::new(
        "001MET00000000AAA",
        "Metered",
        "Karachi",
        chrono::Utc::now() - chrono::Duration::hours(1),
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_logging(dir.path(), SECRET, &[], "debug");
    let http = Http::default();
    let token = mint(SECRET.as_bytes(), "metered", "mia", Role::Admin);
    let body = serde_json::json!({"login_url": org.url, "client_id": org.client_id, "client_secret": org.client_secret});
    let connected = http
        .send(
            "PUT",
            &server.url("/salesforce/connection"),
            &token,
            &[],
            Some(body.to_string()),
        )
        .await
        .expect("PUT");
    assert_eq!(connected.status, 200, "{:?}", connected.body);
    let started = http
        .send("POST", &server.url("/salesforce/sync"), &token, &[], None)
        .await
        .expect("POST");
    assert_eq!(started.status, 202, "{:?}", started.body);
    let id = started.body["sync_id"].as_str().expect("id").to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let s = http
            .send(
                "GET",
                &server.url(&format!("/salesforce/sync/{id}")),
                &token,
                &[],
                None,
            )
            .await
            .expect("GET");
        if s.body["status"] == "COMPLETED" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{:?}", s.body);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, text) = http
        .get_text(&server.url("/metrics"))
        .await
        .expect("metrics");
    assert_eq!(status, 200);
    let used = sample(
        &text,
        "chronicle_salesforce_api_requests_used",
        &[("tenant_id", "metered")],
    );
    assert!(used.is_some_and(|u| u >= 2.0), "{used:?} in {text}");
    assert_eq!(
        sample(
            &text,
            "chronicle_salesforce_api_requests_limit",
            &[("tenant_id", "metered")]
        ),
        Some(15000.0)
    );
    let logs = server.logs.clone();
    assert!(server.stop().success());
    let lines = logs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    assert!(lines.iter().any(|l| l.contains("Salesforce sync ended")));
    assert!(
        lines.iter().all(|l| !l.contains(&org.client_secret)),
        "a log line holds the client secret"
    );
}
