//! `chronicle-bench orders`: PlaceOrder through the HTTP API of the release binary, at
//! `connections` keep-alive connections, first all on one hot product (every order
//! conflicts with every other on that product's stream), then spread over `products`.

use crate::load::Connection;
use crate::{ms, percentile, start_server};
use anyhow::Context;
use domain::{Role, TenantId, Tier, UserId};
use std::time::{Duration, Instant};

pub async fn run(connections: usize, run_for: Duration, products: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut child, base) = start_server(dir.path())?;
    // An enterprise token: a million orders a month, a hundred thousand products.
    let token = api::TokenKeys::from_secret(crate::SECRET.as_bytes())?.mint_with_tier(
        &TenantId::parse("bench-orders")?,
        &UserId::parse("buyer")?,
        Role::Admin,
        Tier::Enterprise,
        Duration::from_secs(3600),
    )?;
    let auth = format!("Authorization: Bearer {token}");
    let headers = [auth.as_str(), "Content-Type: application/json"];
    let mut setup = Connection::new(&base)?;
    let mut ids = Vec::with_capacity(products);
    for i in 0..products {
        let body = format!(
            r#"{{"name":"Bench {i}","price":"9.99","category":"Bench","sku":"B-{i}","inventory":1000000000}}"#
        );
        let reply = setup
            .send_body("POST", "/products", &headers, body.as_bytes())
            .await?;
        anyhow::ensure!(reply.0.status == 201, "product {i}: {}", reply.0.status);
        let v: serde_json::Value = serde_json::from_slice(&reply.1)?;
        ids.push(v["product_id"].as_str().context("product id")?.to_owned());
    }
    for (name, spread) in [("one hot product", 1), ("spread", products)] {
        let deadline = Instant::now() + run_for;
        let mut tasks = Vec::new();
        for c in 0..connections {
            let mut conn = Connection::new(&base)?;
            let (auth, ids) = (auth.clone(), ids[..spread].to_vec());
            tasks.push(tokio::spawn(async move {
                let headers = [auth.as_str(), "Content-Type: application/json"];
                let (mut latencies, mut errors, mut i) = (Vec::new(), 0u64, c);
                while Instant::now() < deadline {
                    let body = format!(
                        r#"{{"customer_email":"c{c}@bench.test","items":[{{"product_id":"{}","quantity":1}}],"shipping_address":{{"street":"1 Bench Road","city":"Karachi","state":"Sindh","zip":"75500"}}}}"#,
                        ids[i % ids.len()]
                    );
                    let reply = conn.send("POST", "/orders", &headers, body.as_bytes()).await?;
                    if reply.status == 201 {
                        latencies.push(reply.latency);
                    } else {
                        errors += 1;
                    }
                    i += connections;
                }
                anyhow::Ok((latencies, errors))
            }));
        }
        let (mut all, mut errors) = (Vec::new(), 0);
        for t in tasks {
            let (l, e) = t.await??;
            all.extend(l);
            errors += e;
        }
        all.sort();
        println!(
            "orders: PlaceOrder, {name} ({spread} products), {connections} connections, {:.0}s: {:.0} orders/s ({} placed, {errors} refused or failed), latency p50 {:.2} ms, p99 {:.2} ms",
            run_for.as_secs_f64(),
            all.len() as f64 / run_for.as_secs_f64(),
            all.len(),
            ms(percentile(&all, 0.50)),
            ms(percentile(&all, 0.99)),
        );
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    Ok(())
}
