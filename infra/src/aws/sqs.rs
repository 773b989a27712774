//! `chronicle project --backend aws`: a projector fed by its SQS queue (EventBridge's rule
//! target). Delivery is at least once and in no particular order; the engine skips
//! duplicates and fills gaps from the store. A message is deleted only after its event is
//! applied; a message that cannot be applied stays, and after the queue's maximum receives
//! its redrive policy moves it to the dead-letter queue, while other streams go on.

use super::dynamodb::sdk_error;
use super::views::error;
use super::{Aws, DynamoEventStore, DynamoReadModelStore};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message};
use domain::EventEnvelope;
use projections::{Projection, ProjectionProgress, Projector, ProjectorConfig, ReadModelError};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Immediate re-applications of a batch that lost a row-version race to another worker.
const CONFLICT_RETRIES: usize = 5;

/// The projector a queue consumer runs: poison is left on the queue, not recorded.
pub fn queue_projector(aws: &Aws, projection: Arc<dyn Projection>) -> Projector {
    Projector::new(
        projection,
        Arc::new(DynamoReadModelStore::new(aws)),
        Arc::new(DynamoEventStore::new(aws)),
        ProjectionProgress::default(),
        ProjectorConfig {
            batch_size: 10,
            record_dead_letters: false,
            ..ProjectorConfig::default()
        },
    )
}

/// The envelope inside an EventBridge event delivered to SQS (`detail`).
pub(crate) fn envelope(body: &str) -> Result<EventEnvelope, String> {
    let event: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    let detail = event.get("detail").cloned().unwrap_or(event);
    serde_json::from_value(detail).map_err(|e| format!("not an event envelope: {e}"))
}

/// One queue projector per read model the bus feeds (`projections::queue_fed()`): every event reaches one queue
/// and each projector applies the events of its kind.
pub fn queue_projectors(aws: &Aws, projections: Vec<Arc<dyn Projection>>) -> Vec<Projector> {
    projections
        .into_iter()
        .map(|p| queue_projector(aws, p))
        .collect()
}

/// Applies a batch of SQS message bodies (EventBridge events, as `(message id, body)`) to
/// every projector and returns the ids of the messages that must stay on the queue:
/// unreadable, or poison to any projector. The polling worker and the Lambda handler
/// (partial batch response) share it.
pub async fn apply_messages(
    projectors: &[Projector],
    messages: &[(&str, &str)],
) -> Result<Vec<String>, ReadModelError> {
    let mut failed = Vec::new();
    let mut events = Vec::new();
    let mut ids = Vec::new();
    for (id, body) in messages {
        match envelope(body) {
            Ok(e) => {
                events.push(e);
                ids.push(*id);
            }
            Err(reason) => {
                tracing::error!(message_id = id, %reason, "unreadable message left for the dead-letter queue");
                failed.push((*id).to_owned());
            }
        }
    }
    let mut poisoned = Vec::new();
    for projector in projectors {
        let mut attempt = 0;
        let outcome = loop {
            match projector.apply_batch(&events, None).await {
                Err(ReadModelError::Conflict { .. }) if attempt < CONFLICT_RETRIES => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(rand::random_range(1..=20))).await;
                }
                other => break other?,
            }
        };
        poisoned.extend(outcome.poisoned);
    }
    for (id, e) in ids.iter().zip(&events) {
        if poisoned
            .iter()
            .any(|(s, v)| *s == e.stream_id && *v == e.version)
        {
            tracing::error!(
                tenant_id = %e.tenant_id, stream_id = %e.stream_id, version = e.version,
                "poison event left for the dead-letter queue"
            );
            failed.push((*id).to_owned());
        }
    }
    Ok(failed)
}

pub struct SqsProjector {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    projectors: Vec<Projector>,
    wait: Duration,
}

impl SqsProjector {
    /// A worker for `projections` on the projector queue; long-polls for `wait`.
    pub async fn new(
        aws: &Aws,
        projections: Vec<Arc<dyn Projection>>,
        wait: Duration,
    ) -> Result<Self, ReadModelError> {
        let queue_url = aws
            .sqs
            .get_queue_url()
            .queue_name(&aws.names.projector_queue)
            .send()
            .await
            .map_err(|e| error(sdk_error(e)))?
            .queue_url()
            .unwrap_or_default()
            .to_owned();
        Ok(Self {
            sqs: aws.sqs.clone(),
            queue_url,
            projectors: queue_projectors(aws, projections),
            wait,
        })
    }

    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let step = tokio::select! {
                r = self.poll_once() => r,
                () = &mut shutdown => return,
            };
            if let Err(e) = step {
                tracing::warn!(error = %e, "projector poll failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(500)) => {},
                    () = &mut shutdown => return,
                }
            }
        }
    }

    /// Receives one batch, applies it, deletes what was applied; returns messages deleted.
    pub async fn poll_once(&self) -> Result<usize, ReadModelError> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(i32::try_from(self.wait.as_secs()).unwrap_or(20))
            .send()
            .await
            .map_err(|e| error(sdk_error(e)))?;
        let messages = out.messages();
        if messages.is_empty() {
            return Ok(0);
        }
        let bodies: Vec<(&str, &str)> = messages
            .iter()
            .map(|m| {
                (
                    m.message_id().unwrap_or_default(),
                    m.body().unwrap_or_default(),
                )
            })
            .collect();
        let failed = apply_messages(&self.projectors, &bodies).await?;
        let (left, done): (Vec<&Message>, Vec<&Message>) = messages
            .iter()
            .partition(|m| failed.iter().any(|f| Some(f.as_str()) == m.message_id()));
        self.delete(&done).await?;
        self.retry_soon(&left).await;
        Ok(done.len())
    }

    /// A message that failed comes back after a short pause instead of the queue's full
    /// visibility timeout; its receive count climbs to the redrive limit just the same.
    async fn retry_soon(&self, messages: &[&Message]) {
        for m in messages {
            let result = self
                .sqs
                .change_message_visibility()
                .queue_url(&self.queue_url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .visibility_timeout(1)
                .send()
                .await;
            if let Err(e) = result {
                tracing::warn!(error = %sdk_error(e), "could not shorten a failed message's visibility");
            }
        }
    }

    async fn delete(&self, messages: &[&Message]) -> Result<(), ReadModelError> {
        if messages.is_empty() {
            return Ok(());
        }
        let entries = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .map_err(|e| ReadModelError::Backend(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = self
            .sqs
            .delete_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| error(sdk_error(e)))?;
        if !out.failed().is_empty() {
            // Not deleted means delivered again: harmless, the engine skips duplicates.
            tracing::warn!(
                failed = out.failed().len(),
                "some applied messages were not deleted"
            );
        }
        Ok(())
    }
}
