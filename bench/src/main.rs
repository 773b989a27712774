//! `chronicle-bench`: prints figures, asserts nothing.
//!
//! - `store`: durable appends/s of the embedded store with 1 and 64 concurrent writers,
//!   one event per append.
//! - `http`: `POST /tasks` requests/s and p50/p99 latency at 64 connections against the
//!   release `chronicle` binary, and the projection lag (append to visible in the read
//!   model) under that load, read from the server's `/metrics`.
//! - `orders`: `POST /orders` (PlaceOrder, one line of one unit) requests/s and p50/p99 at
//!   64 connections, all on one hot product and spread over 1,000 products.
//! - `ledger`: `POST /transactions` transfers/s and p50/p99/max at 64 connections,
//!   spread over 1,000 accounts and between two hot accounts.
//! - `replay`: a rebuild of every read model over a store of a million events (events/s,
//!   peak RSS), and `audit verify` over it.
//! - `aws` (run under `scripts/with-aws-emulator`): DynamoDB requests per command by kind,
//!   and append-to-view lag through the relay, EventBridge, SQS and the projector.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use commands::{AppendRequest, EventStore, ExpectedVersion, NewEvent, StreamWrite};
use domain::{Role, StreamId, TenantId, UserId};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use infra::sqlite::SqliteEventStore;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "chronicle-bench")]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Durable appends/s of the SQLite event store.
    Store {
        /// Seconds per writer count.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// POST /tasks against the release binary, and projection lag under that load.
    Http {
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// A running server to load instead of starting target/release/chronicle.
        #[arg(long)]
        url: Option<String>,
        /// The running server's JWT secret (with --url).
        #[arg(long, env = "CHRONICLE_JWT_SECRET")]
        jwt_secret: Option<String>,
    },
    /// Sign-in latency by outcome (correct, wrong password, unknown email), in process.
    Signin {
        #[arg(long, default_value_t = 50)]
        rounds: usize,
    },
    /// PlaceOrder against the release binary: on one hot product, and spread over many.
    Orders {
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Products the spread run orders from.
        #[arg(long, default_value_t = 1000)]
        products: usize,
    },
    /// Transfers against the release binary: spread over many accounts, and between two.
    Ledger {
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Accounts the spread run transfers between.
        #[arg(long, default_value_t = 1000)]
        accounts: usize,
    },
    /// A store of many events: rebuild of every read model (events/s, peak RSS), and a
    /// full audit verify over it.
    Replay {
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        #[arg(long, default_value_t = 100)]
        tenants: usize,
        /// Events read from the log at a time (`chronicle replay`'s default).
        #[arg(long, default_value_t = 4096)]
        batch_size: usize,
    },
    /// The AWS backend on the emulator (AWS_ENDPOINT_URL): requests per command and lag.
    Aws {
        /// Tasks created (each then updated once).
        #[arg(long, default_value_t = 100)]
        tasks: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Bench::Store { seconds } => {
            for writers in [1, 64] {
                store(writers, Duration::from_secs(seconds)).await?;
            }
            Ok(())
        }
        Bench::Http {
            connections,
            seconds,
            url,
            jwt_secret,
        } => http(connections, Duration::from_secs(seconds), url, jwt_secret).await,
        Bench::Orders {
            connections,
            seconds,
            products,
        } => orders::run(connections, Duration::from_secs(seconds), products).await,
        Bench::Ledger {
            connections,
            seconds,
            accounts,
        } => ledger::run(connections, Duration::from_secs(seconds), accounts).await,
        Bench::Aws { tasks } => aws::run(tasks).await,
        Bench::Replay {
            events,
            tenants,
            batch_size,
        } => replay::run(events, tenants, batch_size).await,
        Bench::Signin { rounds } => signin::run(rounds).await,
    }
}

mod aws;
mod ledger;
mod load;
mod orders;
mod replay;
mod signin;

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn store(writers: usize, run_for: Duration) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteEventStore::open(&dir.path().join("events.db"))?);
    let tenant = TenantId::parse("bench")?;
    let deadline = Instant::now() + run_for;
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (store, tenant) = (store.clone(), tenant.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let request = AppendRequest {
                    tenant_id: tenant.clone(),
                    command_id: Uuid::now_v7(),
                    correlation_id: Uuid::now_v7(),
                    causation_id: None,
                    actor: "bench".into(),
                    idempotency: None,
                    streams: vec![StreamWrite {
                        stream_id: StreamId::for_aggregate("task", Uuid::now_v7()),
                        expected: ExpectedVersion::NoStream,
                        events: vec![NewEvent {
                            event_type: "TaskCreated".into(),
                            schema_version: 1,
                            payload: serde_json::json!({"title": "benchmark task", "description": "", "assigned_to": null}),
                        }],
                        prev_hash: None,
                    }],
                };
                let start = Instant::now();
                store.append(request).await.map_err(|e| anyhow::anyhow!("{e}"))?;
                latencies.push(start.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort();
    println!(
        "store: {writers:>2} writers: {:>9.0} appends/s durable ({} appends in {:.1}s), latency p50 {:.2} ms, p99 {:.2} ms",
        all.len() as f64 / run_for.as_secs_f64(),
        all.len(),
        run_for.as_secs_f64(),
        ms(percentile(&all, 0.50)),
        ms(percentile(&all, 0.99)),
    );
    Ok(())
}

pub(crate) const SECRET: &str = "benchmark-secret-benchmark-secret-0000";

/// The `Authorization` header of an enterprise-tier ADMIN of `tenant` (a million orders a
/// month, a hundred thousand products), for an hour, signed with the bench's secret.
pub(crate) fn admin_header(tenant: &TenantId, user: &str) -> anyhow::Result<String> {
    let token = api::TokenKeys::from_secret(SECRET.as_bytes())?.mint_with_tier(
        tenant,
        &UserId::parse(user)?,
        Role::Admin,
        domain::Tier::Enterprise,
        Duration::from_secs(3600),
    )?;
    Ok(format!("Authorization: Bearer {token}"))
}

/// Stops a server `start_server` started (SIGTERM: it drains and exits) and waits for it.
pub(crate) fn stop_server(child: &mut std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// The release `chronicle` binary beside this one, started on a fresh data dir.
pub(crate) fn start_server(dir: &std::path::Path) -> anyhow::Result<(std::process::Child, String)> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("chronicle");
    if !bin.exists() {
        bail!(
            "{} is missing: run `cargo build --release` first",
            bin.display()
        );
    }
    let mut child = Command::new(&bin)
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("CHRONICLE_JWT_SECRET", SECRET)
        .env("CHRONICLE_RATE_LIMITS", "off")
        .env("CHRONICLE_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    let stderr = child.stderr.take().context("stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let addr = serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .and_then(|v| v["fields"]["addr"].as_str().map(str::to_owned));
            if let Some(addr) = addr {
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .context("the server did not start")?;
    Ok((child, format!("http://{addr}")))
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn get_text(client: &HttpClient, url: &str) -> anyhow::Result<String> {
    let res = client.get(url.parse()?).await?;
    let bytes = res.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Cumulative bucket counts of the projection-lag histogram, as (upper bound s, count).
pub(crate) fn lag_buckets(metrics: &str) -> Vec<(f64, f64)> {
    metrics
        .lines()
        .filter(|l| l.starts_with("chronicle_projection_lag_seconds_bucket"))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count = l.rsplit(' ').next()?.parse().ok()?;
            Some((le, count))
        })
        .collect()
}

/// The bucket upper bound under which fraction `p` of the samples (between two scrapes) fall.
pub(crate) fn bucket_quantile(before: &[(f64, f64)], after: &[(f64, f64)], p: f64) -> Option<f64> {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, n)| {
            (
                *le,
                n - before
                    .iter()
                    .find(|(b, _)| b == le)
                    .map_or(0.0, |(_, m)| *m),
            )
        })
        .collect();
    let total = delta.iter().map(|(_, n)| *n).fold(0.0, f64::max);
    if total == 0.0 {
        return None;
    }
    delta
        .iter()
        .find(|(_, n)| *n >= total * p)
        .map(|(le, _)| *le)
}

async fn http(
    connections: usize,
    run_for: Duration,
    url: Option<String>,
    secret: Option<String>,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut child, base) = match url {
        Some(u) => (None, u),
        None => {
            let (c, u) = start_server(dir.path())?;
            (Some(c), u)
        }
    };
    let secret = secret.unwrap_or_else(|| SECRET.to_owned());
    let token = api::TokenKeys::from_secret(secret.as_bytes())?.mint(
        &TenantId::parse("bench")?,
        &UserId::parse("loader")?,
        Role::Admin,
        Duration::from_secs(3600),
    )?;
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(connections)
        .build_http();
    let before = lag_buckets(&get_text(&client, &format!("{base}/metrics")).await?);
    let deadline = Instant::now() + run_for;
    // The load runs on one thread of its own: its connections never wake each other
    // across threads, and it takes less of the CPU it shares with the server.
    let target = base.clone();
    let started = Instant::now();
    let (done, errors) = tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(drive(connections, target, token, started, deadline))
    })
    .await??;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = lag_buckets(&get_text(&client, &format!("{base}/metrics")).await?);
    let mut all: Vec<Duration> = done.iter().map(|(_, latency)| *latency).collect();
    all.sort();
    println!(
        "http: POST /tasks, {connections} connections, {:.0}s: {:.0} requests/s ({} created, {errors} errors), latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms (every request timed)",
        run_for.as_secs_f64(),
        all.len() as f64 / run_for.as_secs_f64(),
        all.len(),
        ms(percentile(&all, 0.50)),
        ms(percentile(&all, 0.90)),
        ms(percentile(&all, 0.99)),
        ms(percentile(&all, 0.999)),
        ms(all.last().copied().unwrap_or_default()),
    );
    let spread = per_second(&done, run_for);
    println!(
        "http: requests/s per second of the run: min {:.0}, mean {:.0}, max {:.0}, stdev {:.0} ({} seconds)",
        spread.min, spread.mean, spread.max, spread.stdev, spread.seconds
    );
    let fmt =
        |q: Option<f64>| q.map_or_else(|| "n/a".to_owned(), |s| format!("<= {:.1} ms", s * 1000.0));
    println!(
        "lag: append to visible in the tasks read model under that load: p50 {}, p99 {} (histogram bucket bounds)",
        fmt(bucket_quantile(&before, &after, 0.50)),
        fmt(bucket_quantile(&before, &after, 0.99)),
    );
    if let Some(c) = child.as_mut() {
        stop_server(c);
    }
    Ok(())
}

/// Requests completed in each whole second of a run.
struct Spread {
    seconds: usize,
    min: f64,
    mean: f64,
    max: f64,
    stdev: f64,
}

fn per_second(done: &[(Duration, Duration)], run_for: Duration) -> Spread {
    let seconds = (run_for.as_secs() as usize).max(1);
    let mut counts = vec![0f64; seconds];
    for (at, _) in done {
        if let Some(c) = counts.get_mut(at.as_secs() as usize) {
            *c += 1.0;
        }
    }
    let mean = counts.iter().sum::<f64>() / seconds as f64;
    let var = counts.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / seconds as f64;
    Spread {
        seconds,
        min: counts.iter().copied().fold(f64::INFINITY, f64::min),
        mean,
        max: counts.iter().copied().fold(0.0, f64::max),
        stdev: var.sqrt(),
    }
}

/// Drives `connections` keep-alive connections until `deadline`: for each 201, when it
/// completed (since `started`) and its latency; and the count of other answers.
async fn drive(
    connections: usize,
    base: String,
    token: String,
    started: Instant,
    deadline: Instant,
) -> anyhow::Result<(Vec<(Duration, Duration)>, u64)> {
    let mut tasks = Vec::new();
    for c in 0..connections {
        let mut conn = load::Connection::new(&base)?;
        let auth = format!("Authorization: Bearer {token}");
        tasks.push(tokio::spawn(async move {
            let headers = [auth.as_str(), "Content-Type: application/json"];
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut i = 0u64;
            let mut body = String::with_capacity(64);
            while Instant::now() < deadline {
                body.clear();
                use std::fmt::Write as _;
                write!(body, r#"{{"title":"bench {c}-{i}","assigned_to":"u{c}"}}"#)?;
                let reply = conn
                    .send("POST", "/tasks", &headers, body.as_bytes())
                    .await?;
                if reply.status == 201 {
                    latencies.push((started.elapsed(), reply.latency));
                } else {
                    errors += 1;
                }
                i += 1;
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
    Ok((all, errors))
}
