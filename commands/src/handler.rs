//! Runs one command against one aggregate: load, decide, append; retry on a version
//! conflict unless the caller pinned the version (`If-Match`); replay idempotent retries.

use crate::store::{AppendRequest, EventStore, Idempotency, StoreError, StreamWrite};
use chrono::{DateTime, Utc};
use domain::{
    Actor, Aggregate, CommandContext, ConsistencyToken, DomainEvent, EventEnvelope, StreamId,
    TenantId, UpcastError,
};
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use uuid::Uuid;

/// The time source, injected so tests control it.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// Who sends the command and under which ids.
#[derive(Debug, Clone)]
pub struct CommandMeta {
    pub tenant_id: TenantId,
    pub actor: Actor,
    pub command_id: Uuid,
    pub correlation_id: Uuid,
    pub idempotency: Option<Idempotency>,
}

/// A command's result: the aggregate after it, the events it wrote and where.
#[derive(Debug, Clone)]
pub struct Executed<A> {
    pub state: A,
    pub version: u64,
    pub events: Vec<EventEnvelope>,
    /// Where a reader must be to see this state; `None` only for a stream with no events.
    pub token: Option<ConsistencyToken>,
    pub replayed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Rejected(E),
    #[error("the stream is at version {actual}, not {expected}")]
    PreconditionFailed { expected: u64, actual: u64 },
    #[error("idempotency key was already used for a different request")]
    IdempotencyMismatch,
    #[error("gave up after {0} conflicting attempts")]
    Contended(u32),
    #[error(transparent)]
    Corrupt(#[from] UpcastError),
    #[error(transparent)]
    Store(StoreError),
}

const PAGE: usize = 1000;

#[derive(Clone)]
pub struct CommandHandler {
    store: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
    max_attempts: u32,
    metrics: Arc<CommandMetrics>,
}

struct Loaded<A> {
    state: A,
    version: u64,
    last: Option<EventEnvelope>,
}

impl CommandHandler {
    pub fn new(store: Arc<dyn EventStore>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            max_attempts: 5,
            metrics: Arc::default(),
        }
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// The injected clock's time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    async fn load<A: Aggregate>(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        up_to: u64,
    ) -> Result<Loaded<A>, CommandError<A::Error>> {
        let mut loaded = Loaded {
            state: A::default(),
            version: 0,
            last: None,
        };
        loop {
            let page = self
                .store
                .read_stream(tenant, stream, loaded.version + 1, PAGE)
                .await
                .map_err(CommandError::Store)?;
            let full = page.len() == PAGE;
            for envelope in page.into_iter().take_while(|e| e.version <= up_to) {
                let event = A::Event::from_stored(
                    &envelope.event_type,
                    envelope.schema_version,
                    &envelope.payload,
                )?;
                loaded.state.apply(&event);
                loaded.version = envelope.version;
                loaded.last = Some(envelope);
            }
            if !full || loaded.version >= up_to {
                return Ok(loaded);
            }
        }
    }

    /// The current state of one aggregate instance and its version.
    pub async fn state<A: Aggregate>(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
    ) -> Result<(A, u64), CommandError<A::Error>> {
        let loaded = self.load::<A>(tenant, stream, u64::MAX).await?;
        Ok((loaded.state, loaded.version))
    }

    /// Runs `command` on the stream `stream`. With `if_match`, the stream must be at that
    /// version (else `PreconditionFailed`, no retry); without, a conflict reloads and
    /// decides again, a bounded number of times.
    pub async fn execute<A: Aggregate>(
        &self,
        meta: &CommandMeta,
        stream: &StreamId,
        command: &A::Command,
        if_match: Option<u64>,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        let result = self
            .execute_inner::<A>(meta, stream, command, if_match)
            .await;
        self.metrics.record(&result);
        result
    }

    async fn execute_inner<A: Aggregate>(
        &self,
        meta: &CommandMeta,
        stream: &StreamId,
        command: &A::Command,
        if_match: Option<u64>,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        if let Some(idem) = &meta.idempotency
            && let Some(done) = self.replay::<A>(meta, stream, idem).await?
        {
            return Ok(done);
        }
        for _ in 0..self.max_attempts {
            let loaded = self.load::<A>(&meta.tenant_id, stream, u64::MAX).await?;
            if let Some(expected) = if_match
                && expected != loaded.version
            {
                return Err(CommandError::PreconditionFailed {
                    expected,
                    actual: loaded.version,
                });
            }
            let ctx = CommandContext {
                actor: meta.actor.clone(),
                now: self.clock.now(),
            };
            let events = loaded
                .state
                .decide(command, &ctx)
                .map_err(CommandError::Rejected)?;
            if events.is_empty() {
                return Ok(Executed {
                    token: loaded.last.as_ref().map(token_of),
                    state: loaded.state,
                    version: loaded.version,
                    events: vec![],
                    replayed: false,
                });
            }
            let prev_hash = loaded.last.as_ref().map(|e| e.hash.as_str());
            let request = self.request::<A>(meta, stream, loaded.version, prev_hash, &events);
            match self.store.append(request).await {
                Ok(outcome) if outcome.replayed => {
                    return self.replayed_state(meta, stream, outcome.events).await;
                }
                Ok(outcome) => {
                    let mut state = loaded.state;
                    for e in &events {
                        state.apply(e);
                    }
                    let last = outcome.events.last();
                    return Ok(Executed {
                        state,
                        version: last.map_or(loaded.version, |e| e.version),
                        token: last.map(token_of),
                        events: outcome.events,
                        replayed: false,
                    });
                }
                Err(StoreError::Conflict { actual, .. }) if if_match.is_some() => {
                    return Err(CommandError::PreconditionFailed {
                        expected: loaded.version,
                        actual,
                    });
                }
                Err(StoreError::Conflict { .. }) => {
                    tracing::debug!(stream_id = %stream, "version conflict, deciding again");
                }
                Err(StoreError::IdempotencyMismatch { .. }) => {
                    return Err(CommandError::IdempotencyMismatch);
                }
                Err(e) => return Err(CommandError::Store(e)),
            }
        }
        Err(CommandError::Contended(self.max_attempts))
    }

    /// Runs a creating `command` on a stream id the caller just minted (a fresh UUIDv7), so
    /// there is nothing to load: the decision is made on the empty state and the append
    /// expects no stream. Saves the read a general `execute` makes.
    pub async fn create<A: Aggregate>(
        &self,
        meta: &CommandMeta,
        stream: &StreamId,
        command: &A::Command,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        let result = self.create_inner::<A>(meta, stream, command).await;
        self.metrics.record(&result);
        result
    }

    async fn create_inner<A: Aggregate>(
        &self,
        meta: &CommandMeta,
        stream: &StreamId,
        command: &A::Command,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        if let Some(idem) = &meta.idempotency
            && let Some(done) = self.replay::<A>(meta, stream, idem).await?
        {
            return Ok(done);
        }
        let ctx = CommandContext {
            actor: meta.actor.clone(),
            now: self.clock.now(),
        };
        let mut state = A::default();
        let events = state
            .decide(command, &ctx)
            .map_err(CommandError::Rejected)?;
        let request = self.request::<A>(meta, stream, 0, None, &events);
        match self.store.append(request).await {
            Ok(outcome) if outcome.replayed => {
                self.replayed_state(meta, stream, outcome.events).await
            }
            Ok(outcome) => {
                for e in &events {
                    state.apply(e);
                }
                let last = outcome.events.last();
                Ok(Executed {
                    state,
                    version: last.map_or(0, |e| e.version),
                    token: last.map(token_of),
                    events: outcome.events,
                    replayed: false,
                })
            }
            Err(StoreError::IdempotencyMismatch { .. }) => Err(CommandError::IdempotencyMismatch),
            Err(e) => Err(CommandError::Store(e)),
        }
    }

    fn request<A: Aggregate>(
        &self,
        meta: &CommandMeta,
        stream: &StreamId,
        version: u64,
        prev_hash: Option<&str>,
        events: &[A::Event],
    ) -> AppendRequest {
        AppendRequest {
            tenant_id: meta.tenant_id.clone(),
            command_id: meta.command_id,
            correlation_id: meta.correlation_id,
            causation_id: None,
            actor: meta.actor.user_id.to_string(),
            idempotency: meta.idempotency.clone(),
            streams: vec![StreamWrite {
                prev_hash: prev_hash.map(str::to_owned),
                ..crate::access::write::<A>(stream.clone(), version, events)
            }],
        }
    }

    async fn replay<A: Aggregate>(
        &self,
        meta: &CommandMeta,
        stream: &StreamId,
        idem: &Idempotency,
    ) -> Result<Option<Executed<A>>, CommandError<A::Error>> {
        let record = self
            .store
            .idempotent_result(&meta.tenant_id, &idem.key)
            .await
            .map_err(CommandError::Store)?;
        match record {
            None => Ok(None),
            Some(r) if r.request_hash != idem.request_hash => {
                Err(CommandError::IdempotencyMismatch)
            }
            Some(r) => self.replayed_state(meta, stream, r.events).await.map(Some),
        }
    }

    /// The state as the first execution left it: its stream folded up to the last version
    /// it wrote. That stream may differ from this attempt's (a create picks a fresh id).
    async fn replayed_state<A: Aggregate>(
        &self,
        meta: &CommandMeta,
        stream: &StreamId,
        events: Vec<EventEnvelope>,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        let last = events.last();
        let stream = last.map_or(stream, |e| &e.stream_id);
        let up_to = last.map_or(0, |e| e.version);
        let loaded = self.load::<A>(&meta.tenant_id, stream, up_to).await?;
        Ok(Executed {
            state: loaded.state,
            version: loaded.version,
            token: last.map(token_of),
            events,
            replayed: true,
        })
    }
}

/// The command metrics' handles, registered once per set of labels: building a metric's
/// key and looking it up in the recorder cost more than counting.
#[derive(Default)]
struct CommandMetrics {
    /// By aggregate and outcome.
    commands: RwLock<HashMap<(&'static str, &'static str), metrics::Counter>>,
    /// By event type.
    events: RwLock<HashMap<String, metrics::Counter>>,
}

/// The handle under `key` in `map`, made by `make` the first time.
fn handle<K, Q>(
    map: &RwLock<HashMap<K, metrics::Counter>>,
    key: &Q,
    make: impl FnOnce() -> (K, metrics::Counter),
) -> metrics::Counter
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    if let Some(c) = map.read().unwrap_or_else(PoisonError::into_inner).get(key) {
        return c.clone();
    }
    let (k, c) = make();
    map.write()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(k)
        .or_insert(c)
        .clone()
}

impl CommandMetrics {
    /// Counts a command's outcome and the events it appended, for `/metrics`.
    fn record<A: Aggregate, E: std::error::Error>(
        &self,
        result: &Result<Executed<A>, CommandError<E>>,
    ) {
        let outcome = match result {
            Ok(done) if done.replayed => "replayed",
            Ok(_) => "ok",
            Err(CommandError::Rejected(_)) => "rejected",
            Err(CommandError::PreconditionFailed { .. } | CommandError::IdempotencyMismatch) => {
                "precondition"
            }
            Err(CommandError::Contended(_)) => "contended",
            Err(_) => "error",
        };
        let key = (A::KIND, outcome);
        handle(&self.commands, &key, || {
            let c = metrics::counter!("chronicle_commands_total", "aggregate" => A::KIND, "outcome" => outcome);
            (key, c)
        })
        .increment(1);
        if let Ok(done) = result
            && !done.replayed
        {
            for e in &done.events {
                let t = e.event_type.as_str();
                handle(&self.events, t, || {
                    let c = metrics::counter!("chronicle_events_appended_total", "event_type" => t.to_owned());
                    (t.to_owned(), c)
                })
                .increment(1);
            }
        }
    }
}

fn token_of(e: &EventEnvelope) -> ConsistencyToken {
    ConsistencyToken {
        position: e.position,
        version: e.version,
        stream_id: e.stream_id.clone(),
    }
}
