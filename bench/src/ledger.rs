//! `chronicle-bench ledger`: transfers (`POST /transactions`, kind transfer, one atomic
//! append over both account streams and the transaction's) through the HTTP API of the
//! release binary, at `connections` keep-alive connections: spread over `accounts`
//! accounts, then all between two hot accounts (every transfer conflicts with every other
//! on both streams).
//!
//! Accounts belong to a client, which comes from Salesforce in production; the bench writes
//! that one client into the fresh data dir through the command pipeline before the server
//! starts, then opens and funds every account over HTTP.

use crate::load::Connection;
use crate::start_server;
use anyhow::Context;
use commands::CommandHandler;
use domain::customer::{Customer, CustomerCommand, CustomerFields};
use domain::{Actor, Role, TenantId, UserId};
use infra::sqlite::SqliteEventStore;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENT: &str = "001BENCHLEDGER0AAA";

pub async fn run(connections: usize, run_for: Duration, accounts: usize) -> anyhow::Result<()> {
    anyhow::ensure!(accounts >= 2, "a transfer needs two accounts");
    let dir = tempfile::tempdir()?;
    let tenant = TenantId::parse("bench-ledger")?;
    seed_client(dir.path(), &tenant).await?;
    let (mut child, base) = start_server(dir.path())?;
    let auth = crate::admin_header(&tenant, "treasurer")?;
    let headers = [auth.as_str(), "Content-Type: application/json"];
    let mut setup = Connection::new(&base)?;
    let mut ids = Vec::with_capacity(accounts);
    let started = Instant::now();
    while ids.len() < accounts {
        let (reply, body) = setup
            .send_body(
                "POST",
                &format!("/customers/{CLIENT}/accounts"),
                &headers,
                br#"{"type":"checking","currency":"PKR"}"#,
            )
            .await?;
        match reply.status {
            201 => {
                let v: serde_json::Value = serde_json::from_slice(&body)?;
                ids.push(v["account_id"].as_str().context("account id")?.to_owned());
            }
            // The client reaches the read model a moment after the server starts.
            404 if ids.is_empty() && started.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            s => anyhow::bail!("open an account: {s}: {}", String::from_utf8_lossy(&body)),
        }
    }
    for (i, id) in ids.iter().enumerate() {
        let body = format!(
            r#"{{"kind":"deposit","account_id":"{id}","amount":"1000000.00","currency":"PKR","reference":"FUND-{i}","value_date":"2026-12-01"}}"#
        );
        let (reply, b) = setup
            .send_body("POST", "/transactions", &headers, body.as_bytes())
            .await?;
        anyhow::ensure!(
            reply.status == 201,
            "fund {id}: {}: {}",
            reply.status,
            String::from_utf8_lossy(&b)
        );
    }
    println!(
        "ledger: {accounts} accounts opened and funded in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    for (name, spread) in [("spread", accounts), ("two hot accounts", 2)] {
        let ids = ids[..spread].to_vec();
        let phase = crate::load::phase(
            &base,
            &headers,
            connections,
            run_for,
            "/transactions",
            201,
            move |c, i| {
                let n = ids.len();
                // Hot: back and forth, so neither account runs dry.
                let from = (c * 31 + i * 17) % n;
                let to = (from + 1 + (c * 13 + i * 7) % (n - 1)) % n;
                format!(
                    r#"{{"kind":"transfer","from":"{}","to":"{}","amount":"1.00","currency":"PKR","reference":"T-{spread}-{c}-{i}","value_date":"2026-12-01"}}"#,
                    ids[from], ids[to]
                )
            },
        )
        .await?;
        println!(
            "ledger: transfers, {name} ({spread} accounts), {connections} connections, {:.0}s: {}",
            run_for.as_secs_f64(),
            phase.figures("transfers"),
        );
    }
    crate::stop_server(&mut child);
    Ok(())
}

/// The client every account belongs to, written into `data_dir`'s store before the server
/// opens it.
async fn seed_client(data_dir: &std::path::Path, tenant: &TenantId) -> anyhow::Result<()> {
    let store = Arc::new(SqliteEventStore::open(&data_dir.join("events.db"))?);
    let handler = CommandHandler::new(store, Arc::new(infra::SystemClock));
    let meta = commands::CommandMeta::of(
        tenant.clone(),
        Actor {
            user_id: UserId::parse("system:bench")?,
            role: Role::Admin,
        },
        commands::RequestIds::fresh(),
        None,
    );
    let sync = CustomerCommand::Sync {
        customer_id: CLIENT.to_owned(),
        fields: CustomerFields {
            name: "Bench Holdings".into(),
            ..CustomerFields::default()
        },
        system_modstamp: chrono::Utc::now(),
        sync_id: "bench".into(),
    };
    handler
        .execute::<Customer>(
            &meta,
            &commands::customers::customer_stream(CLIENT),
            &sync,
            None,
        )
        .await
        .map_err(|e| anyhow::anyhow!("seed the client: {e}"))?;
    Ok(())
}
