//! The Salesforce sync worker as an SQS-triggered Lambda function on the sync queue: a
//! started sync runs to its end; the EventBridge schedule's event starts the incremental
//! poll of every connected tenant. Configured by the same environment as `chronicle
//! worker` (CHRONICLE_SECRETS_KEY, CHRONICLE_SF_LOOKBACK, CHRONICLE_SF_TIMEOUT); answers
//! with a partial batch response.

use lambda_runtime::Error;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, handler, access) =
        chronicle_lambda::salesforce_worker("chronicle-sync-worker-lambda").await?;
    let worker = Arc::new(config.worker(handler, &access)?);
    chronicle_lambda::serve_queue(worker).await
}
