//! The AI worker as an SQS-triggered Lambda function on the AI queue. It is configured by
//! the same environment as `chronicle worker` (OPENAI_API_KEY, OPENAI_BASE_URL,
//! CHRONICLE_AI_MODEL, CHRONICLE_AI_TIMEOUT, CHRONICLE_AI_MAX_ATTEMPTS) and answers with a
//! partial batch response: the messages of finished queries are deleted, the others come
//! back and, after the queue's maximum receives, reach the dead-letter queue.

use clap::Parser;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Parser)]
struct Env {
    #[command(flatten)]
    ai: api::workers::AiArgs,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    chronicle_lambda::init_logs();
    let aws = chronicle_lambda::aws().await;
    let config = Env::parse_from(["chronicle-ai-worker-lambda"])
        .ai
        .config()?
        .ok_or("the AI worker needs OPENAI_API_KEY")?;
    let handler = commands::CommandHandler::new(
        Arc::new(infra::aws::DynamoEventStore::new(&aws)),
        Arc::new(infra::SystemClock),
    );
    let worker = Arc::new(config.worker(handler)?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let worker = worker.clone();
        async move {
            let records = event.payload["Records"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let runs = records.iter().map(|r| {
                let worker = worker.clone();
                async move {
                    let id = r["messageId"].as_str().unwrap_or_default();
                    let body = r["body"].as_str().unwrap_or_default();
                    infra::aws::run_message(worker.as_ref(), id, body)
                        .await
                        .err()
                        .map(|()| json!({ "itemIdentifier": id }))
                }
            });
            let failures: Vec<Value> = futures::future::join_all(runs)
                .await
                .into_iter()
                .flatten()
                .collect();
            Ok::<Value, Error>(json!({ "batchItemFailures": failures }))
        }
    }))
    .await
}
