//! The Salesforce sync worker as an SQS-triggered Lambda function on the sync queue: a
//! started sync runs to its end; the EventBridge schedule's event starts the incremental
//! poll of every connected tenant. Configured by the same environment as `chronicle
//! worker` (CHRONICLE_SECRETS_KEY, CHRONICLE_SF_LOOKBACK, CHRONICLE_SF_TIMEOUT); answers
//! with a partial batch response.

use clap::Parser;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Parser)]
struct Env {
    #[command(flatten)]
    salesforce: api::workers::SalesforceArgs,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    chronicle_lambda::init_logs();
    let aws = chronicle_lambda::aws().await;
    let config = Env::parse_from(["chronicle-sync-worker-lambda"])
        .salesforce
        .config(None)?
        .ok_or("the sync worker needs CHRONICLE_SECRETS_KEY")?;
    let handler = commands::CommandHandler::new(
        Arc::new(infra::aws::DynamoEventStore::new(&aws)),
        Arc::new(infra::SystemClock),
    );
    let access = config.access()?;
    let worker = Arc::new(config.worker(handler, &access)?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let worker = worker.clone();
        async move {
            let records = event.payload["Records"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut failures = Vec::new();
            for r in &records {
                let id = r["messageId"].as_str().unwrap_or_default();
                let body = r["body"].as_str().unwrap_or_default();
                if infra::aws::run_message(worker.as_ref(), id, body)
                    .await
                    .is_err()
                {
                    failures.push(json!({ "itemIdentifier": id }));
                }
            }
            Ok::<Value, Error>(json!({ "batchItemFailures": failures }))
        }
    }))
    .await
}
