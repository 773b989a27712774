//! The `EventStore` port. Every backend passes the one conformance suite in `tests/`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{EventEnvelope, StreamId, TenantId};
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use uuid::Uuid;

/// What the writer believes the stream's current version is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last version must be exactly this (`Exact(0)` equals `NoStream`).
    Exact(u64),
    /// No check.
    Any,
}

impl ExpectedVersion {
    pub fn matches(self, current: u64) -> bool {
        match self {
            Self::NoStream => current == 0,
            Self::Exact(v) => current == v,
            Self::Any => true,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(v) => write!(f, "version {v}"),
            Self::Any => f.write_str("any version"),
        }
    }
}

/// An event before the store gives it an id, version, position, time and hash.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_type: String,
    pub schema_version: u32,
    pub payload: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreamWrite {
    pub stream_id: StreamId,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    /// With `Exact(n)`, the hash of event `n` if the writer just read it: a backend may
    /// then skip reading it again. A wrong hint is a `Conflict`, never a broken chain.
    pub prev_hash: Option<String>,
}

/// A client-chosen key under which the first result of a command is kept, with a hash of
/// the request so that a different request reusing the key is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    pub request_hash: String,
}

/// One atomic append: every stream write succeeds or none does. All streams belong to
/// `tenant_id`.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub tenant_id: TenantId,
    pub command_id: Uuid,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    pub actor: String,
    pub idempotency: Option<Idempotency>,
    pub streams: Vec<StreamWrite>,
}

/// The most events one append may carry, so that every backend can write it in one
/// transaction (DynamoDB: 100 actions, one of them the idempotency record).
pub const MAX_EVENTS_PER_APPEND: usize = 99;

impl AppendRequest {
    pub fn event_count(&self) -> usize {
        self.streams.iter().map(|s| s.events.len()).sum()
    }

    /// The sealed envelope of `new`, one of `w`'s events, at `version`, chained from
    /// `prev_hash`. Backends give the id, the position and the store time.
    #[allow(clippy::too_many_arguments)]
    pub fn envelope(
        &self,
        w: &StreamWrite,
        new: &NewEvent,
        version: u64,
        event_id: Uuid,
        position: u64,
        recorded_at: DateTime<Utc>,
        prev_hash: &str,
    ) -> EventEnvelope {
        let mut e = self.unsealed(w, new, new.payload.clone(), version, event_id, recorded_at);
        e.position = position;
        e.seal(prev_hash);
        e
    }

    /// `envelope` without the hash, for a backend that seals it with
    /// `EventEnvelope::compute_hash_with` from strings it stores anyway. `payload` is
    /// `new`'s, given apart so that a backend done with the request can move it out
    /// instead of copying it.
    pub fn unsealed(
        &self,
        w: &StreamWrite,
        new: &NewEvent,
        payload: Value,
        version: u64,
        event_id: Uuid,
        recorded_at: DateTime<Utc>,
    ) -> EventEnvelope {
        EventEnvelope {
            event_id,
            tenant_id: self.tenant_id.clone(),
            stream_id: w.stream_id.clone(),
            version,
            position: 0,
            event_type: new.event_type.clone(),
            schema_version: new.schema_version,
            recorded_at,
            actor: self.actor.clone(),
            command_id: self.command_id,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            payload,
            hash: String::new(),
        }
    }

    /// Checks the request's shape; every backend calls this before writing.
    pub fn validate(&self) -> Result<(), StoreError> {
        let invalid = |m: String| Err(StoreError::Invalid(m));
        if self.streams.is_empty() {
            return invalid("an append needs at least one stream".into());
        }
        let count = self.event_count();
        if count > MAX_EVENTS_PER_APPEND {
            return invalid(format!(
                "{count} events in one append; at most {MAX_EVENTS_PER_APPEND}"
            ));
        }
        for (i, w) in self.streams.iter().enumerate() {
            if w.events.is_empty() {
                return invalid(format!("no events for stream {}", w.stream_id));
            }
            if self.streams[..i].iter().any(|o| o.stream_id == w.stream_id) {
                return invalid(format!("stream {} appears twice", w.stream_id));
            }
            if let Some(e) = w.events.iter().find(|e| e.event_type.is_empty()) {
                return invalid(format!("an event of {} has no type: {e:?}", w.stream_id));
            }
        }
        if let Some(idem) = &self.idempotency
            && (idem.key.is_empty() || idem.key.len() > 255)
        {
            return invalid("an idempotency key has 1 to 255 bytes".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AppendOutcome {
    /// The events written, in append order; on a replayed idempotent append, the events
    /// the first append wrote. Shared: the embedded store's in-memory tail holds the same
    /// envelopes for the projectors, so an append copies none of them.
    pub events: Vec<Arc<EventEnvelope>>,
    /// True when nothing new was written because the idempotency key was seen before.
    pub replayed: bool,
}

impl AppendOutcome {
    /// The outcome of an append that wrote `events`.
    pub fn written(events: Vec<EventEnvelope>) -> Self {
        Self {
            events: events.into_iter().map(Arc::new).collect(),
            replayed: false,
        }
    }

    /// The events as owned envelopes, copied where the store still shares them.
    pub fn into_events(self) -> Vec<EventEnvelope> {
        self.events.into_iter().map(Arc::unwrap_or_clone).collect()
    }
}

/// What an idempotency key recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotentRecord {
    pub request_hash: String,
    pub events: Vec<EventEnvelope>,
}

impl IdempotentRecord {
    /// A retry's outcome: what the first append under the key wrote, replayed.
    pub fn into_outcome(self) -> AppendOutcome {
        AppendOutcome {
            replayed: true,
            ..AppendOutcome::written(self.events)
        }
    }
}

/// Where a tenant feed reader is. Opaque: each backend has its own position format.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FeedCursor(pub String);

impl FeedCursor {
    pub fn start() -> Self {
        Self::default()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FeedPage {
    pub events: Vec<EventEnvelope>,
    /// Pass back to continue after the last event returned.
    pub next: FeedCursor,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    #[error("conflict on {stream_id}: expected {expected}, stream is at version {actual}")]
    Conflict {
        stream_id: StreamId,
        expected: ExpectedVersion,
        actual: u64,
    },
    #[error("idempotency key {key:?} was already used for a different request")]
    IdempotencyMismatch { key: String },
    #[error("invalid append: {0}")]
    Invalid(String),
    /// Throttling, a timeout or a 5xx: the same call may succeed later.
    #[error("store temporarily unavailable: {0}")]
    Retryable(String),
    #[error("store failure: {0}")]
    Backend(String),
}

/// The event store.
///
/// Contract (checked by the conformance suite on every backend):
/// - `append` MUST return `Conflict` when any stream's expected version does not match, and
///   then write nothing of the request.
/// - Concurrent appends to one stream MUST each get distinct, gapless versions; an append
///   acknowledged with `Ok` MUST be durable.
/// - An append spanning several streams of one tenant MUST be all or nothing.
/// - An append whose idempotency key was seen with the same request hash MUST write nothing
///   and return the first append's events with `replayed: true`; with another hash it MUST
///   return `IdempotencyMismatch`.
/// - Every event's `hash` MUST chain from its stream predecessor (`GENESIS_HASH` first).
#[async_trait]
pub trait EventStore: Send + Sync {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError>;

    /// Up to `limit` events of one stream with `version >= from_version`, in version order.
    async fn read_stream(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError>;

    /// The stream's last event (its highest version), or `None` for a stream with none.
    /// Costs one read however long the stream: for aggregates whose last event holds
    /// their whole state (`domain::TailState`).
    async fn read_last(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
    ) -> Result<Option<EventEnvelope>, StoreError>;

    /// Up to `limit` of the tenant's events after `after`: every event exactly once across
    /// pages, each stream in version order, never another tenant's.
    async fn read_tenant_feed(
        &self,
        tenant: &TenantId,
        after: &FeedCursor,
        limit: usize,
    ) -> Result<FeedPage, StoreError>;

    /// A cursor after every event the tenant has now: where a live reader starts. The
    /// default reads the feed to its end; the backends answer it in a step.
    async fn tenant_feed_end(&self, tenant: &TenantId) -> Result<FeedCursor, StoreError> {
        let mut cursor = FeedCursor::start();
        loop {
            let page = self.read_tenant_feed(tenant, &cursor, 1000).await?;
            if page.events.is_empty() {
                return Ok(cursor);
            }
            cursor = page.next;
        }
    }

    /// The record kept under an idempotency key, if any.
    async fn idempotent_result(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> Result<Option<IdempotentRecord>, StoreError>;
}
