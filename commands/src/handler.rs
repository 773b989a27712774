//! The command handler: the store, the clock, and the one-aggregate commands (`execute`,
//! `create`), which run on the command pipeline (`pipeline.rs`) like every other command.

use crate::pipeline::{Command, Tx};
use crate::store::{EventStore, Idempotency, StoreError};
use chrono::{DateTime, Utc};
use domain::{
    Actor, Aggregate, ConsistencyToken, DomainEvent, EventEnvelope, StreamId, TenantId, UpcastError,
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
    /// The event or message that caused this command, when it is not a person's request.
    pub causation_id: Option<Uuid>,
    pub idempotency: Option<Idempotency>,
}

/// The ids a command carries from what caused it: its own id, the correlation id of the
/// request (or message) it belongs to, and the causing event, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestIds {
    pub command_id: Uuid,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
}

impl RequestIds {
    /// Fresh ids, for work no request carries (operators' tools, background workers).
    pub fn fresh() -> Self {
        let command_id = Uuid::now_v7();
        Self {
            command_id,
            correlation_id: command_id,
            causation_id: None,
        }
    }

    /// The ids of work `event` caused (a worker's): the event's correlation id, the event
    /// as causation, a new command id.
    pub fn caused_by(event: &domain::EventEnvelope) -> Self {
        Self {
            command_id: Uuid::now_v7(),
            correlation_id: event.correlation_id,
            causation_id: Some(event.event_id),
        }
    }

    /// The same cause for the next command: a new command id.
    pub fn next(self) -> Self {
        Self {
            command_id: Uuid::now_v7(),
            ..self
        }
    }
}

impl CommandMeta {
    /// A command of `actor` in `tenant` under `ids`.
    pub fn of(
        tenant_id: TenantId,
        actor: Actor,
        ids: RequestIds,
        idempotency: Option<Idempotency>,
    ) -> Self {
        Self {
            tenant_id,
            actor,
            command_id: ids.command_id,
            correlation_id: ids.correlation_id,
            causation_id: ids.causation_id,
            idempotency,
        }
    }

    /// The ids this command carries.
    pub fn ids(&self) -> RequestIds {
        RequestIds {
            command_id: self.command_id,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
        }
    }
}

/// A command's result: the aggregate after it, the events it wrote and where.
#[derive(Debug, Clone)]
pub struct Executed<A> {
    pub state: A,
    pub version: u64,
    pub events: Vec<Arc<EventEnvelope>>,
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
    /// A unique value (named) another stream already holds.
    #[error("the {0} is already taken")]
    Taken(&'static str),
    #[error(transparent)]
    Corrupt(#[from] UpcastError),
    #[error(transparent)]
    Store(StoreError),
}

impl<E: std::error::Error + 'static> CommandError<E> {
    /// The same failure, with a rejection turned into another error type.
    pub fn map_rejected<F: std::error::Error + 'static>(
        self,
        f: impl FnOnce(E) -> F,
    ) -> CommandError<F> {
        self.unless_rejected()
            .unwrap_or_else(|e| CommandError::Rejected(f(e)))
    }

    /// The rejection (`Err`), or the same failure as one of any rejection type (`Ok`).
    pub fn unless_rejected<F: std::error::Error + 'static>(self) -> Result<CommandError<F>, E> {
        Ok(match self {
            Self::Rejected(e) => return Err(e),
            Self::PreconditionFailed { expected, actual } => {
                CommandError::PreconditionFailed { expected, actual }
            }
            Self::IdempotencyMismatch => CommandError::IdempotencyMismatch,
            Self::Contended(n) => CommandError::Contended(n),
            Self::Taken(what) => CommandError::Taken(what),
            Self::Corrupt(c) => CommandError::Corrupt(c),
            Self::Store(s) => CommandError::Store(s),
        })
    }
}

const PAGE: usize = 1000;

#[derive(Clone)]
pub struct CommandHandler {
    store: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
    max_attempts: u32,
    metrics: Arc<CommandMetrics>,
    hot: Arc<crate::hot::HotStreams>,
    states: Arc<crate::states::States>,
}

#[derive(Clone)]
pub(crate) struct Loaded<A> {
    pub(crate) state: A,
    pub(crate) version: u64,
    pub(crate) last: Option<EventEnvelope>,
}

impl CommandHandler {
    pub fn new(store: Arc<dyn EventStore>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            max_attempts: 5,
            metrics: Arc::default(),
            hot: Arc::default(),
            states: Arc::default(),
        }
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// The injected clock's time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub(crate) fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    pub(crate) fn hot(&self) -> &Arc<crate::hot::HotStreams> {
        &self.hot
    }

    pub(crate) fn metrics(&self) -> &CommandMetrics {
        &self.metrics
    }

    pub(crate) async fn load<A: Aggregate>(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        up_to: u64,
    ) -> Result<Loaded<A>, CommandError<A::Error>> {
        // Only the latest state is kept: a load up to a version folds from the start.
        let latest = up_to == u64::MAX;
        let mut loaded = latest
            .then(|| self.states.get::<A>(tenant, stream))
            .flatten()
            .unwrap_or_else(|| Loaded {
                state: A::default(),
                version: 0,
                last: None,
            });
        let kept_at = loaded.version;
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
                // Kept again only when it moved on: an unchanged stream costs no copy.
                if latest && loaded.version > kept_at {
                    self.states.put(tenant, stream, &loaded);
                }
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
    ) -> Result<Executed<A>, CommandError<A::Error>>
    where
        A::Command: Sync,
    {
        let on = OnStream::<A> {
            stream,
            command,
            if_match,
            fresh: false,
        };
        self.run(meta, &on).await.map(|ran| on.finish(ran))
    }

    /// Runs a creating `command` on a stream id the caller just minted (a fresh UUIDv7), so
    /// there is nothing to load: the decision is made on the empty state and the append
    /// expects no stream. Saves the read a general `execute` makes.
    pub async fn create<A: Aggregate>(
        &self,
        meta: &CommandMeta,
        stream: &StreamId,
        command: &A::Command,
    ) -> Result<Executed<A>, CommandError<A::Error>>
    where
        A::Command: Sync,
    {
        let on = OnStream::<A> {
            stream,
            command,
            if_match: None,
            fresh: true,
        };
        self.run(meta, &on).await.map(|ran| on.finish(ran))
    }

    /// The `A` a replayed first run wrote: its stream, found in the run's events (a retry
    /// mints new ids, so the command's own are not the first run's), as of that run.
    pub(crate) async fn replayed_of_kind<A: Aggregate>(
        &self,
        meta: &CommandMeta,
        events: &[Arc<EventEnvelope>],
    ) -> Result<A, CommandError<A::Error>> {
        let written: Vec<Arc<EventEnvelope>> = events
            .iter()
            .filter(|e| e.stream_id.kind() == A::KIND)
            .cloned()
            .collect();
        let stream = written
            .first()
            .map(|e| e.stream_id.clone())
            .ok_or_else(|| {
                CommandError::Store(StoreError::Invalid(format!(
                    "the first run under this Idempotency-Key wrote no {}",
                    A::KIND
                )))
            })?;
        Ok(self
            .replayed_state::<A>(meta, &stream, written)
            .await?
            .state)
    }

    /// The state as the first execution left it: its stream folded up to the last version
    /// it wrote. That stream may differ from this attempt's (a create picks a fresh id).
    pub(crate) async fn replayed_state<A: Aggregate>(
        &self,
        meta: &CommandMeta,
        stream: &StreamId,
        events: Vec<Arc<EventEnvelope>>,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        let last = events.last();
        let stream = last.map_or(stream, |e| &e.stream_id);
        let up_to = last.map_or(0, |e| e.version);
        let loaded = self.load::<A>(&meta.tenant_id, stream, up_to).await?;
        Ok(Executed {
            state: loaded.state,
            version: loaded.version,
            token: last.map(|e| token_of(e)),
            events,
            replayed: true,
        })
    }
}

/// The command metrics' handles, registered once per set of labels: building a metric's
/// key and looking it up in the recorder cost more than counting.
#[derive(Default)]
pub(crate) struct CommandMetrics {
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
    pub(crate) fn record<T, E: std::error::Error>(
        &self,
        name: &'static str,
        result: &Result<crate::pipeline::Ran<T>, CommandError<E>>,
    ) {
        let outcome = match result {
            Ok(done) if done.replayed => "replayed",
            Ok(_) => "ok",
            Err(CommandError::Rejected(_)) => "rejected",
            Err(CommandError::PreconditionFailed { .. } | CommandError::IdempotencyMismatch) => {
                "precondition"
            }
            Err(CommandError::Contended(_)) => "contended",
            Err(CommandError::Taken(_)) => "rejected",
            Err(_) => "error",
        };
        let key = (name, outcome);
        handle(&self.commands, &key, || {
            let c = metrics::counter!("chronicle_commands_total", "aggregate" => name, "outcome" => outcome);
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

pub(crate) fn token_of(e: &EventEnvelope) -> ConsistencyToken {
    ConsistencyToken {
        position: e.position,
        version: e.version,
        stream_id: e.stream_id.clone(),
    }
}

/// One command on one aggregate instance, as the pipeline runs it.
struct OnStream<'c, A: Aggregate> {
    stream: &'c StreamId,
    command: &'c A::Command,
    if_match: Option<u64>,
    /// The stream id was just minted: nothing to load.
    fresh: bool,
}

impl<A: Aggregate> OnStream<'_, A> {
    /// The command's answer, with what the append wrote.
    fn finish(&self, ran: crate::pipeline::Ran<Executed<A>>) -> Executed<A> {
        let mut done = ran.output;
        if let Some(last) = ran.events.iter().rfind(|e| &e.stream_id == self.stream)
            && !ran.replayed
        {
            done.version = last.version;
            done.token = Some(token_of(last));
        }
        if !ran.replayed {
            done.events = ran.events;
        }
        done
    }
}

impl<A: Aggregate> Command for OnStream<'_, A>
where
    A::Command: Sync,
{
    type Output = Executed<A>;
    type Error = A::Error;
    const NAME: &'static str = A::KIND;

    async fn decide(&self, tx: &mut Tx<'_>) -> Result<Executed<A>, CommandError<A::Error>> {
        let (mut state, version) = if self.fresh {
            (A::default(), 0)
        } else {
            tx.load::<A>(self.stream).await?
        };
        if let Some(expected) = self.if_match {
            tx.pin(self.stream, expected)?;
        }
        let events = state
            .decide(self.command, tx.ctx())
            .map_err(CommandError::Rejected)?;
        tx.write::<A>(self.stream, &events);
        for e in &events {
            state.apply(e);
        }
        Ok(Executed {
            state,
            version: version + events.len() as u64,
            events: vec![],
            token: tx.read_token(self.stream),
            replayed: false,
        })
    }

    async fn replayed(
        &self,
        handler: &CommandHandler,
        meta: &CommandMeta,
        events: &[Arc<EventEnvelope>],
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        handler
            .replayed_state(meta, self.stream, events.to_vec())
            .await
    }
}
