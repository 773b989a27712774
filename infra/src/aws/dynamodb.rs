//! The DynamoDB event store. An append is one `TransactWriteItems`: a `Put` per new version
//! conditioned on `attribute_not_exists`, a `ConditionCheck` that the expected version
//! exists with the hash the chain continues from, and the idempotency record. A cancelled
//! transaction is read back into a typed `Conflict` or an idempotent replay.

use super::Aws;
use super::item::{
    FEED_INDEX, FEED_SHARDS, Item, envelope_from_item, event_item, feed_key, get_n, get_s,
    idempotency_key, n, position_of, s, stream_key,
};
use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    ConditionCheck, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use aws_smithy_types::error::display::DisplayErrorContext;
use chrono::Utc;
use commands::{
    AppendOutcome, AppendRequest, EventStore, ExpectedVersion, FeedCursor, FeedPage,
    IdempotentRecord, StoreError,
};
use domain::envelope::truncate_micros;
use domain::{EventEnvelope, GENESIS_HASH, StreamId, TenantId};
use projections::{ReadModelError, StreamSource};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// The service's limit on actions in one transaction.
const MAX_ACTIONS: usize = 100;
/// How often an append with `ExpectedVersion::Any` re-reads the head after losing a race.
const ANY_ATTEMPTS: usize = 100;

#[derive(Clone)]
pub struct DynamoEventStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// Last (version, hash) this process saw per stream: where an `Any` append starts
    /// without a read. Only a hint: a stale entry costs a conditional-write failure, which
    /// returns the newer event and moves the hint on.
    heads: Arc<Mutex<HashMap<StreamKey, (u64, String)>>>,
    /// `Any` appends to one stream from this process take turns (striped by stream), so
    /// they do not race each other through conditional-write failures.
    stripes: Arc<Vec<tokio::sync::Mutex<()>>>,
}

const STRIPES: usize = 64;

const MAX_CACHED_HEADS: usize = 10_000;

type StreamKey = (TenantId, StreamId);

/// Throttling, timeouts and 5xx may succeed later; anything else is a plain failure.
pub(crate) fn sdk_error<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    const RETRYABLE: &[&str] = &[
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
        "TransactionConflictException",
    ];
    let message = DisplayErrorContext(&e).to_string();
    match &e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreError::Retryable(message)
        }
        SdkError::ServiceError(se) if se.err().code().is_some_and(|c| RETRYABLE.contains(&c)) => {
            StoreError::Retryable(message)
        }
        _ => StoreError::Backend(message),
    }
}

/// Who an action of the transaction belongs to, to name the loser of a cancellation.
#[derive(Clone, Copy)]
enum Owner {
    Stream(usize),
    Idempotency,
}

impl DynamoEventStore {
    pub fn new(aws: &Aws) -> Self {
        Self {
            client: aws.dynamodb.clone(),
            table: aws.names.events_table.clone(),
            heads: Arc::default(),
            stripes: Arc::new((0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect()),
        }
    }

    fn stripe(&self, stream: &StreamId) -> &tokio::sync::Mutex<()> {
        let h = stream
            .as_str()
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        &self.stripes[h % STRIPES]
    }

    fn cached_head(&self, tenant: &TenantId, stream: &StreamId) -> Option<(u64, String)> {
        let heads = self.heads.lock().ok()?;
        heads.get(&(tenant.clone(), stream.clone())).cloned()
    }

    /// Remembers a stream head, keeping the newest.
    fn remember(&self, e: &EventEnvelope) {
        if let Ok(mut heads) = self.heads.lock() {
            if heads.len() >= MAX_CACHED_HEADS {
                heads.clear();
            }
            let entry = heads
                .entry((e.tenant_id.clone(), e.stream_id.clone()))
                .or_insert((0, String::new()));
            if e.version > entry.0 {
                *entry = (e.version, e.hash.clone());
            }
        }
    }

    /// The stream's last version and hash (consistent read).
    async fn head(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
    ) -> Result<(u64, String), StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(stream_key(tenant, stream)))
            .scan_index_forward(false)
            .limit(1)
            .consistent_read(true)
            .projection_expression("sk, #h")
            .expression_attribute_names("#h", "hash")
            .send()
            .await
            .map_err(sdk_error)?;
        match out.items().first() {
            Some(item) => Ok((
                get_n(item, "sk").map_err(corrupt)?,
                get_s(item, "hash").map_err(corrupt)?.to_owned(),
            )),
            None => Ok((0, GENESIS_HASH.to_owned())),
        }
    }

    async fn hash_at(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        version: u64,
    ) -> Result<Option<String>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(stream_key(tenant, stream)))
            .key("sk", n(version))
            .consistent_read(true)
            .projection_expression("#h")
            .expression_attribute_names("#h", "hash")
            .send()
            .await
            .map_err(sdk_error)?;
        out.item()
            .map(|i| get_s(i, "hash").map(str::to_owned))
            .transpose()
            .map_err(corrupt)
    }

    /// Where each stream write starts: its base version and the hash to chain from.
    async fn base(
        &self,
        tenant: &TenantId,
        w: &commands::StreamWrite,
    ) -> Result<(u64, String), StoreError> {
        match w.expected {
            ExpectedVersion::NoStream | ExpectedVersion::Exact(0) => {
                Ok((0, GENESIS_HASH.to_owned()))
            }
            ExpectedVersion::Any => match self.cached_head(tenant, &w.stream_id) {
                Some(head) => Ok(head),
                None => self.head(tenant, &w.stream_id).await,
            },
            ExpectedVersion::Exact(v) => {
                if let Some(hint) = &w.prev_hash {
                    return Ok((v, hint.clone()));
                }
                match self.hash_at(tenant, &w.stream_id, v).await? {
                    Some(hash) => Ok((v, hash)),
                    None => Err(StoreError::Conflict {
                        stream_id: w.stream_id.clone(),
                        expected: w.expected,
                        actual: self.head(tenant, &w.stream_id).await?.0,
                    }),
                }
            }
        }
    }

    async fn try_append(&self, req: &AppendRequest) -> Result<AppendOutcome, StoreError> {
        let now = truncate_micros(Utc::now());
        let mut actions = Vec::new();
        let mut owners = Vec::new();
        let mut written = Vec::with_capacity(req.event_count());
        for (i, w) in req.streams.iter().enumerate() {
            let (base, mut prev) = self.base(&req.tenant_id, w).await?;
            // A base read from the store exists (events are never deleted); a base taken
            // from the caller's hint is checked in the transaction, hash and all.
            if base > 0 && w.prev_hash.is_some() {
                let check = ConditionCheck::builder()
                    .table_name(&self.table)
                    .key("pk", s(stream_key(&req.tenant_id, &w.stream_id)))
                    .key("sk", n(base))
                    .condition_expression("attribute_exists(pk) AND #h = :h")
                    .expression_attribute_names("#h", "hash")
                    .expression_attribute_values(":h", s(prev.clone()))
                    .build()
                    .map_err(|e| StoreError::Backend(e.to_string()))?;
                actions.push(TransactWriteItem::builder().condition_check(check).build());
                owners.push(Owner::Stream(i));
            }
            for (j, new) in w.events.iter().enumerate() {
                let event_id = Uuid::now_v7();
                let version = base + 1 + j as u64;
                let e = req.envelope(
                    w,
                    new,
                    version,
                    event_id,
                    position_of(&event_id),
                    now,
                    &prev,
                );
                prev.clone_from(&e.hash);
                actions.push(put(&self.table, event_item(&e))?);
                owners.push(Owner::Stream(i));
                written.push(e);
            }
        }
        if let Some(idem) = &req.idempotency {
            let refs: Vec<(String, u64)> = written
                .iter()
                .map(|e| (e.stream_id.to_string(), e.version))
                .collect();
            let item = HashMap::from([
                (
                    "pk".to_owned(),
                    s(idempotency_key(&req.tenant_id, &idem.key)),
                ),
                ("sk".to_owned(), n(0)),
                ("kind".to_owned(), s("idempotency")),
                ("request_hash".to_owned(), s(idem.request_hash.clone())),
                (
                    "events".to_owned(),
                    s(serde_json::to_string(&refs)
                        .map_err(|e| StoreError::Backend(e.to_string()))?),
                ),
            ]);
            actions.push(put(&self.table, item)?);
            owners.push(Owner::Idempotency);
        }
        if actions.len() > MAX_ACTIONS {
            return Err(StoreError::Invalid(format!(
                "this append needs {} DynamoDB actions; one transaction takes at most {MAX_ACTIONS}",
                actions.len()
            )));
        }
        if let [
            TransactWriteItem {
                put: Some(single), ..
            },
        ] = actions.as_slice()
        {
            return self.put_one(req, single.clone(), written).await;
        }
        let sent = self
            .client
            .transact_write_items()
            .set_transact_items(Some(actions))
            .send()
            .await;
        match sent {
            Ok(_) => {
                written.iter().for_each(|e| self.remember(e));
                Ok(AppendOutcome::written(written))
            }
            Err(e) => self.cancelled(req, &owners, e).await,
        }
    }

    /// One new event, nothing to check beside it: a conditional `PutItem` is as atomic as
    /// a transaction and cheaper.
    async fn put_one(
        &self,
        req: &AppendRequest,
        put: Put,
        written: Vec<EventEnvelope>,
    ) -> Result<AppendOutcome, StoreError> {
        let sent = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(put.item().clone()))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let e = match sent {
            Ok(_) => {
                written.iter().for_each(|e| self.remember(e));
                return Ok(AppendOutcome::written(written));
            }
            Err(e) => e,
        };
        let Some(PutItemError::ConditionalCheckFailedException(failed)) = e.as_service_error()
        else {
            return Err(sdk_error(e));
        };
        let w = &req.streams[0];
        // The event that took our version: the head moved at least that far.
        let taken = failed
            .item()
            .map(envelope_from_item)
            .transpose()
            .map_err(corrupt)?;
        let actual = match (&taken, w.expected) {
            (Some(newer), ExpectedVersion::Any) => {
                self.remember(newer);
                newer.version
            }
            _ => self.head(&req.tenant_id, &w.stream_id).await?.0,
        };
        Err(StoreError::Conflict {
            stream_id: w.stream_id.clone(),
            expected: w.expected,
            actual,
        })
    }

    /// Turns a failed transaction into what it means: a replay, a mismatch, a conflict.
    async fn cancelled<R: std::fmt::Debug>(
        &self,
        req: &AppendRequest,
        owners: &[Owner],
        e: SdkError<TransactWriteItemsError, R>,
    ) -> Result<AppendOutcome, StoreError> {
        let reasons: Vec<Option<String>> = match &e {
            SdkError::ServiceError(se) => match se.err() {
                TransactWriteItemsError::TransactionCanceledException(c) => c
                    .cancellation_reasons()
                    .iter()
                    .map(|r| r.code().map(str::to_owned))
                    .collect(),
                _ => return Err(sdk_error(e)),
            },
            _ => return Err(sdk_error(e)),
        };
        let key_taken = owners.iter().zip(&reasons).any(|(owner, code)| {
            matches!(owner, Owner::Idempotency) && code.as_deref() == Some("ConditionalCheckFailed")
        });
        if key_taken {
            return self.replay(req).await;
        }
        let loser =
            owners
                .iter()
                .zip(&reasons)
                .find_map(|(owner, code)| match (owner, code.as_deref()) {
                    (Owner::Stream(i), Some("ConditionalCheckFailed")) => Some(*i),
                    _ => None,
                });
        match loser {
            Some(i) => {
                let w = &req.streams[i];
                let (actual, _) = self.head(&req.tenant_id, &w.stream_id).await?;
                Err(StoreError::Conflict {
                    stream_id: w.stream_id.clone(),
                    expected: w.expected,
                    actual,
                })
            }
            None => Err(StoreError::Retryable(format!(
                "transaction cancelled: {reasons:?}"
            ))),
        }
    }

    /// The key was used before: the first result if the request matches, else a mismatch.
    async fn replay(&self, req: &AppendRequest) -> Result<AppendOutcome, StoreError> {
        let Some(idem) = &req.idempotency else {
            return Err(StoreError::Backend(
                "replay without an idempotency key".into(),
            ));
        };
        match self.idempotent_result(&req.tenant_id, &idem.key).await? {
            Some(r) if r.request_hash == idem.request_hash => Ok(r.into_outcome()),
            Some(_) => Err(StoreError::IdempotencyMismatch {
                key: idem.key.clone(),
            }),
            None => Err(StoreError::Retryable(
                "idempotency record not readable yet".into(),
            )),
        }
    }

    async fn query_stream(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        from_version: u64,
        to_version: Option<u64>,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        let condition = if to_version.is_some() {
            "pk = :pk AND sk BETWEEN :from AND :to"
        } else {
            "pk = :pk AND sk >= :from"
        };
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(condition)
                .expression_attribute_values(":pk", s(stream_key(tenant, stream)))
                .expression_attribute_values(":from", n(from_version))
                .consistent_read(true)
                .limit(
                    i32::try_from(limit.saturating_sub(out.len()).clamp(1, 1000)).unwrap_or(1000),
                )
                .set_exclusive_start_key(start.take());
            if let Some(to) = to_version {
                q = q.expression_attribute_values(":to", n(to));
            }
            let page = q.send().await.map_err(sdk_error)?;
            for item in page.items() {
                out.push(envelope_from_item(item).map_err(corrupt)?);
            }
            match page.last_evaluated_key() {
                Some(key) if out.len() < limit => start = Some(key.clone()),
                _ => return Ok(out),
            }
        }
    }
}

fn put(table: &str, item: Item) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// The feed cursor on DynamoDB: the last event id seen in each shard of the tenant's index.
fn parse_cursor(cursor: &FeedCursor) -> Result<Vec<String>, StoreError> {
    if cursor.0.is_empty() {
        return Ok(vec![String::new(); FEED_SHARDS as usize]);
    }
    let parts: Vec<String> = cursor.0.split(',').map(str::to_owned).collect();
    if parts.len() != FEED_SHARDS as usize {
        return Err(StoreError::Invalid(format!(
            "not a feed cursor: {:?}",
            cursor.0
        )));
    }
    Ok(parts)
}

#[async_trait]
impl EventStore for DynamoEventStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        request.validate()?;
        let _turn = match request.streams.as_slice() {
            [w] if w.expected == ExpectedVersion::Any => {
                Some(self.stripe(&w.stream_id).lock().await)
            }
            _ => None,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_append(&request).await {
                Err(StoreError::Conflict { stream_id, .. })
                    if attempt < ANY_ATTEMPTS
                        && request.streams.iter().any(|w| {
                            w.stream_id == stream_id && w.expected == ExpectedVersion::Any
                        }) =>
                {
                    tracing::debug!(stream_id = %stream_id, attempt, "lost a race on an Any append; retrying");
                    // Jittered backoff spreads racing writers out instead of lining them up.
                    let cap = 1u64 << attempt.min(6);
                    tokio::time::sleep(std::time::Duration::from_millis(rand::random_range(
                        0..=cap,
                    )))
                    .await;
                }
                other => return other,
            }
        }
    }

    async fn read_stream(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        self.query_stream(tenant, stream, from_version.max(1), None, limit)
            .await
    }

    async fn read_last(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
    ) -> Result<Option<EventEnvelope>, StoreError> {
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk >= :first")
            .expression_attribute_values(":pk", s(stream_key(tenant, stream)))
            .expression_attribute_values(":first", n(1))
            .scan_index_forward(false)
            .consistent_read(true)
            .limit(1)
            .send()
            .await
            .map_err(sdk_error)?;
        page.items()
            .first()
            .map(|item| envelope_from_item(item).map_err(corrupt))
            .transpose()
    }

    async fn read_tenant_feed(
        &self,
        tenant: &TenantId,
        after: &FeedCursor,
        limit: usize,
    ) -> Result<FeedPage, StoreError> {
        let mut cursors = parse_cursor(after)?;
        let mut merged: Vec<(usize, EventEnvelope)> = Vec::new();
        for (shard, cursor) in cursors.iter().enumerate() {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(FEED_INDEX)
                .limit(i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000));
            q = if cursor.is_empty() {
                q.key_condition_expression("gsi1pk = :pk")
            } else {
                q.key_condition_expression("gsi1pk = :pk AND gsi1sk > :after")
                    .expression_attribute_values(":after", s(cursor.clone()))
            };
            let page = q
                .expression_attribute_values(":pk", s(feed_key(tenant, shard as u32)))
                .send()
                .await
                .map_err(sdk_error)?;
            for item in page.items() {
                merged.push((shard, envelope_from_item(item).map_err(corrupt)?));
            }
        }
        merged.sort_by_key(|(_, e)| e.event_id);
        merged.truncate(limit);
        for (shard, e) in &merged {
            cursors[*shard] = e.event_id.to_string();
        }
        Ok(FeedPage {
            events: merged.into_iter().map(|(_, e)| e).collect(),
            next: FeedCursor(cursors.join(",")),
        })
    }

    /// Each feed shard's newest event id (a shard without events: its start).
    async fn tenant_feed_end(&self, tenant: &TenantId) -> Result<FeedCursor, StoreError> {
        let mut cursors = Vec::with_capacity(FEED_SHARDS as usize);
        for shard in 0..FEED_SHARDS {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(FEED_INDEX)
                .key_condition_expression("gsi1pk = :pk")
                .expression_attribute_values(":pk", s(feed_key(tenant, shard)))
                .scan_index_forward(false)
                .limit(1)
                .send()
                .await
                .map_err(sdk_error)?;
            let newest = match page.items().first() {
                Some(item) => envelope_from_item(item)
                    .map_err(corrupt)?
                    .event_id
                    .to_string(),
                None => String::new(),
            };
            cursors.push(newest);
        }
        Ok(FeedCursor(cursors.join(",")))
    }

    async fn idempotent_result(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> Result<Option<IdempotentRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(idempotency_key(tenant, key)))
            .key("sk", n(0))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        let Some(item) = out.item() else {
            return Ok(None);
        };
        let request_hash = get_s(item, "request_hash").map_err(corrupt)?.to_owned();
        let refs: Vec<(String, u64)> =
            serde_json::from_str(get_s(item, "events").map_err(corrupt)?).map_err(corrupt)?;
        let mut events = Vec::with_capacity(refs.len());
        let mut i = 0;
        while i < refs.len() {
            let stream = &refs[i].0;
            let run = refs[i..].iter().take_while(|(s, _)| s == stream).count();
            let (first, last) = (refs[i].1, refs[i + run - 1].1);
            let stream_id = StreamId::parse(stream.clone()).map_err(corrupt)?;
            events.extend(
                self.query_stream(tenant, &stream_id, first, Some(last), run)
                    .await?,
            );
            i += run;
        }
        Ok(Some(IdempotentRecord {
            request_hash,
            events,
        }))
    }
}

#[async_trait]
impl StreamSource for DynamoEventStore {
    async fn read_stream(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, ReadModelError> {
        EventStore::read_stream(self, tenant, stream, from_version, limit)
            .await
            .map_err(|e| match e {
                StoreError::Retryable(m) => ReadModelError::Unavailable(m),
                other => ReadModelError::Backend(other.to_string()),
            })
    }
}
