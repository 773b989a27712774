//! The analytics consumer as a Lambda function fed by a Kinesis event source: the service
//! leases the shards and keeps the checkpoints (`chronicle analytics` does that itself
//! where the consumer runs as a process); each batch of records is folded into the daily
//! figures, each event once however often it is delivered. A failure fails the batch,
//! which the service retries (bisecting it) and then sends to the failure queue.

use base64::Engine;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    chronicle_lambda::init_logs();
    let aws = chronicle_lambda::aws().await;
    let projector = Arc::new(infra::aws::analytics_projector(&aws));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let projector = projector.clone();
        async move {
            let mut events = Vec::new();
            for record in event.payload["Records"].as_array().into_iter().flatten() {
                let data = record["kinesis"]["data"].as_str().unwrap_or_default();
                let bytes = base64::engine::general_purpose::STANDARD.decode(data)?;
                match serde_json::from_slice::<domain::EventEnvelope>(&bytes) {
                    Ok(e) => events.push(e),
                    Err(e) => tracing::error!(
                        sequence_number = record["kinesis"]["sequenceNumber"].as_str(),
                        error = %e,
                        "a record that is no event envelope is skipped"
                    ),
                }
            }
            infra::aws::apply_analytics(&projector, &events).await?;
            Ok::<Value, Error>(json!({ "applied": events.len() }))
        }
    }))
    .await
}
