//! AI queries on the AWS backend (the emulator): submitted queries reach the AI worker
//! through the relay, EventBridge's AIQuerySubmitted rule and the AI queue; the worker
//! calls the fake OpenAI API and completes them (one after a 429 and its Retry-After),
//! the read model shows them, and a query that cannot be run reaches the AI dead-letter
//! queue while the others go on.

use chronicle_tests::ai_config;
use chronicle_tests::aws::test_aws_with_prefix;
use chronicle_tests::conformance::{request, write};
use chronicle_tests::fake_openai::FakeOpenAi;
use commands::ai::{SubmitAiQuery, month_usage, query_stream};
use commands::{CommandHandler, CommandMeta, EventStore, ExpectedVersion, NewEvent};
use domain::ai_query::{AiQuery, AiQueryStatus, ModelName, Prompt};
use domain::{Actor, Role, TenantId, UserId};
use infra::aws::{DynamoEventStore, DynamoReadModelStore, QueueWorker, Relay, SqsProjector};
use projections::ReadModelStore;
use projections::ai_queries::AiQueriesProjection;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_run_through_the_ai_queue_and_a_bad_one_reaches_its_dlq() {
    let prefix = format!("ai{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let aws = test_aws_with_prefix(&prefix).await;
    let fake = FakeOpenAi::start().await;
    let store = Arc::new(DynamoEventStore::new(&aws));
    let handler = CommandHandler::new(store.clone(), Arc::new(infra::SystemClock));
    let tenant = TenantId::parse("aishop").expect("tenant");
    let meta = CommandMeta::of(
        tenant.clone(),
        Actor {
            user_id: UserId::parse("asker").expect("user"),
            role: Role::Member,
        },
        commands::RequestIds::fresh(),
        None,
    );
    let mut ids = Vec::new();
    for prompt in ["hello from aws", "rate-limit-once from aws"] {
        let id = uuid::Uuid::now_v7().to_string();
        handler
            .run(
                &meta,
                &SubmitAiQuery {
                    query_id: id.clone(),
                    tier: domain::Tier::Basic,
                    prompt: Prompt::parse(prompt).expect("prompt"),
                    model: ModelName::parse("gpt-test").expect("model"),
                },
            )
            .await
            .expect("submit");
        ids.push(id);
    }
    // A submission no worker can read: its stream does not fold.
    let bad = query_stream(&uuid::Uuid::now_v7().to_string());
    store
        .append(request(
            &tenant,
            vec![write(
                &bad,
                ExpectedVersion::NoStream,
                vec![NewEvent {
                    event_type: "AIQuerySubmitted".into(),
                    schema_version: 1,
                    payload: json!({"nonsense": true}),
                }],
            )],
        ))
        .await
        .expect("bad");

    assert_eq!(Relay::new(&aws).pump().await.expect("relay"), 3);
    let config = ai_config(&fake);
    let worker = Arc::new(config.worker(handler.clone()).expect("worker"));
    let queue = QueueWorker::new(
        &aws,
        &aws.names.ai_queue,
        worker,
        (Duration::from_secs(1), 4),
        infra::aws::AI_VISIBILITY_SECS,
    )
    .await
    .expect("queue");
    let dlq_url = aws
        .sqs
        .get_queue_url()
        .queue_name(&aws.names.ai_dlq)
        .send()
        .await
        .expect("dlq")
        .queue_url()
        .expect("url")
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut dead = Vec::new();
    loop {
        queue.poll_once().await.expect("poll");
        let out = aws
            .sqs
            .receive_message()
            .queue_url(&dlq_url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("dlq receive");
        dead.extend(
            out.messages()
                .iter()
                .filter_map(|m| m.body())
                .map(str::to_owned),
        );
        let mut finished = 0;
        for id in &ids {
            let (q, _) = handler
                .state::<AiQuery>(&tenant, &query_stream(id))
                .await
                .expect("query");
            finished += usize::from(q.status.is_some_and(AiQueryStatus::is_final));
        }
        if finished == ids.len() && !dead.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no convergence: {finished} finished, dead letters {dead:?}"
        );
    }
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].contains(bad.as_str()), "{}", dead[0]);
    for (id, attempts) in ids.iter().zip([1, 2]) {
        let (q, _) = handler
            .state::<AiQuery>(&tenant, &query_stream(id))
            .await
            .expect("query");
        assert_eq!(q.status, Some(AiQueryStatus::Completed), "{q:?}");
        assert_eq!(q.attempts, attempts);
    }
    let usage = month_usage(&handler, &tenant, chrono::Utc::now())
        .await
        .expect("usage");
    assert_eq!((usage.tokens, usage.queries), (30, 2));

    // The read model on DynamoDB, fed by the projector queue, shows the answers.
    assert!(Relay::new(&aws).pump().await.expect("relay") > 0);
    let projector = SqsProjector::new(
        &aws,
        vec![Arc::new(AiQueriesProjection)],
        Duration::from_secs(1),
    )
    .await
    .expect("projector");
    let views = DynamoReadModelStore::new(&aws);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        projector.poll_once().await.expect("project");
        let row = views
            .get("ai_queries", &tenant, &ids[0])
            .await
            .expect("row");
        if let Some(doc) = row.and_then(|r| r.doc)
            && doc["status"] == "COMPLETED"
        {
            assert_eq!(doc["answer"], "echo: hello from aws");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the read model never showed the answer"
        );
    }
}
