//! The SFTP import worker as an SQS-triggered Lambda function on the import queue: a
//! started import runs to its end; the EventBridge schedule's event (every minute) starts
//! the imports that are due by their connections' schedules. Configured by the same
//! environment as `chronicle worker` (CHRONICLE_SECRETS_KEY, CHRONICLE_SF_TIMEOUT for one
//! call of the server); answers with a partial batch response, so an import cut off comes
//! back and resumes.

use lambda_runtime::Error;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, handler, _) =
        chronicle_lambda::salesforce_worker("chronicle-sftp-worker-lambda").await?;
    let worker = api::workers::SftpConfig::of(&config).worker(handler)?;
    chronicle_lambda::serve_queue(Arc::new(worker)).await
}
