//! Publishers of stored events: EventBridge (fan-out to the SQS-fed projectors and workers)
//! and Kinesis (analytics). Both APIs accept a batch and report failures per entry; exactly
//! the failed entries are retried, with backoff, a bounded number of times.

use super::dynamodb::sdk_error;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use domain::EventEnvelope;
use std::time::Duration;

/// EventBridge takes at most 10 entries and 256 KB per `PutEvents`.
const EB_MAX_ENTRIES: usize = 10;
const EB_MAX_BYTES: usize = 256 * 1024;
/// Kinesis takes at most 500 records per `PutRecords`.
const KINESIS_MAX_RECORDS: usize = 500;
const ATTEMPTS: u32 = 6;
pub const SOURCE: &str = "chronicle";

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{0}")]
    Service(String),
    #[error("{failed} entries still failing after {ATTEMPTS} attempts: {reason}")]
    Exhausted { failed: usize, reason: String },
    #[error("event of {0} bytes exceeds the 256 KB EventBridge limit")]
    TooLarge(usize),
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(50 * (1 << attempt.min(6)))
}

#[derive(Clone)]
pub struct EventBridgePublisher {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventBridgePublisher {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: String) -> Self {
        Self { client, bus }
    }

    fn entry(&self, e: &EventEnvelope) -> Result<(PutEventsRequestEntry, usize), PublishError> {
        let detail =
            serde_json::to_string(e).map_err(|err| PublishError::Service(err.to_string()))?;
        // EventBridge counts Source, DetailType, Detail and resources toward the entry size.
        let size = SOURCE.len() + e.event_type.len() + detail.len();
        if size > EB_MAX_BYTES {
            return Err(PublishError::TooLarge(size));
        }
        let entry = PutEventsRequestEntry::builder()
            .source(SOURCE)
            .detail_type(&e.event_type)
            .detail(detail)
            .event_bus_name(&self.bus)
            .build();
        Ok((entry, size))
    }

    /// Publishes `events` in order-preserving batches of at most 10 entries and 256 KB.
    pub async fn publish(&self, events: &[EventEnvelope]) -> Result<(), PublishError> {
        let mut batch: Vec<PutEventsRequestEntry> = Vec::new();
        let mut bytes = 0;
        for e in events {
            let (entry, size) = self.entry(e)?;
            if batch.len() == EB_MAX_ENTRIES || bytes + size > EB_MAX_BYTES {
                self.send(std::mem::take(&mut batch)).await?;
                bytes = 0;
            }
            batch.push(entry);
            bytes += size;
        }
        if !batch.is_empty() {
            self.send(batch).await?;
        }
        Ok(())
    }

    async fn send(&self, mut entries: Vec<PutEventsRequestEntry>) -> Result<(), PublishError> {
        for attempt in 0..ATTEMPTS {
            let out = self
                .client
                .put_events()
                .set_entries(Some(entries.clone()))
                .send()
                .await;
            let out = match out {
                Ok(out) => out,
                Err(e) => {
                    tracing::warn!(error = %sdk_error(e), attempt, "PutEvents failed; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
            };
            if out.failed_entry_count() == 0 {
                return Ok(());
            }
            // Results line up with entries; keep exactly the failed ones.
            let reason = out
                .entries()
                .iter()
                .find_map(|r| {
                    r.error_code()
                        .map(|c| format!("{c}: {}", r.error_message().unwrap_or_default()))
                })
                .unwrap_or_default();
            entries = entries
                .into_iter()
                .zip(out.entries())
                .filter(|(_, r)| r.error_code().is_some())
                .map(|(e, _)| e)
                .collect();
            tracing::warn!(failed = entries.len(), %reason, attempt, "PutEvents entries failed; retrying those");
            if attempt + 1 == ATTEMPTS {
                return Err(PublishError::Exhausted {
                    failed: entries.len(),
                    reason,
                });
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
        Err(PublishError::Exhausted {
            failed: entries.len(),
            reason: "PutEvents kept failing".into(),
        })
    }
}

#[derive(Clone)]
pub struct KinesisPublisher {
    client: aws_sdk_kinesis::Client,
    stream: String,
}

impl KinesisPublisher {
    pub fn new(client: aws_sdk_kinesis::Client, stream: String) -> Self {
        Self { client, stream }
    }

    /// Puts every event, partitioned by `<tenant>#<stream>` so one stream's events stay in
    /// order on one shard.
    pub async fn publish(&self, events: &[EventEnvelope]) -> Result<(), PublishError> {
        for chunk in events.chunks(KINESIS_MAX_RECORDS) {
            let records = chunk
                .iter()
                .map(|e| {
                    let data = serde_json::to_vec(e)
                        .map_err(|err| PublishError::Service(err.to_string()))?;
                    PutRecordsRequestEntry::builder()
                        .partition_key(format!("{}#{}", e.tenant_id, e.stream_id))
                        .data(Blob::new(data))
                        .build()
                        .map_err(|err| PublishError::Service(err.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.send(records).await?;
        }
        Ok(())
    }

    async fn send(&self, mut records: Vec<PutRecordsRequestEntry>) -> Result<(), PublishError> {
        for attempt in 0..ATTEMPTS {
            let out = self
                .client
                .put_records()
                .stream_name(&self.stream)
                .set_records(Some(records.clone()))
                .send()
                .await;
            let out = match out {
                Ok(out) => out,
                Err(e) => {
                    tracing::warn!(error = %sdk_error(e), attempt, "PutRecords failed; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
            };
            if out.failed_record_count().unwrap_or(0) == 0 {
                return Ok(());
            }
            let reason = out
                .records()
                .iter()
                .find_map(|r| r.error_code().map(str::to_owned))
                .unwrap_or_default();
            records = records
                .into_iter()
                .zip(out.records())
                .filter(|(_, r)| r.error_code().is_some())
                .map(|(rec, _)| rec)
                .collect();
            tracing::warn!(failed = records.len(), %reason, attempt, "PutRecords records failed; retrying those");
            if attempt + 1 == ATTEMPTS {
                return Err(PublishError::Exhausted {
                    failed: records.len(),
                    reason,
                });
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
        Err(PublishError::Exhausted {
            failed: records.len(),
            reason: "PutRecords kept failing".into(),
        })
    }
}
