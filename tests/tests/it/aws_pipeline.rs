//! The AWS event pipeline piece by piece on the emulator: the relay publishes each event
//! once to EventBridge and Kinesis across restarts, and the SQS projector applies good
//! events while a poison one reaches the dead-letter queue.

use chronicle_tests::aws::test_aws_with_prefix;
use chronicle_tests::conformance::{request, tenant, write};
use commands::{EventStore, ExpectedVersion, NewEvent};
use domain::StreamId;
use infra::aws::{DynamoEventStore, DynamoReadModelStore, Relay, SqsProjector};
use projections::ReadModelStore;
use projections::tasks::TasksProjection;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

fn event(event_type: &str, payload: Value) -> NewEvent {
    NewEvent {
        event_type: event_type.into(),
        schema_version: 1,
        payload,
    }
}

fn created(id: &Uuid, title: &str) -> NewEvent {
    event(
        "TaskCreated",
        json!({"task_id": id.to_string(), "title": title, "description": "", "assigned_to": null,
               "created_by": "alice", "created_at": "2026-01-01T00:00:00Z"}),
    )
}

async fn kinesis_records(aws: &infra::aws::Aws) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (_, records) in chronicle_tests::aws::kinesis_shards(aws).await {
        for r in records {
            let body: Value = serde_json::from_slice(r.data().as_ref()).expect("JSON record");
            out.push((r.partition_key().to_owned(), body));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relay_publishes_each_event_once_across_restarts_and_poison_reaches_the_dlq() {
    let prefix = format!("pl{}", &Uuid::new_v4().simple().to_string()[..10]);
    let aws = test_aws_with_prefix(&prefix).await;
    let store = DynamoEventStore::new(&aws);
    let t = tenant();
    let (good, bad) = (Uuid::now_v7(), Uuid::now_v7());
    let good_stream = StreamId::for_aggregate("task", good);
    let bad_stream = StreamId::for_aggregate("task", bad);
    store
        .append(request(
            &t,
            vec![write(
                &good_stream,
                ExpectedVersion::NoStream,
                vec![created(&good, "fine")],
            )],
        ))
        .await
        .expect("good");
    store
        .append(request(
            &t,
            vec![write(
                &bad_stream,
                ExpectedVersion::NoStream,
                vec![event("TaskCreated", json!({"nonsense": true}))],
            )],
        ))
        .await
        .expect("bad");

    let relay = Relay::new(&aws);
    assert_eq!(relay.pump().await.expect("first pass"), 2);
    assert_eq!(
        relay.pump().await.expect("second pass"),
        0,
        "nothing published twice"
    );
    assert_eq!(
        Relay::new(&aws).pump().await.expect("after a restart"),
        0,
        "a restart resumes at its checkpoint"
    );
    // With it, in the same append, an event of a private stream (a password hash): it is
    // stored but never published.
    let credential = StreamId::for_aggregate("credential", Uuid::now_v7());
    store
        .append(request(
            &t,
            vec![
                write(
                    &good_stream,
                    ExpectedVersion::Exact(1),
                    vec![event(
                        "TaskUpdated",
                        json!({"title": "finer", "updated_at": "2026-01-02T00:00:00Z"}),
                    )],
                ),
                write(
                    &credential,
                    ExpectedVersion::NoStream,
                    vec![event(
                        "PasswordSet",
                        json!({"password_hash": "$argon2id$v=19$secret", "set_at": "2026-01-02T00:00:00Z"}),
                    )],
                ),
            ],
        ))
        .await
        .expect("update");
    assert_eq!(
        Relay::new(&aws).pump().await.expect("new event"),
        1,
        "exactly the new public event"
    );

    let records = kinesis_records(&aws).await;
    assert_eq!(records.len(), 3, "each public event once on Kinesis");
    assert!(
        records
            .iter()
            .all(|(_, body)| !body.to_string().contains("argon2")),
        "no private stream published: {records:?}"
    );
    assert!(records.iter().all(
        |(key, body)| *key == format!("{t}#{}", body["stream_id"].as_str().unwrap_or_default())
    ));

    let projector = SqsProjector::new(
        &aws,
        vec![Arc::new(TasksProjection)],
        Duration::from_secs(1),
    )
    .await
    .expect("projector");
    let views = DynamoReadModelStore::new(&aws);
    let dlq_url = aws
        .sqs
        .get_queue_url()
        .queue_name(&aws.names.projector_dlq)
        .send()
        .await
        .expect("dlq url")
        .queue_url()
        .expect("url")
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut dead: Vec<Value> = Vec::new();
    loop {
        projector.poll_once().await.expect("poll");
        let row = views
            .get("tasks", &t, &good.to_string())
            .await
            .expect("row");
        let dlq = aws
            .sqs
            .receive_message()
            .queue_url(&dlq_url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("receive dlq");
        dead.extend(
            dlq.messages()
                .iter()
                .filter_map(|m| m.body())
                .filter_map(|b| serde_json::from_str(b).ok()),
        );
        let applied = row.as_ref().is_some_and(|r| r.version == 2);
        if applied && !dead.is_empty() {
            assert_eq!(row.and_then(|r| r.doc).expect("doc")["title"], "finer");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no convergence: row {row:?}, dead letters {dead:?}"
        );
    }
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["detail"]["stream_id"], bad_stream.as_str());
    assert_eq!(
        views
            .row_version("tasks", &t, &bad.to_string())
            .await
            .expect("version"),
        0,
        "poison left no row"
    );
}

#[tokio::test]
async fn setup_twice_is_harmless() {
    let prefix = format!("st{}", &Uuid::new_v4().simple().to_string()[..10]);
    let aws = test_aws_with_prefix(&prefix).await;
    let again = infra::aws::setup(&aws)
        .await
        .expect("a second setup succeeds");
    for resource in ["table", "event bus", "kinesis stream"] {
        assert!(
            again
                .iter()
                .any(|l| l.starts_with(resource) && l.ends_with("exists")),
            "{resource} should already exist: {again:?}"
        );
    }
}
