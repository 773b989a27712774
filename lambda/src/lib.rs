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
