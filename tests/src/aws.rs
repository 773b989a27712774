//! The AWS emulator for tests: `./scripts/test` starts `moto_server` on loopback and exports
//! `AWS_ENDPOINT_URL`. Tests never fall back to real AWS: without the emulator they fail.

use infra::aws::{Aws, setup};

/// Clients pointed at the emulator, with a fresh set of resources for this test: the
/// emulator copies a whole table on every transaction, so small tables keep it fast.
pub async fn test_aws() -> Aws {
    let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    test_aws_with_prefix(&prefix).await
}

pub async fn test_aws_with_prefix(prefix: &str) -> Aws {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        endpoint.starts_with("http://127.0.0.1:") || endpoint.starts_with("http://localhost:"),
        "AWS tests need the AWS emulator on loopback (AWS_ENDPOINT_URL is {endpoint:?}). \
         Run them with ./scripts/test, or wrap the command in ./scripts/with-aws-emulator"
    );
    let aws = Aws::load(prefix).await;
    setup(&aws).await.expect("set up the emulator's resources");
    aws
}

/// Sends an EventBridge schedule's event to `queue`, as a scheduled rule would (the
/// emulator runs no schedules): the queue's worker takes it for its tick.
pub async fn scheduled_tick(aws: &Aws, queue: &str) {
    let url = aws
        .sqs
        .get_queue_url()
        .queue_name(queue)
        .send()
        .await
        .expect("url")
        .queue_url()
        .expect("url")
        .to_owned();
    let event = serde_json::json!({
        "version": "0", "id": uuid::Uuid::new_v4().to_string(), "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "123456789012", "time": chrono::Utc::now().to_rfc3339(),
        "region": "us-east-1", "resources": [format!("arn:aws:events:us-east-1:123456789012:rule/{queue}")], "detail": {}
    });
    aws.sqs
        .send_message()
        .queue_url(&url)
        .message_body(event.to_string())
        .send()
        .await
        .expect("tick");
}

/// Every record of every shard of the deployment's Kinesis stream, read from the trim
/// horizon, by shard id (the emulator answers one GetRecords with all of a shard's).
pub async fn kinesis_shards(aws: &Aws) -> Vec<(String, Vec<aws_sdk_kinesis::types::Record>)> {
    let stream = &aws.names.kinesis_stream;
    let shards = aws
        .kinesis
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .expect("list shards");
    let mut out = Vec::new();
    for shard in shards.shards() {
        let it = aws
            .kinesis
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("iterator");
        let records = aws
            .kinesis
            .get_records()
            .shard_iterator(it.shard_iterator().expect("iterator"))
            .send()
            .await
            .expect("records");
        out.push((shard.shard_id().to_owned(), records.records().to_vec()));
    }
    out
}

/// Pumps the relay and polls an SQS projector of `projections` (fed through EventBridge, as
/// deployed) until the DynamoDB read models of `tenant` equal `replayed`, for three minutes
/// at most.
pub async fn converge(
    aws: &Aws,
    tenant: &domain::TenantId,
    projections: Vec<std::sync::Arc<dyn projections::Projection>>,
    replayed: &[crate::replayed::Row],
) {
    use std::time::{Duration, Instant};
    let relay = infra::aws::Relay::new(aws);
    let projector = infra::aws::SqsProjector::new(aws, projections.clone(), Duration::from_secs(1))
        .await
        .expect("projector");
    let views = infra::aws::DynamoReadModelStore::new(aws);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        relay.pump().await.expect("relay");
        while projector.poll_once().await.expect("poll") > 0 {}
        let live = crate::replayed::rows(&views, tenant, &projections).await;
        if live == replayed {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the live read models did not converge on the replay: {} rows live, {} replayed",
            live.len(),
            replayed.len()
        );
    }
}
