//! `chronicle analytics --backend aws` on the emulator, as two real consumer processes over
//! the Kinesis stream the relay feeds: shard leases in DynamoDB, a reshard whose parent is
//! read before its children, two consumers sharing the children, duplicates (the emulator's
//! split re-puts the parent's records into the children; a relay re-sends a batch) counted
//! once, a consumer's shutdown handing its lease over, and the lag in /metrics.

use chronicle_tests::aws::test_aws_with_prefix;
use chronicle_tests::conformance::{request, tenant, write};
use chronicle_tests::process::{Http, Worker};
use commands::{EventStore, ExpectedVersion, NewEvent};
use domain::{EventEnvelope, StreamId, TenantId};
use infra::aws::{
    Aws, ConsumerConfig, DynamoEventStore, DynamoReadModelStore, KinesisConsumer, KinesisPublisher,
    Relay,
};
use projections::analytics::{TASKS_COMPLETED, TASKS_CREATED, VIEW};
use projections::tally::Tally;
use projections::{ListQuery, ReadModelStore};
use rust_decimal::prelude::ToPrimitive;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use uuid::Uuid;

fn task_events(id: &Uuid, done: bool) -> Vec<NewEvent> {
    let mut out = vec![NewEvent {
        event_type: "TaskCreated".into(),
        schema_version: 1,
        payload: json!({"task_id": id.to_string(), "title": "t", "description": "", "assigned_to": null,
               "created_by": "alice", "created_at": "2026-12-01T00:00:00Z"}),
    }];
    if done {
        out.push(NewEvent {
            event_type: "TaskStatusChanged".into(),
            schema_version: 1,
            payload: json!({"from": "OPEN", "to": "DONE", "updated_at": "2026-12-01T00:00:01Z"}),
        });
    }
    out
}

/// Appends `created` tasks for `tenant`, the first `done` of them completed, and relays them.
async fn tasks(aws: &Aws, tenant: &TenantId, created: usize, done: usize) -> Vec<EventEnvelope> {
    let store = DynamoEventStore::new(aws);
    let mut all = Vec::new();
    for i in 0..created {
        let id = Uuid::now_v7();
        let stream = StreamId::for_aggregate("task", id);
        let out = store
            .append(request(
                tenant,
                vec![write(
                    &stream,
                    ExpectedVersion::NoStream,
                    task_events(&id, i < done),
                )],
            ))
            .await
            .expect("append");
        all.extend(out.into_events());
    }
    let relay = Relay::new(aws);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut published = 0;
    while published < all.len() {
        published += relay.pump().await.expect("relay");
        assert!(
            Instant::now() < deadline,
            "relayed {published} of {}",
            all.len()
        );
    }
    all
}

/// (tasks created, tasks completed) of a tenant, over every day.
async fn figures(views: &DynamoReadModelStore, tenant: &TenantId) -> (u64, u64) {
    let q = ListQuery {
        limit: 100,
        ..ListQuery::default()
    };
    let mut sum = Tally::default();
    for row in views.list(VIEW, tenant, &q).await.expect("list") {
        let day = Tally::from_doc(VIEW, &row.row_id, &row.doc.expect("doc")).expect("tally");
        sum.absorb(&day).expect("sum");
    }
    let n = |k: &str| sum.get(k).to_u64().unwrap_or_default();
    (n(TASKS_CREATED), n(TASKS_COMPLETED))
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match check().await {
            Ok(()) => return,
            Err(why) if Instant::now() > deadline => panic!("{what}: {why}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Each shard's last sequence number, read from the stream itself.
async fn tails(aws: &Aws) -> BTreeMap<String, Option<String>> {
    chronicle_tests::aws::kinesis_shards(aws)
        .await
        .into_iter()
        .map(|(shard, records)| {
            (
                shard,
                records.last().map(|r| r.sequence_number().to_owned()),
            )
        })
        .collect()
}

fn consumer(prefix: &str, owner: &str, metrics: u16) -> Worker {
    Worker::start(&[
        "analytics",
        "--backend",
        "aws",
        "--aws-prefix",
        prefix,
        "--owner",
        owner,
        "--lease-seconds",
        "3",
        "--metrics-addr",
        &format!("127.0.0.1:{metrics}"),
    ])
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shards_are_leased_resharded_and_shared_and_each_event_counts_once() {
    let prefix = format!("an{}", &Uuid::new_v4().simple().to_string()[..10]);
    let aws = test_aws_with_prefix(&prefix).await;
    let views = DynamoReadModelStore::new(&aws);
    // A reader of the leases only: it never takes one.
    let leases = KinesisConsumer::new(&aws, "observer", ConsumerConfig::default());
    let (acme, globex) = (tenant(), tenant());
    let first = tasks(&aws, &acme, 3, 1).await;
    tasks(&aws, &globex, 2, 0).await;

    let (m1, m2) = (free_port(), free_port());
    let c1 = consumer(&prefix, "c1", m1);
    eventually("the first batch is counted", || async {
        match (figures(&views, &acme).await, figures(&views, &globex).await) {
            ((3, 1), (2, 0)) => Ok(()),
            got => Err(format!("{got:?}")),
        }
    })
    .await;
    let held = leases.leases().await.expect("leases");
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].owner.as_deref(), Some("c1"));

    // Reshard: the shard splits in two; the emulator moves its records into the children,
    // so every event is delivered again there.
    let parent = held[0].shard_id.clone();
    aws.kinesis
        .split_shard()
        .stream_name(&aws.names.kinesis_stream)
        .shard_to_split(&parent)
        .new_starting_hash_key((1u128 << 127).to_string())
        .send()
        .await
        .expect("split");
    tasks(&aws, &acme, 2, 2).await;
    let _c2 = consumer(&prefix, "c2", m2);
    tasks(&aws, &globex, 1, 1).await;
    eventually("the second batch is counted, once", || async {
        match (figures(&views, &acme).await, figures(&views, &globex).await) {
            ((5, 3), (3, 1)) => Ok(()),
            got => Err(format!("{got:?}")),
        }
    })
    .await;
    eventually("the parent ends and the children are shared", || async {
        let all = leases.leases().await.map_err(|e| e.to_string())?;
        let parent_done = all
            .iter()
            .any(|l| l.shard_id == parent && l.checkpoint == "SHARD_END");
        let owners: std::collections::BTreeSet<_> = all
            .iter()
            .filter(|l| l.shard_id != parent)
            .filter_map(|l| l.owner.clone())
            .collect();
        if parent_done && all.len() == 3 && owners.len() == 2 {
            Ok(())
        } else {
            Err(format!("{all:?}"))
        }
    })
    .await;

    // A relay that re-sends a batch after a crash: nothing counts twice.
    KinesisPublisher::new(aws.kinesis.clone(), aws.names.kinesis_stream.clone())
        .publish(&first)
        .await
        .expect("re-send");
    eventually("every shard is read to its end", || async {
        let tails = tails(&aws).await;
        let all = leases.leases().await.map_err(|e| e.to_string())?;
        let behind: Vec<_> = all
            .iter()
            .filter(|l| l.shard_id != parent)
            .filter(|l| {
                tails.get(&l.shard_id).cloned().flatten().as_deref() != Some(l.checkpoint.as_str())
            })
            .collect();
        if behind.is_empty() {
            Ok(())
        } else {
            Err(format!("{behind:?} vs {tails:?}"))
        }
    })
    .await;
    assert_eq!(
        figures(&views, &acme).await,
        (5, 3),
        "duplicates are not counted"
    );
    assert_eq!(figures(&views, &globex).await, (3, 1));

    let http = Http::default();
    for port in [m1, m2] {
        let (status, text) = http
            .get_text(&format!("http://127.0.0.1:{port}/metrics"))
            .await
            .expect("metrics");
        assert_eq!(status, 200);
        assert!(
            text.lines()
                .any(|l| l
                    .starts_with("chronicle_analytics_millis_behind_latest{shard_id=\"shardId-")),
            "{text}"
        );
    }

    // The first consumer stops: it gives its lease back, and the other takes it at once.
    c1.stop();
    tasks(&aws, &acme, 1, 0).await;
    eventually(
        "the other consumer holds every shard and goes on",
        || async {
            let all = leases.leases().await.map_err(|e| e.to_string())?;
            let c2_holds = all
                .iter()
                .filter(|l| l.shard_id != parent)
                .all(|l| l.owner.as_deref() == Some("c2"));
            match figures(&views, &acme).await {
                (6, 3) if c2_holds => Ok(()),
                got => Err(format!("{got:?} {all:?}")),
            }
        },
    )
    .await;
}
