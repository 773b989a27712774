//! The mail worker as an SQS-triggered Lambda function on the mail queue: each queued
//! message is sent over SMTP (and a message whose body an AI query writes, once the query
//! has answered). Configured by the same environment as `chronicle worker`
//! (CHRONICLE_SMTP_URL, CHRONICLE_SMTP_FROM, CHRONICLE_SMTP_*); answers with a partial
//! batch response, so a message whose attempts are not over comes back.

use clap::Parser;
use lambda_runtime::Error;
use std::sync::Arc;

#[derive(Parser)]
struct Env {
    #[command(flatten)]
    mail: api::workers::MailArgs,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    chronicle_lambda::init_logs();
    let aws = chronicle_lambda::aws().await;
    let config = Env::parse_from(["chronicle-mail-worker-lambda"])
        .mail
        .config()?
        .ok_or("the mail worker needs CHRONICLE_SMTP_URL")?;
    let handler = commands::CommandHandler::new(
        Arc::new(infra::aws::DynamoEventStore::new(&aws)),
        Arc::new(infra::SystemClock),
    );
    chronicle_lambda::serve_queue(Arc::new(config.worker(handler)?)).await
}
