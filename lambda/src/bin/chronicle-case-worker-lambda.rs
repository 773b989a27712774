//! The case delivery worker as an SQS-triggered Lambda function on the case queue: each
//! opened or changed case is upserted into the tenant's Salesforce org. Configured by the
//! same environment as `chronicle worker` (CHRONICLE_SECRETS_KEY, CHRONICLE_SF_TIMEOUT);
//! answers with a partial batch response.

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
    let config = Env::parse_from(["chronicle-case-worker-lambda"])
        .salesforce
        .config(None)?
        .ok_or("the case delivery worker needs CHRONICLE_SECRETS_KEY")?;
    let handler = commands::CommandHandler::new(
        Arc::new(infra::aws::DynamoEventStore::new(&aws)),
        Arc::new(infra::SystemClock),
    );
    let access = config.access()?;
    let worker = Arc::new(config.case_worker(handler, &access)?);
    chronicle_lambda::serve_queue(worker).await
}
