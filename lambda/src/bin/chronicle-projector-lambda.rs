//! The projectors (every read model) as an SQS-triggered Lambda function. It answers with a partial batch
//! response (`ReportBatchItemFailures`): applied messages are deleted, the others return to
//! the queue and, after its maximum receives, reach the dead-letter queue.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    chronicle_lambda::init_logs();
    let aws = chronicle_lambda::aws().await;
    let projectors = Arc::new(infra::aws::queue_projectors(&aws, projections::queue_fed()));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let projectors = projectors.clone();
        async move {
            let records = event.payload["Records"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let messages: Vec<(&str, &str)> = records
                .iter()
                .map(|r| {
                    (
                        r["messageId"].as_str().unwrap_or_default(),
                        r["body"].as_str().unwrap_or_default(),
                    )
                })
                .collect();
            let failed = infra::aws::apply_messages(&projectors, &messages).await?;
            let failures: Vec<Value> = failed
                .iter()
                .map(|id| json!({ "itemIdentifier": id }))
                .collect();
            Ok::<Value, Error>(json!({ "batchItemFailures": failures }))
        }
    }))
    .await
}
