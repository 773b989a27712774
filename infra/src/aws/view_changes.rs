//! The views table's DynamoDB stream, followed by each API server to learn which tenants'
//! read models changed: what wakes that tenant's `GET /events/stream` readers, where the
//! projectors run as SQS workers in other processes.
//!
//! Why the table's stream, not an SQS queue per server: the views' changes are what a
//! stream must wait for (an event is sent once the read models show it), and the table's
//! stream carries exactly those, with no resource per server to create, subscribe and
//! delete when a server goes away. The stream is `KEYS_ONLY`: a row's key names its tenant
//! (`T#<tenant>#V#<view>`), which is all a wake-up needs. DynamoDB Streams serves at most
//! five `GetRecords` a second per shard, shared by every reader, so a follower asks each
//! shard at most twice a second when it is idle: two servers, or more behind a throttle
//! that only delays wake-ups (each stream also rechecks the log every 10 s on its own).
//!
//! Followers start at the stream's newest records (`LATEST`): a server only cares about
//! changes from its start; shards that appear later (splits) are read from their start.

use super::Aws;
use super::dynamodb::sdk_error;
use super::relay::{stream_arn, stream_shards};
use super::views::error;
use aws_sdk_dynamodbstreams::types::{AttributeValue, ShardIteratorType};
use domain::TenantId;
use projections::{ReadModelError, ViewChanges};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How long an idle follower waits between two reads of a shard.
const IDLE: Duration = Duration::from_millis(500);

/// How often the follower looks for new shards when none has closed.
const RESHARD: Duration = Duration::from_secs(30);

/// The tenant a views-table key belongs to: `T#<tenant>#V#<view>[#G<n>]`; none for the
/// table's other items (checkpoints, dead letters, generations).
pub fn tenant_of(pk: &str) -> Option<TenantId> {
    let rest = pk.strip_prefix("T#")?;
    let (tenant, _) = rest.split_once("#V#")?;
    TenantId::parse(tenant).ok()
}

struct Follower {
    aws: Aws,
    changes: Arc<ViewChanges>,
    /// The shards read so far and, for those still open, where the next read starts.
    known: HashSet<String>,
    iterators: HashMap<String, String>,
    started: bool,
}

impl Follower {
    /// Finds the stream's shards; an open shard not yet known gets an iterator. False when
    /// the views table has no stream (set up before it had one: `chronicle setup` adds it).
    async fn reshard(&mut self) -> Result<bool, ReadModelError> {
        let Some(arn) = stream_arn(&self.aws, &self.aws.names.views_table).await? else {
            return Ok(false);
        };
        for shard in stream_shards(&self.aws, &arn).await? {
            let Some(id) = shard.shard_id().map(str::to_owned) else {
                continue;
            };
            if !self.known.insert(id.clone()) {
                continue;
            }
            let open = shard
                .sequence_number_range()
                .is_none_or(|r| r.ending_sequence_number().is_none());
            if !open {
                continue;
            }
            // At the start, only what comes next; a shard found later, all of it.
            let from = if self.started {
                ShardIteratorType::TrimHorizon
            } else {
                ShardIteratorType::Latest
            };
            let out = self
                .aws
                .streams
                .get_shard_iterator()
                .stream_arn(&arn)
                .shard_id(&id)
                .shard_iterator_type(from)
                .send()
                .await
                .map_err(|e| error(sdk_error(e)))?;
            if let Some(it) = out.shard_iterator() {
                self.iterators.insert(id, it.to_owned());
            }
        }
        self.started = true;
        Ok(true)
    }

    /// Reads every open shard once; tells `changes` of each tenant whose rows changed.
    /// Returns how many records, and whether a shard closed (time to look for its children).
    async fn read(&mut self) -> Result<(usize, bool), ReadModelError> {
        let mut records = 0;
        let mut closed = false;
        let counter = metrics::counter!("chronicle_view_changes_total");
        for id in self.iterators.keys().cloned().collect::<Vec<_>>() {
            let Some(it) = self.iterators.remove(&id) else {
                continue;
            };
            let page = match self
                .aws
                .streams
                .get_records()
                .shard_iterator(it)
                .limit(1000)
                .send()
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    // The shard is read again from its newest records at the next reshard
                    // (an expired iterator, a trimmed shard): wake-ups missed meanwhile are
                    // covered by the streams' own recheck.
                    self.known.remove(&id);
                    return Err(error(sdk_error(e)));
                }
            };
            let mut tenants: Vec<TenantId> = page
                .records()
                .iter()
                .filter_map(|r| r.dynamodb().and_then(|d| d.keys()))
                .filter_map(|keys| match keys.get("pk") {
                    Some(AttributeValue::S(pk)) => tenant_of(pk),
                    _ => None,
                })
                .collect();
            records += page.records().len();
            counter.increment(tenants.len() as u64);
            tenants.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
            tenants.dedup();
            for t in &tenants {
                self.changes.changed(t);
            }
            match page.next_shard_iterator() {
                Some(next) => {
                    self.iterators.insert(id, next.to_owned());
                }
                None => closed = true,
            }
        }
        Ok((records, closed))
    }
}

/// Follows the views table's stream until `shutdown`, feeding `changes`; while the table
/// has no stream, `changes` stays unfed (the event streams then poll the log).
pub async fn follow(aws: Aws, changes: Arc<ViewChanges>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut f = Follower {
        aws,
        changes: changes.clone(),
        known: HashSet::new(),
        iterators: HashMap::new(),
        started: false,
    };
    let mut resharded: Option<tokio::time::Instant> = None;
    let mut warned = false;
    loop {
        let due = resharded.is_none_or(|at| at.elapsed() >= RESHARD);
        let step = async {
            if due {
                let found = f.reshard().await?;
                changes.set_fed(found);
                if !found {
                    return Ok((0, true, false));
                }
            }
            let (records, closed) = f.read().await?;
            Ok::<_, ReadModelError>((records, closed, true))
        };
        let pause = tokio::select! {
            r = step => match r {
                Ok((_, _, false)) => {
                    if !warned {
                        tracing::warn!(table = %f.aws.names.views_table, "the views table has no stream: event streams poll the log (run `chronicle setup --backend aws`)");
                        warned = true;
                    }
                    resharded = Some(tokio::time::Instant::now());
                    RESHARD
                }
                Ok((records, closed, true)) => {
                    if due {
                        resharded = Some(tokio::time::Instant::now());
                    }
                    if closed {
                        resharded = None;
                    }
                    if records == 0 { IDLE } else { Duration::ZERO }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "following the views table's stream failed; retrying");
                    resharded = None;
                    Duration::from_secs(2)
                }
            },
            () = &mut shutdown => return,
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {},
            () = &mut shutdown => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tenant_of;

    #[test]
    fn a_row_key_names_its_tenant_and_other_items_none() {
        assert_eq!(
            tenant_of("T#acme#V#tasks").map(|t| t.as_str().to_owned()),
            Some("acme".to_owned())
        );
        assert_eq!(
            tenant_of("T#acme#V#tasks#G2").map(|t| t.as_str().to_owned()),
            Some("acme".to_owned())
        );
        assert!(tenant_of("DL#tasks").is_none());
        assert!(tenant_of("CP#tasks").is_none());
        assert!(tenant_of("T#acme").is_none());
    }
}
