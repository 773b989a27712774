//! `chronicle worker --backend aws`: a background worker (`commands::worker::EventWorker`:
//! the AI worker, the Salesforce sync worker) fed by its own SQS queue, the target of the
//! EventBridge rule for the events that give it work. A message stays invisible while its
//! work runs (the worker extends its visibility), and is deleted once the work is done. A
//! message whose work fails comes back after a short pause, and after the queue's maximum
//! receives its redrive policy moves it to the dead-letter queue, while other work goes on.

use super::Aws;
use super::dynamodb::sdk_error;
use super::sqs::envelope;
use super::views::error;
use aws_sdk_sqs::types::Message;
use commands::worker::EventWorker;
use projections::ReadModelError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub struct QueueWorker {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    worker: Arc<dyn EventWorker>,
    wait: Duration,
    /// Messages received (and run) at once, at most 10.
    batch: i32,
    /// How long a received message stays invisible, extended while its work runs.
    visibility_secs: u32,
}

impl QueueWorker {
    /// A consumer of queue `queue` (its name) for `worker`.
    pub async fn new(
        aws: &Aws,
        queue: &str,
        worker: Arc<dyn EventWorker>,
        (wait, concurrency): (Duration, usize),
        visibility_secs: u32,
    ) -> Result<Self, ReadModelError> {
        let queue_url = aws
            .sqs
            .get_queue_url()
            .queue_name(queue)
            .send()
            .await
            .map_err(|e| error(sdk_error(e)))?
            .queue_url()
            .unwrap_or_default()
            .to_owned();
        Ok(Self {
            sqs: aws.sqs.clone(),
            queue_url,
            worker,
            wait,
            batch: i32::try_from(concurrency.clamp(1, 10)).unwrap_or(10),
            visibility_secs,
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
                tracing::warn!(worker = self.worker.name(), error = %e, "queue poll failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(500)) => {},
                    () = &mut shutdown => return,
                }
            }
        }
    }

    /// Receives a batch and runs its work at once; returns the messages deleted.
    pub async fn poll_once(&self) -> Result<usize, ReadModelError> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(self.batch)
            .wait_time_seconds(i32::try_from(self.wait.as_secs()).unwrap_or(20))
            .send()
            .await
            .map_err(|e| error(sdk_error(e)))?;
        let runs = out.messages().iter().map(|m| self.run_one(m));
        let done = futures::future::join_all(runs).await;
        Ok(done.into_iter().filter(|d| *d).count())
    }

    /// Runs one message's work, keeping the message invisible meanwhile; true when the
    /// message was deleted.
    async fn run_one(&self, m: &Message) -> bool {
        let receipt = m.receipt_handle().unwrap_or_default();
        let run = run_message(
            self.worker.as_ref(),
            m.message_id().unwrap_or_default(),
            m.body().unwrap_or_default(),
        );
        tokio::pin!(run);
        let beat = Duration::from_secs(u64::from(self.visibility_secs / 2).max(1));
        let outcome = loop {
            tokio::select! {
                r = &mut run => break r,
                () = tokio::time::sleep(beat) => self.visible_in(receipt, self.visibility_secs).await,
            }
        };
        match outcome {
            Ok(()) => self.delete(receipt).await,
            Err(()) => {
                self.visible_in(receipt, 1).await;
                false
            }
        }
    }

    async fn visible_in(&self, receipt: &str, secs: u32) {
        let result = self
            .sqs
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(i32::try_from(secs).unwrap_or(i32::MAX))
            .send()
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %sdk_error(e), "could not change a message's visibility");
        }
    }

    async fn delete(&self, receipt: &str) -> bool {
        match self
            .sqs
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .send()
            .await
        {
            Ok(_) => true,
            Err(e) => {
                // Delivered again, its work is found done and it is deleted then.
                tracing::warn!(error = %sdk_error(e), "could not delete a done message");
                false
            }
        }
    }
}

/// Does the work of one message (an EventBridge event's body): `Ok` when the message is
/// done with (the work is done, or the event gives this worker none), `Err` when it must
/// come back. The polling consumer and the Lambda handlers share it.
pub async fn run_message(worker: &dyn EventWorker, message_id: &str, body: &str) -> Result<(), ()> {
    let name = worker.name();
    if is_scheduled(body) {
        return worker.tick().await.map_err(|e| {
            tracing::error!(worker = name, message_id, error = %e, "scheduled work failed; the message comes back");
        });
    }
    let event = match envelope(body) {
        Ok(e) => e,
        Err(reason) => {
            tracing::error!(worker = name, message_id, %reason, "unreadable message left for the dead-letter queue");
            return Err(());
        }
    };
    if !worker.starts_work(&event) {
        return Ok(());
    }
    worker.handle(&event).await.map_err(|e| {
        tracing::error!(worker = name, tenant_id = %event.tenant_id, stream_id = %event.stream_id, message_id, error = %e, "work failed; the message comes back");
    })
}

/// An EventBridge schedule's event (`detail-type` "Scheduled Event", `source` aws.events).
fn is_scheduled(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body)
        .is_ok_and(|v| v["detail-type"] == "Scheduled Event" && v["source"] == "aws.events")
}
