//! `chronicle worker --backend aws`: the AI worker fed by its own SQS queue, the target of
//! the EventBridge rule for AIQuerySubmitted. A message stays invisible while its query
//! runs (the worker extends its visibility), and is deleted once the query is COMPLETED or
//! FAILED, or another worker has taken it over. A message that cannot be run (unreadable,
//! a query that cannot be loaded, a store that fails) comes back after a short pause, and
//! after the queue's maximum receives its redrive policy moves it to the dead-letter
//! queue, while other queries go on.

use super::Aws;
use super::dynamodb::sdk_error;
use super::setup::AI_VISIBILITY_SECS;
use super::sqs::envelope;
use super::views::error;
use aws_sdk_sqs::types::Message;
use commands::ai_worker::AiWorker;
use projections::ReadModelError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub struct AiQueueWorker {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    worker: Arc<AiWorker>,
    wait: Duration,
    /// Messages received (and queries run) at once, at most 10.
    batch: i32,
}

impl AiQueueWorker {
    pub async fn new(
        aws: &Aws,
        worker: Arc<AiWorker>,
        wait: Duration,
        concurrency: usize,
    ) -> Result<Self, ReadModelError> {
        let queue_url = aws
            .sqs
            .get_queue_url()
            .queue_name(&aws.names.ai_queue)
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
                tracing::warn!(error = %e, "AI queue poll failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(500)) => {},
                    () = &mut shutdown => return,
                }
            }
        }
    }

    /// Receives a batch and runs its queries at once; returns the messages deleted.
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

    /// Runs one message's query, keeping the message invisible meanwhile; true when the
    /// message was deleted.
    async fn run_one(&self, m: &Message) -> bool {
        let receipt = m.receipt_handle().unwrap_or_default();
        let run = run_ai_message(
            &self.worker,
            m.message_id().unwrap_or_default(),
            m.body().unwrap_or_default(),
        );
        tokio::pin!(run);
        let beat = Duration::from_secs(u64::from(AI_VISIBILITY_SECS) / 2);
        let outcome = loop {
            tokio::select! {
                r = &mut run => break r,
                () = tokio::time::sleep(beat) => self.visible_in(receipt, AI_VISIBILITY_SECS).await,
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
                // Delivered again, it finds the query finished and is deleted then.
                tracing::warn!(error = %sdk_error(e), "could not delete a done message");
                false
            }
        }
    }
}

/// Runs the query of one message (an EventBridge event's body): `Ok` when the message is
/// done with (the query is final, taken over, or the event is not a submission), `Err`
/// when it must come back. The polling worker and the Lambda handler share it.
pub async fn run_ai_message(worker: &AiWorker, message_id: &str, body: &str) -> Result<(), ()> {
    let event = match envelope(body) {
        Ok(e) => e,
        Err(reason) => {
            tracing::error!(message_id, %reason, "unreadable message left for the dead-letter queue");
            return Err(());
        }
    };
    if !AiWorker::starts_work(&event) {
        return Ok(());
    }
    match worker.handle(&event).await {
        Ok(processed) => {
            tracing::info!(tenant_id = %event.tenant_id, query_id = event.stream_id.instance(), outcome = ?processed, "AI query done");
            Ok(())
        }
        Err(e) => {
            tracing::error!(tenant_id = %event.tenant_id, query_id = event.stream_id.instance(), message_id, error = %e, "AI query could not be run; the message comes back");
            Err(())
        }
    }
}
