//! `/analytics/daily` on the embedded backend, where `serve` runs the analytics consumer
//! in-process over the log: a day's orders and revenue, order status changes, tasks, AI
//! queries and their tokens and failures, counted once each; another tenant sees only its
//! own zeros; a rebuild of the figures gives the same; odd ranges are answered, bad dates
//! refused.

use axum::http::StatusCode;
use chronicle_tests::TestApp;
use chronicle_tests::fake_openai::FakeOpenAi;
use chronicle_tests::process::chronicle_bin;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_days_figures_count_each_event_once_and_only_the_tenants_own() {
    let fake = FakeOpenAi::start().await;
    let app = TestApp::start_with_ai(&fake);
    let shop = app
        .register_tenant("Shop", "root@shop.test", "premium")
        .await;
    let other = app
        .register_tenant("Other", "root@other.test", "premium")
        .await;
    let mut token = String::new();
    let mut keep = |r: &chronicle_tests::Reply| {
        if let Some(t) = r.header("x-consistency-token") {
            token = t.to_owned();
        }
    };

    let mut tasks = Vec::new();
    for title in ["a", "b", "c"] {
        let r = app
            .post("/tasks", &shop.access, &json!({"title": title}).to_string())
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
        tasks.push(r.body["task_id"].as_str().expect("id").to_owned());
        keep(&r);
    }
    for status in ["IN_PROGRESS", "DONE"] {
        let r = app
            .put(
                &format!("/tasks/{}", tasks[0]),
                &shop.access,
                &json!({"status": status}).to_string(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        keep(&r);
    }

    let product = json!({"name": "Lamp", "price": "10.00", "category": "Home", "sku": "LAMP-1", "inventory": 50});
    let r = app
        .post("/products", &shop.access, &product.to_string())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let lamp = r.body["product_id"].as_str().expect("id").to_owned();
    let mut orders = Vec::new();
    for quantity in [2, 1] {
        let body = json!({"customer_email": "buyer@example.test",
            "items": [{"product_id": lamp, "quantity": quantity}],
            "shipping_address": {"street": "1 Main Road", "city": "Lahore", "state": "Punjab", "zip": "54000"}});
        let r = app.post("/orders", &shop.access, &body.to_string()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        orders.push(r.body["order_id"].as_str().expect("id").to_owned());
        keep(&r);
    }
    for (order, action) in [(&orders[0], "confirm"), (&orders[1], "cancel")] {
        let r = app
            .post(&format!("/orders/{order}/{action}"), &shop.access, "")
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        keep(&r);
    }

    for prompt in ["how are sales?", "bad-request please"] {
        let r = app
            .post(
                "/ai/query",
                &shop.access,
                &json!({"prompt": prompt}).to_string(),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
        let id = r.body["query_id"].as_str().expect("id").to_owned();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let q = app
                .get(&format!("/ai/query/{id}"), &shop.access, None)
                .await;
            let status = q.body["status"].as_str().unwrap_or_default().to_owned();
            if status == "COMPLETED" || status == "FAILED" {
                break;
            }
            assert!(Instant::now() < deadline, "{:?}", q.body);
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    // The worker's last write is newer than any token kept so far; this one is after it.
    let r = app
        .post("/tasks", &other.access, r#"{"title": "elsewhere"}"#)
        .await;
    keep(&r);

    let today = chrono::Utc::now().date_naive();
    let path = format!(
        "/analytics/daily?from={}&to={today}",
        today.pred_opt().expect("day")
    );
    let got = app.get(&path, &shop.access, Some(&token)).await;
    assert_eq!(got.status, StatusCode::OK, "{:?}", got.body);
    assert_eq!(got.body["currency"], "USD");
    let days = got.body["days"].as_array().expect("days");
    assert_eq!(days.len(), 2, "every day of the range");
    assert_eq!(days[0]["orders_placed"], 0, "yesterday is zeros");
    let day = &days[1];
    let expect = json!({
        "date": today.to_string(),
        "orders_placed": 2,
        "revenue": {"amount": "30.00", "currency": "USD"},
        "orders_by_status": {"pending": 2, "confirmed": 1, "shipped": 0, "delivered": 0, "cancelled": 1},
        "tasks_created": 3,
        "tasks_completed": 1,
        "ai_queries": 2,
        "ai_completed": 1,
        "ai_failures": 1,
        "ai_tokens": 15,
        "sync_runs": 0,
        "sync_failures": 0,
        "sync_records_changed": 0,
    });
    assert_eq!(day, &expect);

    let theirs = app
        .get(
            &format!("/analytics/daily?from={today}&to={today}"),
            &other.access,
            Some(&token),
        )
        .await;
    assert_eq!(theirs.status, StatusCode::OK);
    assert_eq!(theirs.body["days"][0]["tasks_created"], 1);
    assert_eq!(theirs.body["days"][0]["orders_placed"], 0, "not the shop's");

    // Rebuilt from the log, the figures are the same.
    let out = std::process::Command::new(chronicle_bin())
        .args([
            "replay",
            "--all",
            "--projection",
            "analytics_daily",
            "--data-dir",
        ])
        .arg(app.dir.path())
        .output()
        .expect("replay");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = app.get(&path, &shop.access, None).await;
    assert_eq!(&again.body["days"][1], &expect);

    // A range that ends before it starts holds no day; a long one comes 366 days at a time.
    let r = app
        .get(
            &format!(
                "/analytics/daily?from={today}&to={}",
                today.pred_opt().expect("day")
            ),
            &shop.access,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["days"], json!([]));
    let r = app
        .get(
            "/analytics/daily?from=2020-01-01&to=2023-12-31",
            &shop.access,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["days"].as_array().map(Vec::len), Some(366));
    assert_eq!(r.body["days"][365]["date"], "2020-12-31");
    assert_eq!(r.body["next_from"], "2021-01-01");
    for (query, field) in [
        (format!("to={today}"), "from"),
        ("from=yesterday&to=today".to_owned(), "from"),
    ] {
        let r = app
            .get(&format!("/analytics/daily?{query}"), &shop.access, None)
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}: {:?}",
            r.body
        );
        assert_eq!(r.body["field"], Value::from(field), "{query}: {:?}", r.body);
    }
}
