//! `replay`: builds an embedded store of `events` task events over `tenants` tenants (each
//! task created, then updated), then measures a rebuild of every read model from position
//! zero into a fresh read-model store (events/s, and the process's peak RSS during it,
//! reset just before), and a full `audit verify` (hash chains and version sequences) and
//! digest over the same store.

use commands::audit::ChainCheck;
use commands::{AppendRequest, EventStore, ExpectedVersion, NewEvent, StreamWrite};
use domain::{StreamId, TenantId};
use infra::sqlite::{SqliteEventStore, SqliteReadModelStore};
use projections::EventFeed;
use projections::replay::{LogHistory, Plan, rebuild};
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

/// The process's peak resident set (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Resets the peak to the current resident set (Linux: `clear_refs` 5).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn created(title: &str) -> NewEvent {
    NewEvent {
        event_type: "TaskCreated".into(),
        schema_version: 1,
        payload: serde_json::json!({
            "task_id": "", "title": title, "description": "", "assigned_to": null,
            "created_by": "bench", "created_at": "2026-12-01T00:00:00Z"
        }),
    }
}

pub async fn run(events: usize, tenants: usize, batch_size: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = SqliteEventStore::open(&dir.path().join("events.db"))?;
    let tenant_ids: Vec<TenantId> = (0..tenants)
        .map(|i| TenantId::parse(format!("bench-{i:03}")))
        .collect::<Result<_, _>>()?;
    // Build: appends of 49 tasks (98 events) each, created then updated in one append.
    let started = Instant::now();
    let per_append = 49;
    let appends = events.div_ceil(per_append * 2);
    let mut written = 0usize;
    let writers = 8;
    let mut jobs = Vec::new();
    for w in 0..writers {
        let (store, tenant_ids) = (store.clone(), tenant_ids.clone());
        jobs.push(tokio::spawn(async move {
            let mut n = 0usize;
            for a in (w..appends).step_by(writers) {
                let tenant = tenant_ids[a % tenant_ids.len()].clone();
                let streams = (0..per_append)
                    .map(|i| {
                        let id = Uuid::now_v7();
                        let mut create = created(&format!("task {a}-{i}"));
                        create.payload["task_id"] = serde_json::json!(id.to_string());
                        StreamWrite {
                            stream_id: StreamId::for_aggregate("task", id),
                            expected: ExpectedVersion::NoStream,
                            events: vec![
                                create,
                                NewEvent {
                                    event_type: "TaskUpdated".into(),
                                    schema_version: 1,
                                    payload: serde_json::json!({"title": "renamed", "updated_at": "2026-12-01T00:00:01Z"}),
                                },
                            ],
                            prev_hash: None,
                        }
                    })
                    .collect();
                let request = AppendRequest {
                    tenant_id: tenant,
                    command_id: Uuid::now_v7(),
                    correlation_id: Uuid::now_v7(),
                    causation_id: None,
                    actor: "bench".into(),
                    idempotency: None,
                    streams,
                };
                store
                    .append(request)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                n += per_append * 2;
            }
            anyhow::Ok(n)
        }));
    }
    for j in jobs {
        written += j.await??;
    }
    let head = *store.head().borrow();
    println!(
        "replay: built {written} events over {tenants} tenants in {:.1}s (head position {head})",
        started.elapsed().as_secs_f64()
    );

    // What reading alone costs: the whole log, decoded, as the rebuild reads it.
    let started = Instant::now();
    let reader = LogHistory::new(Arc::new(store.committed_log()));
    let mut read = 0usize;
    loop {
        let batch = projections::replay::History::next(&reader, batch_size).await?;
        if batch.is_empty() {
            break;
        }
        read += batch.len();
    }
    println!(
        "replay: read the log alone: {read} events in {:.2}s = {:.0} events/s",
        started.elapsed().as_secs_f64(),
        read as f64 / started.elapsed().as_secs_f64()
    );

    // `chronicle replay --all`: every read model rebuilt from position zero into a shadow
    // copy, reading the log once for all of them, then swapped in.
    let views = SqliteReadModelStore::open(&dir.path().join("views.db"))?;
    let plan = Plan {
        projections: projections::all(),
        tenant: None,
        batch_size,
    };
    reset_peak_rss();
    let before = peak_rss_mib();
    let started = Instant::now();
    let history = LogHistory::new(Arc::new(store.committed_log()));
    let report = rebuild(views, &history, Arc::new(store.clone()), &plan, &()).await?;
    anyhow::ensure!(
        report.read as usize == written,
        "read {} of {written}",
        report.read
    );
    let took = started.elapsed();
    println!(
        "replay: rebuilt every read model and swapped it in ({} rows, batches of {batch_size}, the swap {:.2}s of it): {written} events in {:.2}s = {:.0} events/s; peak RSS {:.0} MiB (was {:.0} MiB before)",
        report.rows,
        report.swap.as_secs_f64(),
        took.as_secs_f64(),
        written as f64 / took.as_secs_f64(),
        peak_rss_mib(),
        before
    );

    // audit verify (every tenant, the embedded log) and the digest.
    reset_peak_rss();
    let started = Instant::now();
    let mut check = ChainCheck::default();
    api::audit::check_log(&store, None, &mut check).await?;
    let digest = check.digest(None);
    let took = started.elapsed();
    println!(
        "replay: audit verify: {} streams, {} events, {} broken in {:.2}s = {:.0} events/s; peak RSS {:.0} MiB; root {}",
        check.streams(),
        check.events,
        check.broken.len(),
        took.as_secs_f64(),
        check.events as f64 / took.as_secs_f64(),
        peak_rss_mib(),
        &digest.root[..16]
    );
    Ok(())
}
