//! Shared start-up of Chronicle's Lambda functions: JSON logs and the AWS clients, named
//! from `CHRONICLE_AWS_PREFIX` as in the template in `infra/deploy/`.

use infra::aws::Aws;

/// JSON logs to stdout (CloudWatch), level from `RUST_LOG`.
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_ansi(false)
        .init();
}

pub async fn aws() -> Aws {
    let prefix = std::env::var("CHRONICLE_AWS_PREFIX").unwrap_or_else(|_| "chronicle".into());
    Aws::load(&prefix).await
}

/// Serves an SQS-triggered function of `worker`'s queue: each record's event is handled in
/// turn (`infra::aws::run_message`), and the answer is a partial batch response, so the
/// messages of finished work are deleted and the others come back (and, after the queue's
/// maximum receives, reach its dead-letter queue).
pub async fn serve_queue(
    worker: std::sync::Arc<dyn commands::worker::EventWorker>,
) -> Result<(), lambda_runtime::Error> {
    use serde_json::{Value, json};
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<Value>| {
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
                Ok::<Value, lambda_runtime::Error>(json!({ "batchItemFailures": failures }))
            }
        },
    ))
    .await
}

/// The Salesforce configuration of a worker function, from the same environment as
/// `chronicle worker` (CHRONICLE_SECRETS_KEY, CHRONICLE_SF_*), with its command handler
/// over the DynamoDB event store and its client.
pub async fn salesforce_worker(
    name: &str,
) -> Result<
    (
        api::workers::SalesforceConfig,
        commands::CommandHandler,
        api::salesforce::SalesforceAccess,
    ),
    lambda_runtime::Error,
> {
    use clap::Parser;
    #[derive(Parser)]
    struct Env {
        #[command(flatten)]
        salesforce: api::workers::SalesforceArgs,
    }
    init_logs();
    let aws = aws().await;
    let config = Env::parse_from([name])
        .salesforce
        .config(None)?
        .ok_or_else(|| format!("{name} needs CHRONICLE_SECRETS_KEY"))?;
    let handler = commands::CommandHandler::new(
        std::sync::Arc::new(infra::aws::DynamoEventStore::new(&aws)),
        std::sync::Arc::new(infra::SystemClock),
    );
    let access = config.access()?;
    Ok((config, handler, access))
}
