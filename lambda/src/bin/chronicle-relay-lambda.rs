//! The relay as a DynamoDB Streams-triggered Lambda function: each batch of new events goes
//! to EventBridge and Kinesis; a failure fails the batch, which the service retries.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    chronicle_lambda::init_logs();
    let aws = chronicle_lambda::aws().await;
    let relay = Arc::new(infra::aws::Relay::new(&aws));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let relay = relay.clone();
        async move {
            let records = event.payload["Records"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let published = relay.publish_records(&records).await?;
            Ok::<Value, Error>(json!({ "published": published }))
        }
    }))
    .await
}
