//! The REST API as a Lambda function behind API Gateway: the same router as `chronicle serve`.

use clap::Parser;
use lambda_http::Error;
use std::time::Duration;

/// The AI provider, from the same environment as `chronicle serve` reads.
#[derive(Parser)]
struct Env {
    #[command(flatten)]
    ai: api::workers::AiArgs,
    #[command(flatten)]
    mail: api::workers::MailArgs,
    #[command(flatten)]
    salesforce: api::workers::SalesforceArgs,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    chronicle_lambda::init_logs();
    let aws = chronicle_lambda::aws().await;
    let secret =
        std::env::var("CHRONICLE_JWT_SECRET").map_err(|_| "CHRONICLE_JWT_SECRET is not set")?;
    let keys = api::TokenKeys::from_secret(secret.as_bytes()).map_err(|e| e.to_string())?;
    let mut state = api::aws::aws_state(&aws, keys, Duration::from_millis(2000));
    // The API queues queries; the AI worker function runs them.
    let env = Env::parse_from(["chronicle-api-lambda"]);
    state.ai = env
        .ai
        .config()?
        .as_ref()
        .map(api::workers::AiConfig::provider);
    // The API queues messages; the mail worker function sends them.
    state.mail = env
        .mail
        .config()?
        .as_ref()
        .map(api::workers::MailConfig::provider);
    // Connections need the secrets key; the sync worker function runs the syncs.
    if let Some(sf) = env.salesforce.config(None)? {
        state.salesforce = Some(sf.access()?);
    }
    if let (Ok(issuer), Ok(audience)) = (
        std::env::var("CHRONICLE_OIDC_ISSUER"),
        std::env::var("CHRONICLE_OIDC_AUDIENCE"),
    ) {
        state.oidc = Some(std::sync::Arc::new(api::oidc::Oidc::new(
            &issuer, &audience,
        )));
    }
    lambda_http::run(api::app(state)).await
}
