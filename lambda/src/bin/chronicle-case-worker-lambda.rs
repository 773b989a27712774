//! The case delivery worker as an SQS-triggered Lambda function on the case queue: each
//! opened or changed case is upserted into the tenant's Salesforce org. Configured by the
//! same environment as `chronicle worker` (CHRONICLE_SECRETS_KEY, CHRONICLE_SF_TIMEOUT);
//! answers with a partial batch response.

use lambda_runtime::Error;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, handler, access) =
        chronicle_lambda::salesforce_worker("chronicle-case-worker-lambda").await?;
    let worker = Arc::new(config.case_worker(handler, &access)?);
    chronicle_lambda::serve_queue(worker).await
}
