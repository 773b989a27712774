//! `chronicle analytics --backend aws`: reads the Kinesis stream the way the Kinesis Client
//! Library does and folds it into the analytics figures (`projections::analytics`).
//!
//! - Each shard has a lease item in the views table (`LEASE#<stream>` / shard id): its
//!   owner, a counter bumped by each take, an expiry, its parents and its checkpoint
//!   (`TRIM_HORIZON`, the last sequence number applied, or `SHARD_END`).
//! - A consumer takes free or expired leases with a write conditional on the counter, up
//!   to its fair share of the live consumers, and steals one from a consumer over its share;
//!   it renews what it holds, and a lease it finds taken is dropped at once.
//! - A shard is read from `AFTER_SEQUENCE_NUMBER` its checkpoint, or from `TRIM_HORIZON`
//!   without one. A child shard (after a reshard) is taken only once every parent is at
//!   `SHARD_END`, so a stream's events are applied in order across the reshard.
//! - The figures of a batch commit first; then the checkpoint is written, conditional on
//!   the lease being still this consumer's. A crash in between, or a lease moving to
//!   another consumer, re-delivers records: each event counts once all the same, because
//!   the projection's rows remember the stream version they reflect.
//! - `chronicle_analytics_millis_behind_latest{shard_id}` is each shard's lag.

use super::dynamodb::sdk_error;
use super::item::{Item, get_n, get_s, n, s};
use super::views::error;
use super::{Aws, DynamoEventStore, DynamoReadModelStore};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kinesis::types::ShardIteratorType;
use domain::EventEnvelope;
use projections::{ProjectionProgress, Projector, ProjectorConfig, ReadModelError};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

const TRIM_HORIZON: &str = "TRIM_HORIZON";
const SHARD_END: &str = "SHARD_END";

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// How long a lease lasts unless renewed; renewed every third of it.
    pub lease: Duration,
    /// The pause after a round in which no shard had records.
    pub idle: Duration,
    /// Records per GetRecords.
    pub limit: i32,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(10),
            idle: Duration::from_millis(500),
            limit: 1000,
        }
    }
}

/// A shard's lease as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub shard_id: String,
    pub owner: Option<String>,
    pub counter: u64,
    /// Milliseconds since the epoch.
    pub expires: i64,
    pub checkpoint: String,
    pub parents: Vec<String>,
}

impl Lease {
    fn ended(&self) -> bool {
        self.checkpoint == SHARD_END
    }

    fn live(&self, now: i64) -> bool {
        self.owner.is_some() && self.expires > now
    }
}

/// A lease this consumer holds, and where its reading stands.
struct Held {
    counter: u64,
    renewed: i64,
    iterator: Option<String>,
    checkpoint: String,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub struct KinesisConsumer {
    kinesis: aws_sdk_kinesis::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
    /// The views table, where the leases are kept.
    views: DynamoReadModelStore,
    stream: String,
    owner: String,
    projector: Projector,
    config: ConsumerConfig,
    held: Mutex<BTreeMap<String, Held>>,
}

fn lease_of(item: &Item) -> Result<Lease, ReadModelError> {
    let bad =
        |e: super::item::ItemError| ReadModelError::Backend(format!("unreadable lease: {}", e.0));
    Ok(Lease {
        shard_id: get_s(item, "sk").map_err(bad)?.to_owned(),
        owner: item
            .get("owner")
            .and_then(|v| v.as_s().ok())
            .filter(|o| !o.is_empty())
            .cloned(),
        counter: get_n(item, "counter").map_err(bad)?,
        expires: item
            .get("expires")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        checkpoint: get_s(item, "checkpoint").map_err(bad)?.to_owned(),
        parents: item
            .get("parents")
            .and_then(|v| v.as_l().ok())
            .map(|l| l.iter().filter_map(|p| p.as_s().ok().cloned()).collect())
            .unwrap_or_default(),
    })
}

fn conditional_failed<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

impl KinesisConsumer {
    /// A consumer named `owner` (unique per process) of the deployment's stream.
    pub fn new(aws: &Aws, owner: impl Into<String>, config: ConsumerConfig) -> Self {
        let projector = analytics_projector(aws);
        Self {
            kinesis: aws.kinesis.clone(),
            dynamodb: aws.dynamodb.clone(),
            table: aws.names.views_table.clone(),
            views: DynamoReadModelStore::new(aws),
            stream: aws.names.kinesis_stream.clone(),
            owner: owner.into(),
            projector,
            config,
            held: Mutex::default(),
        }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    fn lease_pk(&self) -> String {
        format!("LEASE#{}", self.stream)
    }

    /// Rounds until `shutdown`: leases, then a read of every shard held. On the way out
    /// the leases are given back, so another consumer takes them at once.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = Duration::from_millis(100);
        loop {
            let round = tokio::select! {
                r = self.round() => r,
                () = &mut shutdown => break,
            };
            let pause = match round {
                Ok(read) => {
                    backoff = Duration::from_millis(100);
                    if read == 0 {
                        self.config.idle
                    } else {
                        Duration::ZERO
                    }
                }
                Err(e) => {
                    tracing::warn!(owner = %self.owner, error = %e, "analytics round failed; retrying");
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    backoff
                }
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = &mut shutdown => break,
            }
        }
        self.release().await;
    }

    /// One round: list the shards, balance and renew the leases, read each held shard
    /// once. Returns the records read.
    pub async fn round(&self) -> Result<usize, ReadModelError> {
        self.sync_shards().await?;
        self.balance().await?;
        let shards: Vec<String> = self.held.lock().await.keys().cloned().collect();
        let reads = shards.iter().map(|shard| self.read_shard(shard));
        let mut total = 0;
        for r in futures::future::join_all(reads).await {
            total += r?;
        }
        Ok(total)
    }

    /// Every lease, as stored.
    pub async fn leases(&self) -> Result<Vec<Lease>, ReadModelError> {
        let items = self.views.items_of(&self.lease_pk(), None).await?;
        items.iter().map(lease_of).collect()
    }

    /// A lease for every shard the stream lists, created unowned from `TRIM_HORIZON`.
    async fn sync_shards(&self) -> Result<(), ReadModelError> {
        let mut token: Option<String> = None;
        let known: HashSet<String> = self
            .leases()
            .await?
            .into_iter()
            .map(|l| l.shard_id)
            .collect();
        loop {
            let mut req = self.kinesis.list_shards();
            req = match &token {
                Some(t) => req.next_token(t),
                None => req.stream_name(&self.stream),
            };
            let page = req.send().await.map_err(|e| error(sdk_error(e)))?;
            for shard in page.shards() {
                let id = shard.shard_id().to_owned();
                if known.contains(&id) {
                    continue;
                }
                let parents: Vec<AttributeValue> =
                    [shard.parent_shard_id(), shard.adjacent_parent_shard_id()]
                        .into_iter()
                        .flatten()
                        .map(s)
                        .collect();
                let put = self
                    .dynamodb
                    .put_item()
                    .table_name(&self.table)
                    .item("pk", s(self.lease_pk()))
                    .item("sk", s(&id))
                    .item("counter", n(0))
                    .item("expires", n(0))
                    .item("checkpoint", s(TRIM_HORIZON))
                    .item("parents", AttributeValue::L(parents))
                    .condition_expression("attribute_not_exists(pk)")
                    .send()
                    .await;
                match put {
                    Ok(_) => tracing::info!(shard_id = %id, "lease created"),
                    Err(e) if e.as_service_error().is_some_and(conditional_failed) => {}
                    Err(e) => return Err(error(sdk_error(e))),
                }
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(())
    }

    /// Drops leases taken by others, renews those due, takes free ones up to a fair share
    /// of the live consumers, and steals one when none is free and another holds more
    /// than its share.
    async fn balance(&self) -> Result<(), ReadModelError> {
        let leases = self.leases().await?;
        let now = now_ms();
        let ended: HashSet<&str> = leases
            .iter()
            .filter(|l| l.ended())
            .map(|l| l.shard_id.as_str())
            .collect();
        let known: HashSet<&str> = leases.iter().map(|l| l.shard_id.as_str()).collect();
        // A parent without a lease is past the stream's retention: nothing left to read.
        let eligible: Vec<&Lease> = leases
            .iter()
            .filter(|l| !l.ended())
            .filter(|l| {
                l.parents
                    .iter()
                    .all(|p| ended.contains(p.as_str()) || !known.contains(p.as_str()))
            })
            .collect();
        let mut held = self.held.lock().await;
        held.retain(|shard, h| {
            let still = eligible.iter().any(|l| {
                &l.shard_id == shard && l.owner.as_deref() == Some(&self.owner) && l.counter == h.counter
            });
            if !still {
                tracing::info!(owner = %self.owner, shard_id = %shard, "lease lost to another consumer");
            }
            still
        });
        let renew_every = (self.config.lease / 3).as_millis() as i64;
        for (shard, h) in held.iter_mut() {
            if now - h.renewed >= renew_every && !self.renew(shard, h.counter).await? {
                h.counter = u64::MAX;
            }
            h.renewed = now;
        }
        held.retain(|_, h| h.counter != u64::MAX);

        let mut owners: HashMap<&str, usize> = HashMap::new();
        for l in eligible.iter().filter(|l| l.live(now)) {
            if let Some(o) = &l.owner {
                *owners.entry(o.as_str()).or_default() += 1;
            }
        }
        owners.entry(self.owner.as_str()).or_default();
        let share = eligible.len().div_ceil(owners.len().max(1));
        let free: Vec<&&Lease> = eligible.iter().filter(|l| !l.live(now)).collect();
        for lease in free {
            if held.len() >= share {
                break;
            }
            self.take(lease, &mut held).await?;
        }
        if held.len() < share {
            let richest = owners
                .iter()
                .filter(|(o, count)| **o != self.owner && **count > share)
                .max_by_key(|(_, count)| **count)
                .map(|(o, _)| (*o).to_owned());
            if let Some(victim) = richest
                && let Some(lease) = eligible
                    .iter()
                    .find(|l| l.live(now) && l.owner.as_deref() == Some(victim.as_str()))
            {
                tracing::info!(owner = %self.owner, from = %victim, shard_id = %lease.shard_id, "stealing a lease");
                self.take(lease, &mut held).await?;
            }
        }
        Ok(())
    }

    /// Takes `lease` if its counter is still the one seen.
    async fn take(
        &self,
        lease: &Lease,
        held: &mut BTreeMap<String, Held>,
    ) -> Result<(), ReadModelError> {
        let now = now_ms();
        let next = lease.counter + 1;
        let out = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .key("pk", s(self.lease_pk()))
            .key("sk", s(&lease.shard_id))
            .update_expression("SET #o = :me, #c = :next, expires = :exp")
            .condition_expression("#c = :seen")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_names("#c", "counter")
            .expression_attribute_values(":me", s(&self.owner))
            .expression_attribute_values(":next", n(next))
            .expression_attribute_values(":seen", n(lease.counter))
            .expression_attribute_values(":exp", n(now + self.config.lease.as_millis() as i64))
            .send()
            .await;
        match out {
            Ok(_) => {
                tracing::info!(owner = %self.owner, shard_id = %lease.shard_id, checkpoint = %lease.checkpoint, "lease taken");
                held.insert(
                    lease.shard_id.clone(),
                    Held {
                        counter: next,
                        renewed: now,
                        iterator: None,
                        checkpoint: lease.checkpoint.clone(),
                    },
                );
                Ok(())
            }
            Err(e) if e.as_service_error().is_some_and(conditional_failed) => Ok(()),
            Err(e) => Err(error(sdk_error(e))),
        }
    }

    /// Writes `set` on a lease held as `counter`; false when it is no longer ours.
    async fn write_held(
        &self,
        shard: &str,
        counter: u64,
        checkpoint: Option<&str>,
    ) -> Result<bool, ReadModelError> {
        let mut req = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .key("pk", s(self.lease_pk()))
            .key("sk", s(shard))
            .condition_expression("#o = :me AND #c = :mine")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_names("#c", "counter")
            .expression_attribute_values(":me", s(&self.owner))
            .expression_attribute_values(":mine", n(counter))
            .expression_attribute_values(
                ":exp",
                n(now_ms() + self.config.lease.as_millis() as i64),
            );
        req = match checkpoint {
            Some(cp) => req
                .update_expression("SET expires = :exp, checkpoint = :cp")
                .expression_attribute_values(":cp", s(cp)),
            None => req.update_expression("SET expires = :exp"),
        };
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(conditional_failed) => Ok(false),
            Err(e) => Err(error(sdk_error(e))),
        }
    }

    async fn renew(&self, shard: &str, counter: u64) -> Result<bool, ReadModelError> {
        self.write_held(shard, counter, None).await
    }

    /// Gives back every lease held (expired at once, owner cleared).
    async fn release(&self) {
        let held = std::mem::take(&mut *self.held.lock().await);
        for (shard, h) in held {
            let out = self
                .dynamodb
                .update_item()
                .table_name(&self.table)
                .key("pk", s(self.lease_pk()))
                .key("sk", s(&shard))
                .update_expression("SET expires = :zero REMOVE #o")
                .condition_expression("#o = :me AND #c = :mine")
                .expression_attribute_names("#o", "owner")
                .expression_attribute_names("#c", "counter")
                .expression_attribute_values(":me", s(&self.owner))
                .expression_attribute_values(":mine", n(h.counter))
                .expression_attribute_values(":zero", n(0))
                .send()
                .await;
            match out {
                Ok(_) => tracing::info!(owner = %self.owner, shard_id = %shard, "lease released"),
                Err(e) => {
                    tracing::warn!(owner = %self.owner, shard_id = %shard, error = %sdk_error(e), "lease not released; it expires")
                }
            }
        }
    }

    /// Reads one batch of a held shard, applies it, then checkpoints. Returns the records
    /// read.
    async fn read_shard(&self, shard: &str) -> Result<usize, ReadModelError> {
        let (counter, iterator, checkpoint) = {
            let held = self.held.lock().await;
            let Some(h) = held.get(shard) else {
                return Ok(0);
            };
            (h.counter, h.iterator.clone(), h.checkpoint.clone())
        };
        let iterator = match iterator {
            Some(it) => it,
            None => self.iterator(shard, &checkpoint).await?,
        };
        let out = match self
            .kinesis
            .get_records()
            .shard_iterator(&iterator)
            .limit(self.config.limit)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                // An expired iterator, say: the next round starts again from the checkpoint.
                self.set_iterator(shard, None).await;
                return Err(error(sdk_error(e)));
            }
        };
        metrics::gauge!("chronicle_analytics_millis_behind_latest", "shard_id" => shard.to_owned())
            .set(out.millis_behind_latest().unwrap_or(0) as f64);
        let records = out.records();
        let mut events: Vec<EventEnvelope> = Vec::with_capacity(records.len());
        for r in records {
            match serde_json::from_slice::<EventEnvelope>(r.data().as_ref()) {
                Ok(e) => events.push(e),
                Err(e) => {
                    metrics::counter!("chronicle_analytics_unreadable_records_total").increment(1);
                    tracing::error!(shard_id = %shard, sequence_number = r.sequence_number(), error = %e, "a record that is no event envelope is skipped");
                }
            }
        }
        if !events.is_empty()
            && let Err(e) = self.apply(&events).await
        {
            self.set_iterator(shard, None).await;
            return Err(e);
        }
        let last = records.last().map(|r| r.sequence_number().to_owned());
        // A closed shard (after a reshard) read to its end: its children may go on.
        let at_end = out.next_shard_iterator().is_none();
        let new_checkpoint = if at_end {
            Some(SHARD_END.to_owned())
        } else {
            last.clone()
        };
        if let Some(cp) = &new_checkpoint {
            if !self.write_held(shard, counter, Some(cp)).await? {
                tracing::info!(owner = %self.owner, shard_id = %shard, "lease lost before the checkpoint; another consumer goes on");
                self.held.lock().await.remove(shard);
                return Ok(records.len());
            }
            if at_end {
                tracing::info!(owner = %self.owner, shard_id = %shard, "shard read to its end");
                self.held.lock().await.remove(shard);
                return Ok(records.len());
            }
        }
        let mut held = self.held.lock().await;
        if let Some(h) = held.get_mut(shard) {
            h.iterator = out.next_shard_iterator().map(str::to_owned);
            if let Some(cp) = new_checkpoint {
                h.checkpoint = cp;
            }
        }
        Ok(records.len())
    }

    async fn set_iterator(&self, shard: &str, iterator: Option<String>) {
        if let Some(h) = self.held.lock().await.get_mut(shard) {
            h.iterator = iterator;
        }
    }

    async fn iterator(&self, shard: &str, checkpoint: &str) -> Result<String, ReadModelError> {
        let req = self
            .kinesis
            .get_shard_iterator()
            .stream_name(&self.stream)
            .shard_id(shard);
        let req = if checkpoint == TRIM_HORIZON {
            req.shard_iterator_type(ShardIteratorType::TrimHorizon)
        } else {
            req.shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(checkpoint)
        };
        let out = req.send().await.map_err(|e| error(sdk_error(e)))?;
        out.shard_iterator()
            .map(str::to_owned)
            .ok_or_else(|| ReadModelError::Unavailable(format!("no iterator for {shard}")))
    }

    async fn apply(&self, events: &[EventEnvelope]) -> Result<(), ReadModelError> {
        apply_analytics(&self.projector, events).await
    }
}

/// The analytics projection over DynamoDB, as the Kinesis consumers run it (this one, and
/// the Lambda function a Kinesis event source feeds). Poison is kept in dead letters: a
/// stream's record cannot wait on the shard.
pub fn analytics_projector(aws: &Aws) -> Projector {
    Projector::new(
        Arc::new(projections::analytics::AnalyticsProjection),
        Arc::new(DynamoReadModelStore::new(aws)),
        Arc::new(DynamoEventStore::new(aws)),
        ProjectionProgress::default(),
        ProjectorConfig {
            batch_size: 1000,
            record_dead_letters: true,
            ..ProjectorConfig::default()
        },
    )
}

/// Folds a batch of the stream's records into the figures, retrying row-version races with
/// another consumer that read the same records (a lease in hand-over).
pub async fn apply_analytics(
    projector: &Projector,
    events: &[EventEnvelope],
) -> Result<(), ReadModelError> {
    let mut attempt = 0;
    loop {
        match projector.apply_batch(events, None).await {
            Err(ReadModelError::Conflict { .. }) if attempt < 5 => attempt += 1,
            Err(e) => return Err(e),
            Ok(_) => return Ok(()),
        }
    }
}
