//! `chronicle-bench orders`: PlaceOrder through the HTTP API of the release binary, at
//! `connections` keep-alive connections, first all on one hot product (every order
//! conflicts with every other on that product's stream), then spread over `products`.

use crate::load::Connection;
use crate::start_server;
use anyhow::Context;
use domain::TenantId;
use std::time::Duration;

pub async fn run(connections: usize, run_for: Duration, products: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut child, base) = start_server(dir.path())?;
    let auth = crate::admin_header(&TenantId::parse("bench-orders")?, "buyer")?;
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
        let ids = ids[..spread].to_vec();
        let phase = crate::load::phase(
            &base,
            &headers,
            connections,
            run_for,
            "/orders",
            201,
            move |c, i| {
                format!(
                    r#"{{"customer_email":"c{c}@bench.test","items":[{{"product_id":"{}","quantity":1}}],"shipping_address":{{"street":"1 Bench Road","city":"Karachi","state":"Sindh","zip":"75500"}}}}"#,
                    ids[(c + i * connections) % ids.len()]
                )
            },
        )
        .await?;
        println!(
            "orders: PlaceOrder, {name} ({spread} products), {connections} connections, {:.0}s: {}",
            run_for.as_secs_f64(),
            phase.figures("orders"),
        );
    }
    crate::stop_server(&mut child);
    Ok(())
}
