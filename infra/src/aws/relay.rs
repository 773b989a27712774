//! `chronicle relay`: DynamoDB Streams → EventBridge + Kinesis. The store's own write is the
//! only write (no dual writes); the relay reads the table's stream shard by shard, parents
//! before children, publishes each new event, and checkpoints the last sequence number per
//! shard, so a restart neither skips events nor republishes the whole stream.

use super::Aws;
use super::dynamodb::sdk_error;
use super::item::{envelope_from_item, from_dynamodb_json, from_stream_image, get_s, s};
use super::publish::{EventBridgePublisher, KinesisPublisher, PublishError};
use super::views::{DynamoReadModelStore, error};
use aws_sdk_dynamodbstreams::types::{OperationType, Shard, ShardIteratorType};
use domain::EventEnvelope;
use projections::ReadModelError;
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] ReadModelError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("the events table has no stream; run `chronicle setup --backend aws`")]
    NoStream,
}

pub struct Relay {
    aws: Aws,
    checkpoints: DynamoReadModelStore,
    eventbridge: EventBridgePublisher,
    kinesis: KinesisPublisher,
}

/// Where the relay is in one shard.
#[derive(Debug, Clone, Default, PartialEq)]
struct Progress {
    sequence: Option<String>,
    done: bool,
}

impl Relay {
    pub fn new(aws: &Aws) -> Self {
        Self {
            checkpoints: DynamoReadModelStore::new(aws),
            eventbridge: EventBridgePublisher::new(aws.eventbridge.clone(), aws.names.bus.clone()),
            kinesis: KinesisPublisher::new(aws.kinesis.clone(), aws.names.kinesis_stream.clone()),
            aws: aws.clone(),
        }
    }

    /// Publishes the events among DynamoDB Streams records as a Lambda receives them
    /// (`Records[].dynamodb.NewImage` in DynamoDB JSON). On error the Lambda fails the
    /// batch and the service retries it: publishing is at least once.
    pub async fn publish_records(
        &self,
        records: &[serde_json::Value],
    ) -> Result<usize, RelayError> {
        let events = records
            .iter()
            .filter(|r| r["eventName"] == "INSERT")
            .map(|r| from_dynamodb_json(&r["dynamodb"]["NewImage"]))
            .filter(|item| get_s(item, "kind").ok() == Some("event"))
            .map(|item| {
                envelope_from_item(&item).map_err(|e| ReadModelError::Backend(e.to_string()))
            })
            .collect::<Result<Vec<EventEnvelope>, _>>()?;
        let events = publishable(events);
        self.eventbridge.publish(&events).await?;
        self.kinesis.publish(&events).await?;
        Ok(events.len())
    }

    /// Relays until `shutdown` resolves, polling every `interval` when there is nothing new.
    pub async fn run(&self, interval: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let pass = tokio::select! {
                r = self.pump() => r,
                () = &mut shutdown => return,
            };
            let pause = match pass {
                Ok(0) => interval,
                Ok(n) => {
                    tracing::debug!(published = n, "relayed");
                    Duration::ZERO
                }
                Err(e) => {
                    tracing::warn!(error = %e, "relay pass failed; retrying");
                    interval.max(Duration::from_millis(500))
                }
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {},
                () = &mut shutdown => return,
            }
        }
    }

    /// One pass over every shard: publishes what is new; returns how many events.
    pub async fn pump(&self) -> Result<usize, RelayError> {
        let arn = stream_arn(&self.aws, &self.aws.names.events_table)
            .await?
            .ok_or(RelayError::NoStream)?;
        let shards = stream_shards(&self.aws, &arn).await?;
        let mut progress = HashMap::new();
        for shard in &shards {
            let id = shard.shard_id().unwrap_or_default().to_owned();
            progress.insert(id.clone(), self.progress(&id).await?);
        }
        let mut published = 0;
        for shard in &shards {
            let id = shard.shard_id().unwrap_or_default();
            if progress.get(id).is_some_and(|p| p.done) {
                continue;
            }
            // Parents first: a child's records come after its parent's.
            let parent_pending = shard
                .parent_shard_id()
                .and_then(|p| progress.get(p))
                .is_some_and(|p| !p.done);
            if parent_pending {
                continue;
            }
            let mut p = progress.get(id).cloned().unwrap_or_default();
            published += self.drain(&arn, id, &mut p).await?;
            progress.insert(id.to_owned(), p);
        }
        Ok(published)
    }

    fn checkpoint_key(shard: &str) -> String {
        format!("RELAY#{shard}")
    }

    async fn progress(&self, shard: &str) -> Result<Progress, RelayError> {
        let item = self
            .checkpoints
            .get_value(&Self::checkpoint_key(shard))
            .await?;
        Ok(item.map_or_else(Progress::default, |i| Progress {
            sequence: get_s(&i, "sequence").ok().map(str::to_owned),
            done: matches!(
                i.get("done"),
                Some(aws_sdk_dynamodb::types::AttributeValue::Bool(true))
            ),
        }))
    }

    async fn save(&self, shard: &str, p: &Progress) -> Result<(), RelayError> {
        let mut attrs = HashMap::from([(
            "done".to_owned(),
            aws_sdk_dynamodb::types::AttributeValue::Bool(p.done),
        )]);
        if let Some(seq) = &p.sequence {
            attrs.insert("sequence".to_owned(), s(seq.clone()));
        }
        self.checkpoints
            .put_value(&Self::checkpoint_key(shard), attrs)
            .await?;
        Ok(())
    }

    /// Publishes a shard's records after its checkpoint, a page at a time, checkpointing
    /// each page after it is published.
    async fn drain(&self, arn: &str, shard: &str, p: &mut Progress) -> Result<usize, RelayError> {
        let (kind, seq) = match &p.sequence {
            Some(seq) => (ShardIteratorType::AfterSequenceNumber, Some(seq.clone())),
            None => (ShardIteratorType::TrimHorizon, None),
        };
        let out = self
            .aws
            .streams
            .get_shard_iterator()
            .stream_arn(arn)
            .shard_id(shard)
            .shard_iterator_type(kind)
            .set_sequence_number(seq)
            .send()
            .await
            .map_err(|e| error(sdk_error(e)))?;
        let mut iterator = out.shard_iterator().map(str::to_owned);
        let mut published = 0;
        while let Some(it) = iterator.take() {
            let page = self
                .aws
                .streams
                .get_records()
                .shard_iterator(it)
                .limit(1000)
                .send()
                .await
                .map_err(|e| error(sdk_error(e)))?;
            let records = page.records();
            let events = records
                .iter()
                .filter(|r| r.event_name() == Some(&OperationType::Insert))
                .filter_map(|r| r.dynamodb().and_then(|d| d.new_image()))
                .map(from_stream_image)
                .filter(|item| get_s(item, "kind").ok() == Some("event"))
                .map(|item| {
                    envelope_from_item(&item).map_err(|e| ReadModelError::Backend(e.to_string()))
                })
                .collect::<Result<Vec<EventEnvelope>, _>>()?;
            let events = publishable(events);
            if !events.is_empty() {
                self.eventbridge.publish(&events).await?;
                self.kinesis.publish(&events).await?;
                published += events.len();
            }
            if let Some(last) = records
                .last()
                .and_then(|r| r.dynamodb())
                .and_then(|d| d.sequence_number())
            {
                p.sequence = Some(last.to_owned());
            }
            match page.next_shard_iterator() {
                Some(next) if !records.is_empty() => iterator = Some(next.to_owned()),
                Some(_) => {}
                None => p.done = true,
            }
            if !records.is_empty() || p.done {
                self.save(shard, p).await?;
            }
        }
        Ok(published)
    }
}

/// The ARN of `table`'s DynamoDB stream, if it has one.
pub(super) async fn stream_arn(aws: &Aws, table: &str) -> Result<Option<String>, ReadModelError> {
    let out = aws
        .dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| error(sdk_error(e)))?;
    Ok(out
        .table()
        .and_then(|t| t.latest_stream_arn())
        .map(str::to_owned))
}

/// Every shard of the DynamoDB stream `arn`, page by page.
pub(super) async fn stream_shards(aws: &Aws, arn: &str) -> Result<Vec<Shard>, ReadModelError> {
    let mut shards = Vec::new();
    let mut start: Option<String> = None;
    loop {
        let out = aws
            .streams
            .describe_stream()
            .stream_arn(arn)
            .set_exclusive_start_shard_id(start.take())
            .send()
            .await
            .map_err(|e| error(sdk_error(e)))?;
        let Some(d) = out.stream_description() else {
            break;
        };
        shards.extend(d.shards().iter().cloned());
        match d.last_evaluated_shard_id() {
            Some(last) => start = Some(last.to_owned()),
            None => break,
        }
    }
    Ok(shards)
}

/// The events that leave the store: all but those of private streams (credentials,
/// sessions, invitations), which hold hashed secrets no consumer needs.
fn publishable(mut events: Vec<EventEnvelope>) -> Vec<EventEnvelope> {
    events.retain(|e| !domain::user::is_private(&e.stream_id));
    events
}
