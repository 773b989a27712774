//! Products and orders through the HTTP API on the embedded backend: the catalogue's rules,
//! PlaceOrder's atomic stock reservation, the workflow, tier limits, and no overselling
//! under concurrency, with read models that equal a fresh replay of the store.

use axum::http::{Method, StatusCode};
use chronicle_tests::{SignedUp, TestApp};
use commands::EventStore;
use domain::TenantId;
use infra::sqlite::SqliteReadModelStore;
use projections::{
    ListQuery, ProjectionProgress, Projector, ProjectorConfig, ReadModelStore,
    orders::OrdersProjection, products::ProductsProjection,
};
use serde_json::{Value, json};
use std::sync::Arc;

fn address() -> Value {
    json!({"street": "1 Main Road", "city": "Karachi", "state": "Sindh", "zip": "75500"})
}

async fn product(app: &TestApp, admin: &SignedUp, sku: &str, price: &str, stock: u32) -> String {
    let body = json!({"name": format!("Item {sku}"), "price": price, "category": "Electronics",
        "sku": sku, "inventory": stock});
    let reply = app
        .post("/products", &admin.access, &body.to_string())
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let id = reply.body["product_id"].as_str().expect("id").to_owned();
    // Read once with the write's consistency token, so that later reads without one (by
    // any caller) find the product in the read model.
    let token = reply.token();
    let seen = app
        .get(&format!("/products/{id}"), &admin.access, Some(&token))
        .await;
    assert_eq!(seen.status, StatusCode::OK, "{:?}", seen.body);
    id
}

fn order(lines: &[(&str, u32)]) -> String {
    let items: Vec<Value> = lines
        .iter()
        .map(|(id, q)| json!({"product_id": id, "quantity": q}))
        .collect();
    json!({"customer_email": "buyer@example.test", "items": items, "shipping_address": address()})
        .to_string()
}

async fn stock(app: &TestApp, who: &SignedUp, id: &str) -> u64 {
    let reply = app.get(&format!("/products/{id}"), &who.access, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body["inventory"].as_u64().expect("inventory")
}

#[tokio::test]
async fn the_catalogue_keeps_skus_unique_money_exact_and_stock_above_zero() {
    let app = TestApp::start();
    let shop = app
        .register_tenant("Shop", "root@shop.test", "premium")
        .await;
    let ann = app.member(&shop, "ann@shop.test").await;
    let laptop = product(&app, &shop, "LAP-1", "999.99", 3).await;
    let dup = json!({"name": "Other", "price": "1.00", "category": "X", "sku": "LAP-1"});
    let reply = app.post("/products", &shop.access, &dup.to_string()).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "a second LAP-1");
    for (price, why) in [
        (json!(19.99), "a JSON number"),
        (json!("-1.00"), "a negative price"),
        (json!("1.999"), "three places"),
    ] {
        let body = json!({"name": "X", "price": price, "category": "X", "sku": "X-1"});
        let reply = app.post("/products", &shop.access, &body.to_string()).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{why}");
        assert_eq!(reply.body["field"], "price", "{why}");
    }
    let by_member = json!({"name": "X", "price": "1.00", "category": "X", "sku": "M-1"});
    let reply = app
        .post("/products", &ann.access, &by_member.to_string())
        .await;
    assert_eq!(
        reply.status,
        StatusCode::FORBIDDEN,
        "product writes are ADMIN's"
    );
    let got = app
        .get(&format!("/products/{laptop}"), &ann.access, None)
        .await;
    assert_eq!(got.status, StatusCode::OK, "MEMBERs read");
    assert_eq!(
        got.body["price"],
        json!({"amount": "999.99", "currency": "USD"})
    );

    let adjust = |delta: i64| json!({"delta": delta, "reason": "count"}).to_string();
    let path = format!("/products/{laptop}/inventory");
    let reply = app.post(&path, &shop.access, &adjust(-4)).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        reply.body
    );
    assert_eq!(reply.body["field"], "delta");
    let reply = app.post(&path, &shop.access, &adjust(7)).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["inventory"], 10);

    let stale = app
        .send(
            Method::PUT,
            &format!("/products/{laptop}"),
            Some(&shop.access),
            &[("if-match", "\"1\"")],
            Some(r#"{"price":"899.00"}"#),
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    let token = reply
        .header("x-consistency-token")
        .expect("token")
        .to_owned();
    let found = app.get("/products?q=lap", &shop.access, Some(&token)).await;
    assert_eq!(
        found.body["items"].as_array().map(Vec::len),
        Some(1),
        "{:?}",
        found.body
    );
    let none = app
        .get("/products?category=Books", &shop.access, Some(&token))
        .await;
    assert_eq!(none.body["items"].as_array().map(Vec::len), Some(0));

    let other = app
        .register_tenant("Other", "root@other.test", "basic")
        .await;
    let hidden = app
        .get(&format!("/products/{laptop}"), &other.access, None)
        .await;
    assert_eq!(
        hidden.status,
        StatusCode::NOT_FOUND,
        "another tenant's product"
    );
    let gone = app
        .delete(&format!("/products/{laptop}"), &shop.access)
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    let again = app
        .delete(&format!("/products/{laptop}"), &shop.access)
        .await;
    assert_eq!(again.status, StatusCode::GONE);
}

#[tokio::test]
async fn an_order_prices_its_lines_at_order_time_and_what_is_no_order_writes_nothing() {
    let app = TestApp::start();
    let shop = app
        .register_tenant("Shop", "root@shop.test", "premium")
        .await;
    let a = product(&app, &shop, "A-1", "19.99", 5).await;
    let b = product(&app, &shop, "B-1", "0.10", 2).await;
    let placed = app
        .post("/orders", &shop.access, &order(&[(&a, 2), (&b, 1)]))
        .await;
    assert_eq!(placed.status, StatusCode::CREATED, "{:?}", placed.body);
    assert_eq!(placed.body["status"], "pending");
    assert_eq!(placed.body["total_amount"]["amount"], "40.08");
    assert_eq!(placed.body["currency"], "USD");
    assert_eq!(placed.body["items"][0]["unit_price"]["amount"], "19.99");
    assert_eq!(placed.body["items"][0]["subtotal"]["amount"], "39.98");
    assert_eq!(placed.body["items"][1]["product_name"], "Item B-1");
    let token = placed
        .header("x-consistency-token")
        .expect("token")
        .to_owned();
    let after = app
        .get(&format!("/products/{a}"), &shop.access, Some(&token))
        .await;
    assert_eq!(after.body["inventory"], 3, "the order reserved 2 of 5");
    assert_eq!(stock(&app, &shop, &a).await, 3);

    let missing = "00000000-0000-7000-8000-000000000000";
    let many: Vec<(&str, u32)> = (0..101).map(|_| (missing, 1)).collect();
    for (body, why) in [
        (order(&[(&a, 4)]), "more than the stock"),
        (order(&[]), "no lines"),
        (order(&[(&a, 1), (&a, 1)]), "a product twice"),
        (order(&[(missing, 1)]), "an unknown product"),
        (order(&many), "over 100 lines"),
        (order(&[(&a, 0)]), "a zero quantity"),
    ] {
        let reply = app.post("/orders", &shop.access, &body).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{why}: {:?}",
            reply.body
        );
    }
    let tenant = TenantId::parse(shop.tenant_id.as_str()).expect("tenant");
    let feed = app
        .embedded
        .events
        .read_tenant_feed(&tenant, &commands::FeedCursor::start(), 10_000)
        .await
        .expect("feed");
    let orders = feed
        .events
        .iter()
        .filter(|e| e.event_type == "OrderPlaced")
        .count();
    let reserved = feed
        .events
        .iter()
        .filter(|e| e.event_type == "InventoryReserved")
        .count();
    assert_eq!((orders, reserved), (1, 2), "refused orders wrote nothing");

    // A retried order under its key answers the first order and reserves nothing more.
    let order_b = order(&[(&b, 1)]);
    let send = || {
        app.send(
            Method::POST,
            "/orders",
            Some(&shop.access),
            &[("idempotency-key", "order-b")],
            Some(&order_b),
        )
    };
    let (first, retry) = (send().await, send().await);
    assert_eq!(retry.status, StatusCode::CREATED, "{:?}", retry.body);
    assert_eq!(retry.body["order_id"], first.body["order_id"]);
    let token = first
        .header("x-consistency-token")
        .expect("token")
        .to_owned();
    let b_now = app
        .get(&format!("/products/{b}"), &shop.access, Some(&token))
        .await;
    assert_eq!(
        b_now.body["inventory"], 0,
        "2 - 1 - 1: the retry reserved nothing"
    );

    // An amount past the maximum is refused, never wrapped.
    let dear = product(&app, &shop, "GOLD-1", "999999999.99", 1_000_000).await;
    let huge = app
        .post("/orders", &shop.access, &order(&[(&dear, 1_000_000)]))
        .await;
    assert_eq!(
        huge.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        huge.body
    );
    assert!(
        huge.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("exceeds")
    );

    // A later price change leaves the placed order's lines as they were.
    let reprice = app
        .put(
            &format!("/products/{a}"),
            &shop.access,
            r#"{"price":"25.00"}"#,
        )
        .await;
    assert_eq!(reprice.status, StatusCode::OK);
    let id = placed.body["order_id"].as_str().expect("id");
    let token = placed.header("x-consistency-token").expect("token");
    let read = app
        .get(&format!("/orders/{id}"), &shop.access, Some(token))
        .await;
    assert_eq!(read.body["items"][0]["unit_price"]["amount"], "19.99");
}

#[tokio::test]
async fn the_workflow_moves_orders_on_and_a_cancel_gives_the_stock_back() {
    let app = TestApp::start();
    let shop = app
        .register_tenant("Shop", "root@shop.test", "premium")
        .await;
    let ann = app.member(&shop, "ann@shop.test").await;
    let bob = app.member(&shop, "bob@shop.test").await;
    let a = product(&app, &shop, "A-1", "5.00", 3).await;
    let first = app.post("/orders", &ann.access, &order(&[(&a, 1)])).await;
    assert_eq!(first.status, StatusCode::CREATED, "MEMBERs place orders");
    let id = first.body["order_id"].as_str().expect("id").to_owned();
    assert_eq!(
        app.post(&format!("/orders/{id}/confirm"), &ann.access, "")
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.post(&format!("/orders/{id}/cancel"), &bob.access, "")
            .await
            .status,
        StatusCode::FORBIDDEN,
        "another's order"
    );
    let early = app
        .post(&format!("/orders/{id}/ship"), &shop.access, "")
        .await;
    assert_eq!(early.status, StatusCode::CONFLICT);
    let detail = early.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("pending") && detail.contains("shipped"),
        "{detail}"
    );
    assert_eq!(
        app.post(&format!("/orders/{id}/confirm"), &shop.access, "")
            .await
            .status,
        StatusCode::OK
    );
    let readdress = app
        .put(
            &format!("/orders/{id}"),
            &shop.access,
            &json!({"shipping_address": address()}).to_string(),
        )
        .await;
    assert_eq!(readdress.status, StatusCode::CONFLICT, "only while pending");
    assert_eq!(
        app.post(&format!("/orders/{id}/cancel"), &ann.access, "")
            .await
            .status,
        StatusCode::FORBIDDEN,
        "confirmed: ADMIN's"
    );
    let cancelled = app
        .put(
            &format!("/orders/{id}"),
            &shop.access,
            r#"{"status":"cancelled"}"#,
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{:?}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    let token = cancelled.header("x-consistency-token").expect("token");
    let restocked = app
        .get(&format!("/products/{a}"), &shop.access, Some(token))
        .await;
    let second = app.post("/orders", &ann.access, &order(&[(&a, 1)])).await;
    let second_id = second.body["order_id"].as_str().expect("id").to_owned();
    assert_eq!(
        app.post(&format!("/orders/{second_id}/cancel"), &ann.access, "")
            .await
            .status,
        StatusCode::OK,
        "a MEMBER cancels a pending order they placed"
    );
    let third = app.post("/orders", &bob.access, &order(&[(&a, 1)])).await;
    let third_id = third.body["order_id"].as_str().expect("id").to_owned();
    for step in ["confirm", "ship", "deliver"] {
        let moved = app
            .post(&format!("/orders/{third_id}/{step}"), &shop.access, "")
            .await;
        assert_eq!(moved.status, StatusCode::OK, "{step}: {:?}", moved.body);
    }
    let late = app
        .post(&format!("/orders/{third_id}/cancel"), &shop.access, "")
        .await;
    assert_eq!(
        late.status,
        StatusCode::CONFLICT,
        "delivered orders stay delivered"
    );
    let _ = restocked;
    let tenant = TenantId::parse(shop.tenant_id.as_str()).expect("tenant");
    let feed = app
        .embedded
        .events
        .read_tenant_feed(&tenant, &commands::FeedCursor::start(), 10_000)
        .await
        .expect("feed");
    let released = feed
        .events
        .iter()
        .filter(|e| e.event_type == "InventoryReleased")
        .count();
    assert_eq!(released, 2, "each cancel released its line");
    let last = feed
        .events
        .iter()
        .rfind(|e| e.stream_id.kind() == "product")
        .expect("product");
    assert_eq!(last.payload["inventory"], 2, "3 - 3 placed + 2 cancelled");
}

#[tokio::test]
async fn max_products_lets_exactly_the_allowed_number_through_at_the_edge() {
    let app = TestApp::start();
    let shop = app.register_tenant("Shop", "root@shop.test", "basic").await;
    for i in 0..96 {
        product(&app, &shop, &format!("S-{i}"), "1.00", 0).await;
    }
    let attempts = (0..8).map(|i| {
        let body =
            json!({"name": "Edge", "price": "1.00", "category": "X", "sku": format!("E-{i}")});
        let app = &app;
        let access = shop.access.clone();
        async move { app.post("/products", &access, &body.to_string()).await }
    });
    let replies = futures::future::join_all(attempts).await;
    let ok = replies
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .count();
    let refused: Vec<&chronicle_tests::Reply> = replies
        .iter()
        .filter(|r| r.status == StatusCode::FORBIDDEN)
        .collect();
    assert_eq!(
        (ok, refused.len()),
        (4, 4),
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(refused[0].body["limit"], "max_products");
    assert_eq!(refused[0].body["value"], 100);
}

#[tokio::test]
async fn max_orders_counts_the_month_exactly_at_the_edge() {
    let app = TestApp::start();
    let shop = app.register_tenant("Shop", "root@shop.test", "basic").await;
    // Orders of two products, so that the count is not one product's stream.
    let a = product(&app, &shop, "A-1", "1.00", 2_000).await;
    let b = product(&app, &shop, "B-1", "1.00", 2_000).await;
    for i in 0..996 {
        let p = if i % 2 == 0 { &a } else { &b };
        let reply = app.post("/orders", &shop.access, &order(&[(p, 1)])).await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "order {i}: {:?}",
            reply.body
        );
    }
    let attempts = (0..8).map(|i| {
        let (app, access) = (&app, shop.access.clone());
        let p = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move { app.post("/orders", &access, &order(&[(&p, 1)])).await }
    });
    let replies = futures::future::join_all(attempts).await;
    let statuses: Vec<StatusCode> = replies.iter().map(|r| r.status).collect();
    let ok = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    assert_eq!(ok, 4, "1000 a month on basic: {statuses:?}");
    let refused = replies
        .iter()
        .find(|r| r.status == StatusCode::FORBIDDEN)
        .expect("refused");
    assert_eq!(refused.body["limit"], "max_orders");
    assert_eq!(refused.body["value"], 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_overselling_under_contention_and_the_read_models_equal_a_replay() {
    let app = Arc::new(TestApp::start());
    let shop = app
        .register_tenant("Shop", "root@shop.test", "premium")
        .await;
    let hot = product(&app, &shop, "HOT-1", "2.50", 50).await;
    let limit = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200u32 {
        let (app, limit, hot, access) =
            (app.clone(), limit.clone(), hot.clone(), shop.access.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire().await.expect("permit");
            let placed = app.post("/orders", &access, &order(&[(&hot, 1)])).await;
            let mut cancelled = false;
            if placed.status == StatusCode::CREATED && i % 5 == 0 {
                let id = placed.body["order_id"].as_str().expect("id");
                let reply = app.post(&format!("/orders/{id}/cancel"), &access, "").await;
                assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
                cancelled = true;
            }
            (placed.status, placed.body, cancelled)
        });
    }
    let (mut placed, mut refused, mut cancels) = (0u64, 0u64, 0u64);
    while let Some(done) = tasks.join_next().await {
        let (status, body, cancelled) = done.expect("task");
        match status {
            StatusCode::CREATED => placed += 1,
            StatusCode::UNPROCESSABLE_ENTITY => {
                assert!(
                    body["detail"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("in stock"),
                    "refused only for stock: {body}"
                );
                refused += 1;
            }
            other => panic!("an order failed for contention or worse: {other} {body}"),
        }
        cancels += u64::from(cancelled);
    }
    assert_eq!(placed + refused, 200);
    assert!(placed >= 50, "every unit was sold: {placed}");
    let tenant = TenantId::parse(shop.tenant_id.as_str()).expect("tenant");
    let (state, _) = app
        .embedded
        .state
        .commands
        .state::<domain::product::Product>(&tenant, &commands::commerce::product_stream(&hot))
        .await
        .expect("product");
    assert_eq!(
        u64::from(state.inventory),
        50 + cancels - placed,
        "stock = 50 - placed + cancelled"
    );
    if refused > 0 {
        assert!(state.inventory <= u32::try_from(cancels).unwrap_or(u32::MAX));
    }

    // The live read models, once caught up, equal a replay of the store into fresh ones.
    let head = app
        .embedded
        .events
        .read_tenant_feed(&tenant, &commands::FeedCursor::start(), 100_000)
        .await
        .expect("feed");
    let last = head.events.last().expect("events");
    let token = format!("{}.{}.{}", last.position, last.version, last.stream_id);
    let _ = app.get("/orders?limit=1", &shop.access, Some(&token)).await;
    let fresh_dir = tempfile::tempdir().expect("dir");
    let fresh = SqliteReadModelStore::open(&fresh_dir.path().join("views.db")).expect("views");
    for projection in [
        Arc::new(ProductsProjection) as Arc<dyn projections::Projection>,
        Arc::new(OrdersProjection),
    ] {
        let name = projection.name();
        Projector::new(
            projection.clone(),
            Arc::new(fresh.clone()),
            Arc::new(app.embedded.events.clone()),
            ProjectionProgress::default(),
            ProjectorConfig::default(),
        )
        .catch_up(&app.embedded.events)
        .await
        .expect("replay");
        let all = ListQuery {
            filters: vec![],
            search: None,
            within: None,
            after: None,
            limit: 1000,
        };
        let live = app
            .embedded
            .views
            .list(name, &tenant, &all)
            .await
            .expect("live");
        let replayed = fresh.list(name, &tenant, &all).await.expect("replayed");
        assert!(!live.is_empty());
        assert_eq!(
            live.iter()
                .map(|r| (&r.row_id, r.version, &r.doc))
                .collect::<Vec<_>>(),
            replayed
                .iter()
                .map(|r| (&r.row_id, r.version, &r.doc))
                .collect::<Vec<_>>(),
            "{name}: live equals replay"
        );
        // Summary rows count the changes they took, which depends on batching: their
        // figures must agree.
        for tally_view in projection.tally_views() {
            let live = app
                .embedded
                .views
                .list(tally_view, &tenant, &all)
                .await
                .expect("live");
            let replayed = fresh
                .list(tally_view, &tenant, &all)
                .await
                .expect("replayed");
            assert!(!live.is_empty(), "{tally_view} has rows");
            assert_eq!(
                live.iter().map(|r| (&r.row_id, &r.doc)).collect::<Vec<_>>(),
                replayed
                    .iter()
                    .map(|r| (&r.row_id, &r.doc))
                    .collect::<Vec<_>>(),
                "{tally_view}: live equals replay"
            );
        }
    }
}

#[tokio::test]
async fn the_summary_books_revenue_delivered_revenue_statuses_and_top_products() {
    let app = TestApp::start();
    let shop = app
        .register_tenant("Shop", "root@shop.test", "premium")
        .await;
    let a = product(&app, &shop, "A-1", "10.00", 100).await;
    let b = product(&app, &shop, "B-1", "2.50", 100).await;
    let placed = |lines: Vec<(String, u32)>| {
        let app = &app;
        let access = shop.access.clone();
        async move {
            let lines: Vec<(&str, u32)> = lines.iter().map(|(p, q)| (p.as_str(), *q)).collect();
            let reply = app.post("/orders", &access, &order(&lines)).await;
            assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
            reply.body["order_id"].as_str().expect("id").to_owned()
        }
    };
    let first = placed(vec![(a.clone(), 2), (b.clone(), 2)]).await; // 25.00, delivered
    let second = placed(vec![(b.clone(), 4)]).await; // 10.00, cancelled
    placed(vec![(a.clone(), 1)]).await; // 10.00, pending
    let mut last = None;
    for step in ["confirm", "ship", "deliver"] {
        last = Some(
            app.post(&format!("/orders/{first}/{step}"), &shop.access, "")
                .await,
        );
    }
    assert_eq!(last.as_ref().map(|r| r.status), Some(StatusCode::OK));
    let cancelled = app
        .post(&format!("/orders/{second}/cancel"), &shop.access, "")
        .await;
    let token = cancelled
        .header("x-consistency-token")
        .expect("token")
        .to_owned();
    let today = chrono::Utc::now().date_naive();
    let summary = app
        .get(
            &format!("/analytics/summary?from={today}&to={today}"),
            &shop.access,
            Some(&token),
        )
        .await;
    assert_eq!(summary.status, StatusCode::OK, "{:?}", summary.body);
    let s = &summary.body;
    assert_eq!(
        s["revenue_booked"],
        json!({"amount": "35.00", "currency": "USD"})
    );
    assert_eq!(s["revenue_delivered"]["amount"], "25.00");
    assert_eq!(s["orders_by_status"]["delivered"], 1);
    assert_eq!(s["orders_by_status"]["cancelled"], 1);
    assert_eq!(s["orders_by_status"]["pending"], 1);
    assert_eq!(s["orders_by_status"]["shipped"], 0);
    assert_eq!(s["top_products"][0]["product_id"], a.as_str());
    assert_eq!(s["top_products"][0]["revenue"]["amount"], "30.00");
    assert_eq!(s["top_products"][1]["units"], 2);
    let yesterday = today.pred_opt().expect("a day before");
    let earlier = app
        .get(
            &format!("/analytics/summary?to={yesterday}"),
            &shop.access,
            None,
        )
        .await;
    assert_eq!(earlier.body["revenue_booked"]["amount"], "0.00");
    let bad = app
        .get(
            &format!("/analytics/summary?from={today}&to={yesterday}"),
            &shop.access,
            None,
        )
        .await;
    assert_eq!(
        bad.status,
        StatusCode::OK,
        "a range from after to holds no day"
    );
    assert_eq!(bad.body["revenue_booked"]["amount"], "0.00");
    let malformed = app
        .get("/analytics/summary?from=yesterday", &shop.access, None)
        .await;
    assert_eq!(malformed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(malformed.body["field"], "from");
}
