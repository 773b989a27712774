//! The Salesforce sync worker as an SQS-triggered Lambda function on the sync queue: a
//! started sync runs to its end; the EventBridge schedule's event starts the incremental
//! poll of every connected tenant. Configured by the same environment as `chronicle
//! worker` (CHRONICLE_SECRETS_KEY, CHRONICLE_SF_LOOKBACK, CHRONICLE_SF_TIMEOUT); answers
//! with a partial batch response.

use clap::Parser;
use lambda_runtime::Error;
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
    chronicle_lambda::serve_queue(worker).await
}
