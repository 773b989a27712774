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

pub struct SqsProjector {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    projector: Projector,
    wait: Duration,
}

/// The envelope inside an EventBridge event delivered to SQS (`detail`).
fn envelope(message: &Message) -> Result<EventEnvelope, String> {
    let body = message.body().ok_or("empty message")?;
    let event: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    let detail = event.get("detail").cloned().unwrap_or(event);
    serde_json::from_value(detail).map_err(|e| format!("not an event envelope: {e}"))
}

impl SqsProjector {
    /// A worker for `projection` on the projector queue; long-polls for `wait`.
    pub async fn new(
        aws: &Aws,
        projection: Arc<dyn Projection>,
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
        let projector = Projector::new(
            projection,
            Arc::new(DynamoReadModelStore::new(aws)),
            Arc::new(DynamoEventStore::new(aws)),
            ProjectionProgress::default(),
            ProjectorConfig {
                batch_size: 10,
                record_dead_letters: false,
            },
        );
        Ok(Self {
            sqs: aws.sqs.clone(),
            queue_url,
            projector,
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
        let mut events = Vec::new();
        let mut applied: Vec<&Message> = Vec::new();
        for m in messages {
            match envelope(m) {
                Ok(e) => {
                    events.push(e);
                    applied.push(m);
                }
                Err(reason) => tracing::error!(
                    message_id = m.message_id().unwrap_or_default(),
                    %reason,
                    "unreadable message left for the dead-letter queue"
                ),
            }
        }
        let outcome = self.apply(&events).await?;
        let keep: Vec<&Message> = applied
            .iter()
            .zip(&events)
            .filter(|(_, e)| {
                outcome
                    .poisoned
                    .iter()
                    .any(|(s, v)| *s == e.stream_id && *v == e.version)
            })
            .map(|(m, e)| {
                tracing::error!(
                    tenant_id = %e.tenant_id, stream_id = %e.stream_id, version = e.version,
                    "poison event left for the dead-letter queue"
                );
                *m
            })
            .collect();
        let done: Vec<&Message> = applied
            .into_iter()
            .filter(|m| !keep.iter().any(|k| std::ptr::eq(*k, *m)))
            .collect();
        self.delete(&done).await?;
        let left: Vec<&Message> = messages
            .iter()
            .filter(|m| !done.iter().any(|d| std::ptr::eq(*d, *m)))
            .collect();
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

    async fn apply(
        &self,
        events: &[EventEnvelope],
    ) -> Result<projections::BatchOutcome, ReadModelError> {
        let mut attempt = 0;
        loop {
            match self.projector.apply_batch(events, None).await {
                Err(ReadModelError::Conflict { .. }) if attempt < CONFLICT_RETRIES => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(rand::random_range(1..=20))).await;
                }
                other => return other,
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
