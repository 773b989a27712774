//! The one command pipeline. Every command, on one stream or several of a tenant, runs
//! here: replay an idempotent retry, load the streams the decision reads, let the domain
//! decide, append every write atomically (each stream at the version it was read at), and
//! on a conflict read and decide again, a bounded number of times: this process's writers
//! of a contended stream queue for it (`hot.rs`), other processes' are met with jittered
//! pauses.
//! Every event carries the request's actor and its command, correlation and causation ids,
//! and every outcome is counted in the metrics.

use crate::handler::{CommandError, CommandHandler, CommandMeta, token_of};
use crate::store::{AppendRequest, ExpectedVersion, NewEvent, StoreError, StreamWrite};
use domain::{Aggregate, CommandContext, ConsistencyToken, DomainEvent, EventEnvelope, StreamId};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// A command: what it reads and writes (`decide`), and how a replayed first run's events
/// answer (`replayed`). Both run on the pipeline, which owns retries and idempotency.
pub trait Command: Sync {
    type Output: Send;
    type Error: std::error::Error + Send + 'static;
    /// Names the command in the metrics (`chronicle_commands_total{aggregate=…}`).
    const NAME: &'static str;

    /// How many times to decide before giving up on conflicts (`Contended`); `None` for the
    /// handler's default.
    fn attempts(&self) -> Option<u32> {
        None
    }

    /// Reads what it needs through `tx` and records its writes there; pure but for the
    /// reads. Called again from scratch after a conflict.
    fn decide(
        &self,
        tx: &mut Tx<'_>,
    ) -> impl Future<Output = Result<Self::Output, CommandError<Self::Error>>> + Send;

    /// The answer of a retry under an idempotency key the store has seen: `events` are what
    /// the first run wrote. A command that takes no key keeps the default, which refuses.
    fn replayed(
        &self,
        handler: &CommandHandler,
        meta: &CommandMeta,
        events: &[Arc<EventEnvelope>],
    ) -> impl Future<Output = Result<Self::Output, CommandError<Self::Error>>> + Send {
        let _ = (handler, meta, events);
        async {
            Err(CommandError::Store(crate::store::StoreError::Invalid(
                format!("{} takes no idempotency key", Self::NAME),
            )))
        }
    }
}

/// What a command did.
#[derive(Debug, Clone)]
pub struct Ran<T> {
    pub output: T,
    /// The events written (or, replayed, the first run's).
    pub events: Vec<Arc<EventEnvelope>>,
    pub replayed: bool,
}

impl<T> Ran<T> {
    /// The version of `stream` after the command's last write to it.
    pub fn version_of(&self, stream: &StreamId) -> Option<u64> {
        self.events
            .iter()
            .rfind(|e| &e.stream_id == stream)
            .map(|e| e.version)
    }

    /// Where a reader must be to see the last write to `stream`.
    pub fn token_for(&self, stream: &StreamId) -> Option<ConsistencyToken> {
        self.events
            .iter()
            .rfind(|e| &e.stream_id == stream)
            .map(|e| token_of(e))
    }
}

/// What one stream was when the decision read it.
struct Read {
    version: u64,
    last_hash: Option<String>,
    last: Option<EventEnvelope>,
}

/// One attempt's reads and writes.
pub struct Tx<'a> {
    handler: &'a CommandHandler,
    meta: &'a CommandMeta,
    ctx: CommandContext,
    reads: HashMap<StreamId, Read>,
    writes: Vec<StreamWrite>,
    /// Streams whose version the caller pinned (If-Match): a conflict there is final.
    pinned: HashMap<StreamId, u64>,
    /// Streams written as "no stream" to reserve a unique value: a conflict there means
    /// the value (named here) is taken.
    reserved: Vec<(StreamId, &'static str)>,
}

impl<'a> Tx<'a> {
    /// When and by whom the command is decided.
    pub fn ctx(&self) -> &CommandContext {
        &self.ctx
    }

    pub fn meta(&self) -> &CommandMeta {
        self.meta
    }

    /// The state of `stream` and its version; an append later expects that version.
    pub async fn load<A: Aggregate>(
        &mut self,
        stream: &StreamId,
    ) -> Result<(A, u64), CommandError<A::Error>> {
        let loaded = self
            .handler
            .load::<A>(&self.meta.tenant_id, stream, u64::MAX)
            .await?;
        self.reads.insert(
            stream.clone(),
            Read {
                version: loaded.version,
                last_hash: loaded.last.as_ref().map(|e| e.hash.clone()),
                last: loaded.last,
            },
        );
        Ok((loaded.state, loaded.version))
    }

    /// As `load`, reading only the stream's last event: for aggregates whose last event
    /// holds their whole state, one read however long the stream.
    pub async fn load_tail<A: domain::TailState>(
        &mut self,
        stream: &StreamId,
    ) -> Result<(A, u64), CommandError<A::Error>> {
        let (state, last) = self
            .handler
            .tail_state::<A>(&self.meta.tenant_id, stream)
            .await?;
        let version = last.as_ref().map_or(0, |e| e.version);
        self.reads.insert(
            stream.clone(),
            Read {
                version,
                last_hash: last.as_ref().map(|e| e.hash.clone()),
                last,
            },
        );
        Ok((state, version))
    }

    /// The version `stream` was read at (0 when never read or empty).
    pub fn version(&self, stream: &StreamId) -> u64 {
        self.reads.get(stream).map_or(0, |r| r.version)
    }

    /// Where a reader must be to see `stream` as it was read.
    pub fn read_token(&self, stream: &StreamId) -> Option<ConsistencyToken> {
        self.reads
            .get(stream)
            .and_then(|r| r.last.as_ref())
            .map(token_of)
    }

    /// The caller expects `stream` at `version` (If-Match): `PreconditionFailed` otherwise,
    /// now or when the append finds it moved.
    pub fn pin<E: std::error::Error + 'static>(
        &mut self,
        stream: &StreamId,
        version: u64,
    ) -> Result<(), CommandError<E>> {
        let actual = self.version(stream);
        if actual != version {
            return Err(CommandError::PreconditionFailed {
                expected: version,
                actual,
            });
        }
        self.pinned.insert(stream.clone(), version);
        Ok(())
    }

    /// Appends `events` of aggregate `A` to `stream`, at the version it was read at (a
    /// stream never read is expected not to exist).
    pub fn write<A: Aggregate>(&mut self, stream: &StreamId, events: &[A::Event]) {
        if events.is_empty() {
            return;
        }
        let read = self.reads.get(stream);
        let version = read.map_or(0, |r| r.version);
        let events = events.iter().map(new_event::<A>).collect();
        self.writes.push(StreamWrite {
            stream_id: stream.clone(),
            expected: if version == 0 {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exact(version)
            },
            events,
            prev_hash: read.and_then(|r| r.last_hash.clone()),
        });
    }

    /// Creates `stream` to hold a unique value (an email, a SKU): if it exists already, the
    /// command fails with `Taken(what)` instead of retrying.
    pub fn reserve<A: Aggregate>(
        &mut self,
        stream: &StreamId,
        events: &[A::Event],
        what: &'static str,
    ) {
        self.reads.remove(stream);
        self.write::<A>(stream, events);
        self.reserved.push((stream.clone(), what));
    }

    /// Whether this attempt writes anything.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }
}

fn new_event<A: Aggregate>(e: &A::Event) -> NewEvent {
    NewEvent {
        event_type: e.event_type().to_owned(),
        schema_version: e.schema_version(),
        payload: e.to_payload(),
    }
}

impl CommandHandler {
    /// The state of a stream whose last event holds it all, and that event (`None`, and
    /// the default state, for a stream with none).
    pub async fn tail_state<A: domain::TailState>(
        &self,
        tenant: &domain::TenantId,
        stream: &StreamId,
    ) -> Result<(A, Option<EventEnvelope>), CommandError<A::Error>> {
        let last = self
            .store()
            .read_last(tenant, stream)
            .await
            .map_err(CommandError::Store)?;
        let state = match &last {
            Some(e) => A::from_last(&A::Event::from_stored(
                &e.event_type,
                e.schema_version,
                &e.payload,
            )?),
            None => A::default(),
        };
        Ok((state, last))
    }

    /// Runs `command` through the pipeline and counts its outcome.
    pub async fn run<C: Command>(
        &self,
        meta: &CommandMeta,
        command: &C,
    ) -> Result<Ran<C::Output>, CommandError<C::Error>> {
        let result = self.run_inner(meta, command).await;
        self.metrics().record(C::NAME, &result);
        result
    }

    /// What the first run under `meta`'s idempotency key wrote, if the store has seen the
    /// key: `IdempotencyMismatch` when it came with another request. A command whose
    /// preparation is costly (a password hash) asks before preparing.
    pub async fn recorded<E: std::error::Error + 'static>(
        &self,
        meta: &CommandMeta,
    ) -> Result<Option<Vec<Arc<EventEnvelope>>>, CommandError<E>> {
        let Some(idem) = &meta.idempotency else {
            return Ok(None);
        };
        let record = self
            .store()
            .idempotent_result(&meta.tenant_id, &idem.key)
            .await
            .map_err(CommandError::Store)?;
        match record {
            Some(r) if r.request_hash != idem.request_hash => {
                Err(CommandError::IdempotencyMismatch)
            }
            Some(r) => Ok(Some(r.into_outcome().events)),
            None => Ok(None),
        }
    }

    async fn run_inner<C: Command>(
        &self,
        meta: &CommandMeta,
        command: &C,
    ) -> Result<Ran<C::Output>, CommandError<C::Error>> {
        if let Some(events) = self.recorded(meta).await? {
            return self.replay(meta, command, events).await;
        }
        let attempts = command.attempts().unwrap_or_else(|| self.max_attempts());
        // This writer's turns on hot streams (`hot.rs`), held to the end of the run.
        let mut turns: Vec<crate::hot::Turn> = Vec::new();
        for attempt in 0..attempts {
            let mut tx = Tx {
                handler: self,
                meta,
                ctx: CommandContext {
                    actor: meta.actor.clone(),
                    now: self.now(),
                },
                reads: HashMap::new(),
                writes: Vec::new(),
                pinned: HashMap::new(),
                reserved: Vec::new(),
            };
            let output = command.decide(&mut tx).await?;
            if tx.writes.is_empty() {
                return Ok(Ran {
                    output,
                    events: vec![],
                    replayed: false,
                });
            }
            // Writers of this process are queued on a stream this run writes: wait for a
            // turn, then decide again on what the writers before it left.
            if turns.is_empty() {
                let hot: Vec<StreamId> = tx
                    .writes
                    .iter()
                    .map(|w| w.stream_id.clone())
                    .filter(|s| self.hot().is_hot(&meta.tenant_id, s))
                    .collect();
                if !hot.is_empty() {
                    turns = self.hot().turns(&meta.tenant_id, &hot).await;
                    continue;
                }
            }
            let request = AppendRequest {
                tenant_id: meta.tenant_id.clone(),
                command_id: meta.command_id,
                correlation_id: meta.correlation_id,
                causation_id: meta.causation_id,
                actor: meta.actor.user_id.to_string(),
                idempotency: meta.idempotency.clone(),
                streams: std::mem::take(&mut tx.writes),
            };
            match self.store().append(request).await {
                Ok(outcome) if outcome.replayed => {
                    return self.replay(meta, command, outcome.events).await;
                }
                Ok(outcome) => {
                    return Ok(Ran {
                        output,
                        events: outcome.events,
                        replayed: false,
                    });
                }
                Err(StoreError::Conflict {
                    stream_id, actual, ..
                }) => {
                    if let Some((_, what)) = tx.reserved.iter().find(|(s, _)| *s == stream_id) {
                        return Err(CommandError::Taken(what));
                    }
                    if let Some(expected) = tx.pinned.get(&stream_id) {
                        return Err(CommandError::PreconditionFailed {
                            expected: *expected,
                            actual,
                        });
                    }
                    tracing::debug!(stream_id = %stream_id, attempt, "version conflict, deciding again");
                    if turns.iter().any(|t| *t.stream() == stream_id) {
                        // Another process's writer got there first: pause, keep the turn.
                        if attempt + 1 < attempts {
                            tokio::time::sleep(backoff(attempt)).await;
                        }
                    } else {
                        // Queue with this process's other writers of the stream, keeping
                        // the turns already held (all retaken at once, in stream order).
                        let mut streams: Vec<StreamId> =
                            turns.iter().map(|t| t.stream().clone()).collect();
                        streams.push(stream_id);
                        turns.clear();
                        turns = self.hot().turns(&meta.tenant_id, &streams).await;
                    }
                }
                Err(StoreError::IdempotencyMismatch { .. }) => {
                    return Err(CommandError::IdempotencyMismatch);
                }
                Err(e) => return Err(CommandError::Store(e)),
            }
        }
        Err(CommandError::Contended(attempts))
    }

    async fn replay<C: Command>(
        &self,
        meta: &CommandMeta,
        command: &C,
        events: Vec<Arc<EventEnvelope>>,
    ) -> Result<Ran<C::Output>, CommandError<C::Error>> {
        let output = command.replayed(self, meta, &events).await?;
        Ok(Ran {
            output,
            events,
            replayed: true,
        })
    }
}

/// The pause before attempt `attempt + 1`: the first retry at once (most conflicts clear by
/// re-reading), then a random share of a window that doubles, so racing writers spread out.
fn backoff(attempt: u32) -> Duration {
    if attempt == 0 {
        return Duration::ZERO;
    }
    let window_us = 200u64 << attempt.min(6);
    Duration::from_micros(rand::random_range(0..=window_us))
}
