//! The embedded event store. One writer thread owns the write connection and commits every
//! append that queued up while the previous commit was syncing in one transaction (group
//! commit); one append's conflict does not touch its neighbours. An append is acknowledged
//! only once the WAL holding it is fsynced (see `writer_loop` and `syncer_loop`). Reads use
//! a pool of read-only connections; projectors that keep up read the newest events from
//! memory (`Tail`).

use super::pool::ReadPool;
use crate::placement::spawn_store_thread;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use commands::{
    AppendOutcome, AppendRequest, EventStore, FeedCursor, FeedPage, IdempotentRecord, StoreError,
};
use domain::envelope::{canonical_json, format_time, truncate_micros};
use domain::{EventEnvelope, GENESIS_HASH, StreamId, TenantId};
use projections::{EventFeed, Matched, ReadModelError, StreamSource, Wanted};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    position       INTEGER PRIMARY KEY,
    event_id       TEXT NOT NULL,
    tenant_id      TEXT NOT NULL,
    stream_id      TEXT NOT NULL,
    version        INTEGER NOT NULL,
    event_type     TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    recorded_at    TEXT NOT NULL,
    actor          TEXT NOT NULL,
    command_id     TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    causation_id   TEXT,
    payload        TEXT NOT NULL,
    hash           TEXT NOT NULL,
    UNIQUE (tenant_id, stream_id, version)
);
CREATE INDEX IF NOT EXISTS events_by_tenant ON events (tenant_id, position);
CREATE TABLE IF NOT EXISTS idempotency (
    tenant_id      TEXT NOT NULL,
    key            TEXT NOT NULL,
    request_hash   TEXT NOT NULL,
    first_position INTEGER NOT NULL,
    last_position  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, key)
) WITHOUT ROWID;
";

const COLUMNS: &str = "position, event_id, tenant_id, stream_id, version, event_type, \
    schema_version, recorded_at, actor, command_id, correlation_id, causation_id, payload, hash";

/// Most appends committed in one transaction.
const MAX_BATCH: usize = 1024;

/// While the syncer is busy, the writer holds appends back for at most this long (see
/// `Gate`); a slow fsync does not stall commits for longer.
const MAX_HOLD: Duration = Duration::from_millis(1);

/// Appends queued at which the writer stops holding them back and commits at once.
const DEEP_QUEUE: usize = 16;

/// Lets the writer hold appends back while the syncer is busy. An append that arrives
/// during an fsync becomes durable with the next fsync at the earliest, so committing it at
/// once buys nothing; committing everything that gathered when the fsync ends writes the
/// table's and indexes' newest pages to the WAL once instead of once per small batch, and
/// the next fsync has fewer bytes to flush. Under HTTP load that was 4-5% more requests/s
/// at 8% less CPU per request, for a slightly heavier projection-lag tail (a slow fsync
/// now holds back one larger batch). When appends queue deep (`DEEP_QUEUE`), the writer is
/// the bottleneck and commits at once, overlapping its commits with the syncer's fsyncs.
#[derive(Default)]
struct Gate {
    /// Appends sent to the writer and not yet taken into a batch.
    queued: AtomicUsize,
    lock: Mutex<()>,
    changed: Condvar,
}

impl Gate {
    fn enqueued(&self) {
        if self.queued.fetch_add(1, Ordering::AcqRel) + 1 == DEEP_QUEUE {
            self.notify();
        }
    }

    fn taken(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::AcqRel);
    }

    /// Wakes a holding writer to look again; call after the state it waits on changed.
    fn notify(&self) {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.changed.notify_all();
    }

    /// Waits while `busy()` and the queue is shallow, for at most `max`.
    fn hold(&self, busy: impl Fn() -> bool, max: Duration) {
        let waiting = || busy() && self.queued.load(Ordering::Acquire) < DEEP_QUEUE;
        if !waiting() {
            return;
        }
        let guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = self
            .changed
            .wait_timeout_while(guard, max, |()| waiting())
            .unwrap_or_else(PoisonError::into_inner);
    }
}

/// Most recent events kept in memory for the projectors tailing the log: at 15k events/s,
/// 130 ms of them, where the projectors' mean lag is 2-3 ms (8,192 cost 7 MiB more RSS).
const TAIL_CAPACITY: usize = 2048;

/// The latest durable events, in position order: a projector that keeps up reads them
/// here instead of decoding them back out of SQLite. Every durable event with a position
/// above `floor` is in `events`.
struct Tail {
    floor: u64,
    capacity: usize,
    /// Shared with the readers: a read hands out the same envelopes, not copies.
    events: VecDeque<Arc<EventEnvelope>>,
}

impl Tail {
    /// An empty tail over a log whose last position is `floor`.
    fn new(floor: u64, capacity: usize) -> Self {
        Self {
            floor,
            capacity,
            events: VecDeque::with_capacity(capacity),
        }
    }

    fn push(&mut self, outcomes: &[Result<AppendOutcome, StoreError>]) {
        let fresh = outcomes
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .filter(|o| !o.replayed)
            .flat_map(|o| o.events.iter());
        for e in fresh {
            if self.events.len() == self.capacity
                && let Some(old) = self.events.pop_front()
            {
                self.floor = old.position;
            }
            self.events.push_back(Arc::clone(e));
        }
    }

    /// Drops everything up to `position`, which readers must now read from SQLite.
    fn forget_through(&mut self, position: u64) {
        self.events.clear();
        self.floor = self.floor.max(position);
    }

    /// The events `wanted` takes among up to `limit` in `(after, until]`, or `None` when
    /// some of them have left the tail already.
    fn read(
        &self,
        after: u64,
        until: u64,
        limit: usize,
        wanted: &dyn Fn(&EventEnvelope) -> bool,
    ) -> Option<Matched> {
        if after < self.floor {
            return None;
        }
        let start = self.events.partition_point(|e| e.position <= after);
        let mut found = Matched::default();
        for e in self
            .events
            .range(start..)
            .take_while(|e| e.position <= until)
            .take(limit)
        {
            found.through = Some(e.position);
            found.looked += 1;
            if wanted(e) {
                found.events.push(Arc::clone(e));
            }
        }
        Some(found)
    }
}

struct Job {
    request: AppendRequest,
    reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

/// The SQLite event store; cheap to clone.
#[derive(Clone)]
pub struct SqliteEventStore {
    jobs: mpsc::Sender<Job>,
    readers: ReadPool,
    head: Arc<watch::Sender<u64>>,
    tail: Arc<Mutex<Tail>>,
    gate: Arc<Gate>,
}

impl SqliteEventStore {
    /// Opens (or creates) the store at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(backend)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(backend)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        // Commits do not sync; the syncer thread fsyncs the WAL after each batch (or run of
        // batches) and only then acknowledges them: see `syncer_loop`.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        // A 4 MiB page cache: appends touch the right edges of the indexes (positions,
        // time-ordered stream ids), and reads of older pages come from the OS's cache. At
        // 64 MiB it held half of the process's memory under write load, and 8 MiB against 4
        // cost 9 MiB of peak RSS under wrk, for the same requests/s either way.
        conn.pragma_update(None, "cache_size", -4_096)
            .map_err(backend)?;
        // Commits never checkpoint: a checkpoint thread does (`super::checkpointer`).
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(backend)?;
        let last: u64 = conn
            .query_row("SELECT COALESCE(MAX(position), 0) FROM events", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(backend)? as u64;
        let head = Arc::new(watch::channel(last).0);
        let tail = Arc::new(Mutex::new(Tail::new(last, TAIL_CAPACITY)));
        let (jobs, rx) = mpsc::channel();
        let (committed, to_sync) = mpsc::channel();
        let durable = Arc::new(Durable {
            wal_path: wal_path(path),
            head: head.clone(),
            tail: tail.clone(),
            syncing: AtomicUsize::new(0),
            gate: Arc::default(),
            sync_took: metrics::histogram!("chronicle_wal_sync_seconds", "db" => "events"),
        });
        let gate = durable.gate.clone();
        let conn: super::Writer = Arc::new(Mutex::new(conn));
        // The checkpointer stops once the writer thread has ended (it holds the connection).
        super::spawn_checkpointer("events-checkpointer", path, Arc::downgrade(&conn), "events")
            .map_err(StoreError::Backend)?;
        let writer_durable = durable.clone();
        spawn_store_thread("sqlite-event-writer", move || {
            writer_loop(&conn, &rx, &committed, &writer_durable);
        })
        .map_err(backend)?;
        spawn_store_thread("sqlite-event-syncer", move || {
            syncer_loop(&to_sync, &durable)
        })
        .map_err(backend)?;
        Ok(Self {
            jobs,
            readers: ReadPool::new(path),
            head,
            tail,
            gate,
        })
    }

    /// The highest committed position.
    pub fn last_position(&self) -> u64 {
        *self.head.borrow()
    }

    async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        self.readers.run(f).await.map_err(StoreError::Backend)
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A committed batch waiting for its fsync: the jobs, their results, the last position.
struct Committed {
    jobs: Vec<Job>,
    results: Vec<Result<AppendOutcome, StoreError>>,
    last: Option<u64>,
}

/// Commits batches without syncing. When more appends are already waiting, the batch goes
/// to the syncer thread and the writer moves on, so commit and fsync overlap instead of
/// adding up; when none are, the writer syncs and acknowledges it itself, sparing a lone
/// writer a thread hop. While the syncer is busy and few appends wait, the writer holds
/// them back until it is done (`Gate`).
///
/// Measured and not kept (wrk's `POST /tasks`, two cores): the writer syncing every batch
/// itself, as the group-commit peer does, with no syncer and no holding back. At 64
/// connections it served as much or a little more (+3% to +13% in five comparisons of
/// alternating runs; next to the peer in two harness runs each, 0.486 against 0.470 of the
/// peer's requests/s), at 16 connections -3% to +10%. But at 256 connections, where a
/// batch's commit takes about as long as its fsync and the overlap counts most, it served
/// 5-15% less in three harness runs out of three (0.49-0.52 of the peer against 0.55-0.58).
fn writer_loop(
    conn: &Mutex<Connection>,
    rx: &mpsc::Receiver<Job>,
    committed: &mpsc::Sender<Committed>,
    durable: &Durable,
) {
    let mut wal = None;
    let mut next = None;
    loop {
        let first = match next.take() {
            Some(job) => job,
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        durable
            .gate
            .hold(|| durable.syncing.load(Ordering::Acquire) > 0, MAX_HOLD);
        let mut jobs = gather(first, rx);
        durable.gate.taken(jobs.len());
        // Shared only with the checkpointer, which takes it for a few milliseconds now and
        // then to let the log start over (`super::checkpointer`).
        let results = commit_batch(
            &mut conn.lock().unwrap_or_else(PoisonError::into_inner),
            &mut jobs,
        );
        let last = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .flat_map(|o| o.events.iter().map(|e| e.position))
            .max();
        let batch = Committed {
            jobs,
            results,
            last,
        };
        // Batches are acknowledged in commit order: inline only when the syncer has
        // nothing left, so that the tail always grows by whole batches in position order.
        let waiting = rx.try_recv().ok();
        let busy = durable.syncing.load(Ordering::Acquire) > 0;
        if waiting.is_some() || busy {
            next = waiting;
            durable.syncing.fetch_add(1, Ordering::AcqRel);
            if let Err(mpsc::SendError(batch)) = committed.send(batch) {
                durable.syncing.fetch_sub(1, Ordering::AcqRel);
                durable.acknowledge(&mut wal, vec![batch]);
            }
        } else {
            durable.acknowledge(&mut wal, vec![batch]);
        }
    }
}

fn wal_path(db: &Path) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    name.into()
}

/// Makes committed batches durable and only then acknowledges them.
struct Durable {
    wal_path: std::path::PathBuf,
    head: Arc<watch::Sender<u64>>,
    tail: Arc<Mutex<Tail>>,
    /// Batches handed to the syncer and not yet acknowledged.
    syncing: AtomicUsize,
    gate: Arc<Gate>,
    /// How long each acknowledging fsync took (`chronicle_wal_sync_seconds`), registered
    /// once: building the key on every fsync would cost more than recording.
    sync_took: metrics::Histogram,
}

impl Durable {
    /// One `fdatasync` of the WAL covers every batch committed before it (and all earlier
    /// ones). The head that feed readers see moves only here, so projectors never apply an
    /// event that is not yet durable.
    fn acknowledge(&self, wal: &mut Option<std::fs::File>, batches: Vec<Committed>) {
        let last = batches.iter().filter_map(|b| b.last).max();
        let synced = match last {
            None => Ok(()),
            Some(_) => sync(wal, &self.wal_path, &self.sync_took),
        };
        if let Err(e) = &synced {
            // The batches are committed but maybe not durable: their callers learn that the
            // outcome is unknown (a retry with the same idempotency key is safe).
            tracing::error!(error = %e, "fsync of the event store's WAL failed");
            *wal = None;
            // They may still become durable with a later fsync, and then the feed must
            // not skip them: readers go to SQLite for everything up to here.
            if let Some(last) = last {
                self.tail
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .forget_through(last);
            }
        }
        if let (Ok(()), Some(last)) = (&synced, last) {
            // The events first, then the head: a reader that sees the new head finds them.
            // (A poisoned lock only means a reader panicked mid-copy; the tail is intact.)
            let mut tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
            for batch in &batches {
                tail.push(&batch.results);
            }
            drop(tail);
            self.head.send_if_modified(|h| {
                let newer = last > *h;
                if newer {
                    *h = last;
                }
                newer
            });
        }
        for batch in batches {
            for (job, result) in batch.jobs.into_iter().zip(batch.results) {
                let result = match (&synced, result) {
                    (Err(e), Ok(_)) => Err(StoreError::Backend(format!(
                        "the append was committed but could not be made durable: {e}"
                    ))),
                    (_, result) => result,
                };
                // The caller may have gone away; its append is durable all the same.
                let _ = job.reply.send(result);
            }
        }
    }
}

/// The syncer thread: acknowledges what the writer handed over, a run of batches per fsync.
fn syncer_loop(rx: &mpsc::Receiver<Committed>, durable: &Durable) {
    let mut wal = None;
    while let Ok(first) = rx.recv() {
        let mut batches = vec![first];
        batches.extend(rx.try_iter());
        let n = batches.len();
        durable.acknowledge(&mut wal, batches);
        durable.syncing.fetch_sub(n, Ordering::AcqRel);
        durable.gate.notify();
    }
}

/// Under load the fsync is the longest step of an append: 370-470 us per WAL sync at 64
/// connections, about 200 us at 16. The disk is not what makes it long. The same disk syncs
/// an 8 KiB write in 105-125 us on an idle machine and a 96 KiB one in 126 us, but in
/// 145-400 us beside three busy loops: most of the time is the wait for a CPU once the sync
/// returns. Neither the checkpointers' writes (none for the whole run: the same sync time)
/// nor the WAL's growth (growing and reused: the same) nor its bytes per sync change it.
///
/// Now and then one sync takes tens of milliseconds, and every append waiting on it with
/// it: the `POST /tasks` max under wrk is 12-100 ms (crud-sqlite-batched's: 10-33 ms).
/// Traced with the scheduler's events, one such sync took 36 ms while both CPUs sat idle
/// and no journal or writeback thread ran: the virtual disk finishing its flush, nothing
/// this process or the file system did.
fn sync(
    wal: &mut Option<std::fs::File>,
    path: &Path,
    took: &metrics::Histogram,
) -> std::io::Result<()> {
    let file = match wal {
        Some(f) => f,
        None => wal.insert(std::fs::File::open(path)?),
    };
    let started = std::time::Instant::now();
    let synced = file.sync_data();
    took.record(started.elapsed().as_secs_f64());
    synced
}

/// Takes `first` and whatever else is queued: the appends that arrived while the previous
/// batch was syncing share the next fsync.
fn gather(first: Job, rx: &mpsc::Receiver<Job>) -> Vec<Job> {
    let mut jobs = vec![first];
    jobs.extend(rx.try_iter().take(MAX_BATCH - 1));
    jobs
}

/// Runs every job of the batch in one transaction. Each job is checked in full (idempotency,
/// every stream's expected version) before any of its events is written, so a refused job
/// writes nothing and needs no savepoint. A storage error while writing fails the batch.
fn commit_batch(conn: &mut Connection, jobs: &mut [Job]) -> Vec<Result<AppendOutcome, StoreError>> {
    let n = jobs.len();
    let fail_all = |e: rusqlite::Error| (0..n).map(|_| Err(backend(&e))).collect();
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return fail_all(e),
    };
    let now = truncate_micros(Utc::now());
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        match check(&tx, &job.request) {
            Ok(Checked::Write(heads)) => match write(&tx, &mut job.request, heads, now) {
                Ok(outcome) => results.push(Ok(outcome)),
                Err(e) => {
                    tracing::error!(error = %e, "event store write failed; the batch is rolled back");
                    return fail_all(e);
                }
            },
            Ok(Checked::Replay(outcome)) => results.push(Ok(outcome)),
            Err(e) => results.push(Err(e)),
        }
    }
    match tx.commit() {
        Ok(()) => results,
        Err(e) => {
            tracing::error!(error = %e, "event store commit failed");
            fail_all(e)
        }
    }
}

enum Checked {
    /// Seen before under this idempotency key: the first result.
    Replay(AppendOutcome),
    /// May be written: each stream's current version and last hash.
    Write(Vec<(u64, String)>),
}

fn check(conn: &Connection, req: &AppendRequest) -> Result<Checked, StoreError> {
    req.validate()?;
    if let Some(idem) = &req.idempotency
        && let Some(record) = idempotent_record(conn, &req.tenant_id, &idem.key).map_err(backend)?
    {
        if record.request_hash != idem.request_hash {
            return Err(StoreError::IdempotencyMismatch {
                key: idem.key.clone(),
            });
        }
        return Ok(Checked::Replay(record.into_outcome()));
    }
    let mut heads = Vec::with_capacity(req.streams.len());
    for w in &req.streams {
        let (current, hash) = stream_head(conn, &req.tenant_id, &w.stream_id).map_err(backend)?;
        if !w.expected.matches(current) {
            return Err(StoreError::Conflict {
                stream_id: w.stream_id.clone(),
                expected: w.expected,
                actual: current,
            });
        }
        heads.push((current, hash));
    }
    Ok(Checked::Write(heads))
}

/// Writes `req`'s events. Their payloads move into the envelopes (the request is spent
/// once its events are written); copying them was a tenth of the writer's time.
fn write(
    conn: &Connection,
    req: &mut AppendRequest,
    heads: Vec<(u64, String)>,
    now: DateTime<Utc>,
) -> rusqlite::Result<AppendOutcome> {
    let mut written = Vec::with_capacity(req.event_count());
    let mut payloads = Vec::with_capacity(req.event_count());
    for w in &mut req.streams {
        payloads.extend(w.events.iter_mut().map(|e| std::mem::take(&mut e.payload)));
    }
    let mut payloads = payloads.into_iter();
    // Rendered once: the hash and the row take the very same strings.
    let time = format_time(&now);
    for (w, (current, mut prev)) in req.streams.iter().zip(heads) {
        for (i, new) in w.events.iter().enumerate() {
            let payload = payloads.next().unwrap_or_default();
            let version = current + 1 + i as u64;
            let mut e = req.unsealed(w, new, payload, version, Uuid::now_v7(), now);
            let payload = canonical_json(&e.payload);
            e.hash = e.compute_hash_with(&prev, &time, &payload);
            e.position = insert_event(conn, &e, &time, &payload)?;
            prev.clone_from(&e.hash);
            written.push(Arc::new(e));
        }
    }
    if let Some(idem) = &req.idempotency {
        let first = written.first().map_or(0, |e| e.position);
        let last = written.last().map_or(0, |e| e.position);
        conn.prepare_cached(
            "INSERT INTO idempotency (tenant_id, key, request_hash, first_position, last_position) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            req.tenant_id.as_str(),
            idem.key,
            idem.request_hash,
            first as i64,
            last as i64
        ])?;
    }
    Ok(AppendOutcome {
        events: written,
        replayed: false,
    })
}

fn stream_head(
    conn: &Connection,
    tenant: &TenantId,
    stream: &StreamId,
) -> rusqlite::Result<(u64, String)> {
    let mut stmt = conn.prepare_cached(
        "SELECT version, hash FROM events WHERE tenant_id = ?1 AND stream_id = ?2 \
         ORDER BY version DESC LIMIT 1",
    )?;
    let head = stmt
        .query_row(params![tenant.as_str(), stream.as_str()], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
        })
        .optional()?;
    Ok(head.unwrap_or_else(|| (0, GENESIS_HASH.to_owned())))
}

/// Inserts `e`, whose `recorded_at` and payload are already rendered as `time` and
/// `payload` (canonical JSON: what the hash covers, and valid JSON to read back).
fn insert_event(
    conn: &Connection,
    e: &EventEnvelope,
    time: &str,
    payload: &str,
) -> rusqlite::Result<u64> {
    let mut ids = [[0u8; uuid::fmt::Hyphenated::LENGTH]; 4];
    let [event_id, command_id, correlation_id, causation_id] = &mut ids;
    let mut stmt = conn.prepare_cached(
        "INSERT INTO events (event_id, tenant_id, stream_id, version, event_type, schema_version, \
         recorded_at, actor, command_id, correlation_id, causation_id, payload, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    stmt.execute(params![
        &*e.event_id.hyphenated().encode_lower(event_id),
        e.tenant_id.as_str(),
        e.stream_id.as_str(),
        e.version as i64,
        e.event_type,
        e.schema_version,
        time,
        e.actor,
        &*e.command_id.hyphenated().encode_lower(command_id),
        &*e.correlation_id.hyphenated().encode_lower(correlation_id),
        e.causation_id
            .map(|c| &*c.hyphenated().encode_lower(causation_id)),
        payload,
        e.hash,
    ])?;
    Ok(conn.last_insert_rowid() as u64)
}

fn idempotent_record(
    conn: &Connection,
    tenant: &TenantId,
    key: &str,
) -> rusqlite::Result<Option<IdempotentRecord>> {
    let found = conn
        .prepare_cached(
            "SELECT request_hash, first_position, last_position FROM idempotency \
             WHERE tenant_id = ?1 AND key = ?2",
        )?
        .query_row(params![tenant.as_str(), key], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .optional()?;
    let Some((request_hash, first, last)) = found else {
        return Ok(None);
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE position BETWEEN ?1 AND ?2 AND tenant_id = ?3 ORDER BY position"
    );
    let events = query_events(conn, &sql, params![first, last, tenant.as_str()])?;
    Ok(Some(IdempotentRecord {
        request_hash,
        events,
    }))
}

fn conversion(e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
}

fn envelope_from_row(r: &Row<'_>) -> rusqlite::Result<EventEnvelope> {
    let uuid = |i: usize| -> rusqlite::Result<Uuid> {
        Uuid::parse_str(&r.get::<_, String>(i)?).map_err(conversion)
    };
    let recorded_at: String = r.get(7)?;
    let causation: Option<String> = r.get(11)?;
    Ok(EventEnvelope {
        position: r.get::<_, i64>(0)? as u64,
        event_id: uuid(1)?,
        tenant_id: TenantId::parse(r.get::<_, String>(2)?).map_err(conversion)?,
        stream_id: StreamId::parse(r.get::<_, String>(3)?).map_err(conversion)?,
        version: r.get::<_, i64>(4)? as u64,
        event_type: r.get(5)?,
        schema_version: r.get(6)?,
        recorded_at: domain::time::parse_rfc3339_strict(&recorded_at).map_err(conversion)?,
        actor: r.get(8)?,
        command_id: uuid(9)?,
        correlation_id: uuid(10)?,
        causation_id: causation
            .map(|c| Uuid::parse_str(&c))
            .transpose()
            .map_err(conversion)?,
        payload: serde_json::from_str(&r.get::<_, String>(12)?).map_err(conversion)?,
        hash: r.get(13)?,
    })
}

fn query_events(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Vec<EventEnvelope>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, envelope_from_row)?;
    rows.collect()
}

fn clamp(limit: usize) -> i64 {
    limit.min(10_000) as i64
}

#[async_trait]
impl EventStore for SqliteEventStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        request.validate()?;
        let (reply, rx) = oneshot::channel();
        self.gate.enqueued();
        self.jobs
            .send(Job { request, reply })
            .map_err(|_| StoreError::Backend("event writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Backend("event writer stopped".into()))?
    }

    async fn read_stream(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        let (tenant, stream) = (tenant.to_string(), stream.to_string());
        self.read(move |c| {
            let sql = format!(
                "SELECT {COLUMNS} FROM events WHERE tenant_id = ?1 AND stream_id = ?2 AND version >= ?3 \
                 ORDER BY version LIMIT ?4"
            );
            query_events(c, &sql, params![tenant, stream, from_version as i64, clamp(limit)])
        })
        .await
    }

    async fn read_last(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
    ) -> Result<Option<EventEnvelope>, StoreError> {
        let (tenant, stream) = (tenant.to_string(), stream.to_string());
        self.read(move |c| {
            let sql = format!(
                "SELECT {COLUMNS} FROM events WHERE tenant_id = ?1 AND stream_id = ?2 \
                 ORDER BY version DESC LIMIT 1"
            );
            query_events(c, &sql, params![tenant, stream])
        })
        .await
        .map(|mut events| events.pop())
    }

    /// The log's last position: after every event of every tenant.
    async fn tenant_feed_end(&self, _tenant: &TenantId) -> Result<FeedCursor, StoreError> {
        Ok(FeedCursor(self.last_position().to_string()))
    }

    async fn read_tenant_feed(
        &self,
        tenant: &TenantId,
        after: &FeedCursor,
        limit: usize,
    ) -> Result<FeedPage, StoreError> {
        let from: u64 = if after.0.is_empty() {
            0
        } else {
            after
                .0
                .parse()
                .map_err(|_| StoreError::Invalid(format!("not a feed cursor: {:?}", after.0)))?
        };
        let tenant = tenant.to_string();
        let events = self
            .read(move |c| {
                let sql = format!(
                    "SELECT {COLUMNS} FROM events WHERE tenant_id = ?1 AND position > ?2 \
                     ORDER BY position LIMIT ?3"
                );
                query_events(c, &sql, params![tenant, from as i64, clamp(limit)])
            })
            .await?;
        let next = events.last().map_or(from, |e| e.position);
        Ok(FeedPage {
            events,
            next: FeedCursor(next.to_string()),
        })
    }

    async fn idempotent_result(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> Result<Option<IdempotentRecord>, StoreError> {
        let (tenant, key) = (tenant.clone(), key.to_owned());
        self.read(move |c| idempotent_record(c, &tenant, &key))
            .await
    }
}

#[async_trait]
impl EventFeed for SqliteEventStore {
    async fn read_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<EventEnvelope>>, ReadModelError> {
        let durable = self.last_position();
        let recent = self
            .tail
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .read(after, durable, limit, &|_| true);
        if let Some(found) = recent {
            return Ok(found.events);
        }
        self.read_durable(after, durable, limit).await
    }

    async fn read_matching(
        &self,
        after: u64,
        limit: usize,
        wanted: &Wanted,
    ) -> Result<Matched, ReadModelError> {
        let durable = self.last_position();
        let recent = self
            .tail
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .read(after, durable, limit, wanted);
        if let Some(found) = recent {
            return Ok(found);
        }
        Ok(Matched::of(
            self.read_durable(after, durable, limit).await?,
            wanted,
        ))
    }

    fn head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }
}

impl SqliteEventStore {
    /// Up to `limit` events in `(after, durable]` from the file.
    async fn read_durable(
        &self,
        after: u64,
        durable: u64,
        limit: usize,
    ) -> Result<Vec<Arc<EventEnvelope>>, ReadModelError> {
        self.readers
            .run(move |c| {
                // Only up to the durable head: a committed batch is readable before its
                // fsync, and projectors must not get ahead of what a crash would keep.
                let sql = format!(
                    "SELECT {COLUMNS} FROM events WHERE position > ?1 AND position <= ?3 \
                     ORDER BY position LIMIT ?2"
                );
                query_events(c, &sql, params![after as i64, clamp(limit), durable as i64])
            })
            .await
            .map(shared)
            .map_err(ReadModelError::Backend)
    }
}

/// The log as committed by every process on the file, for a reader in another process than
/// the writer (`chronicle replay` or `chronicle analytics` beside a running server): it
/// reads past what this process has appended, up to the last committed position, and its
/// head follows the file (polled every `COMMITTED_POLL`).
#[derive(Clone)]
pub struct CommittedLog {
    readers: ReadPool,
    head: Arc<watch::Sender<u64>>,
}

/// How often a `CommittedLog` looks for commits of other processes.
const COMMITTED_POLL: Duration = Duration::from_millis(100);

impl SqliteEventStore {
    /// Needs a tokio runtime: a task polls the head while the log is in use.
    pub fn committed_log(&self) -> CommittedLog {
        let log = CommittedLog {
            readers: self.readers.clone(),
            head: Arc::new(watch::channel(self.last_position()).0),
        };
        let (readers, head) = (log.readers.clone(), Arc::downgrade(&log.head));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(COMMITTED_POLL).await;
                let Some(head) = head.upgrade() else { return };
                let last = readers
                    .run(|c| {
                        c.query_row("SELECT max(position) FROM events", [], |r| {
                            r.get::<_, Option<i64>>(0)
                        })
                    })
                    .await;
                if let Ok(Some(last)) = last {
                    advance(&head, last as u64);
                }
            }
        });
        log
    }
}

/// Events read back from the file, as a feed hands them out.
fn shared(events: Vec<EventEnvelope>) -> Vec<Arc<EventEnvelope>> {
    events.into_iter().map(Arc::new).collect()
}

fn advance(head: &watch::Sender<u64>, last: u64) {
    head.send_if_modified(|h| {
        let moved = last > *h;
        *h = (*h).max(last);
        moved
    });
}

#[async_trait]
impl EventFeed for CommittedLog {
    async fn read_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<EventEnvelope>>, ReadModelError> {
        let events = self
            .readers
            .run(move |c| {
                let sql = format!(
                    "SELECT {COLUMNS} FROM events WHERE position > ?1 ORDER BY position LIMIT ?2"
                );
                query_events(c, &sql, params![after as i64, clamp(limit)])
            })
            .await
            .map_err(ReadModelError::Backend)?;
        if let Some(last) = events.last() {
            advance(&self.head, last.position);
        }
        Ok(shared(events))
    }

    fn head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }
}

#[async_trait]
impl StreamSource for SqliteEventStore {
    async fn read_stream(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, ReadModelError> {
        EventStore::read_stream(self, tenant, stream, from_version, limit)
            .await
            .map_err(|e| ReadModelError::Backend(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_holds_the_writer_only_while_the_syncer_is_busy_and_the_queue_shallow() {
        // Waits that must end early get a bound no test run reaches: returning at all shows
        // that something other than the timeout released them.
        const NEVER: Duration = Duration::from_secs(600);
        let gate = Arc::new(Gate::default());
        let busy = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let holding = |gate: &Arc<Gate>, busy: &Arc<std::sync::atomic::AtomicBool>| {
            let (g, b) = (gate.clone(), busy.clone());
            std::thread::spawn(move || g.hold(|| b.load(Ordering::Acquire), NEVER))
        };
        // The syncer is idle: no wait at all.
        gate.hold(|| busy.load(Ordering::Acquire), NEVER);

        // Busy: released by the syncer's notification once it is done.
        busy.store(true, Ordering::Release);
        let holder = holding(&gate, &busy);
        std::thread::sleep(Duration::from_millis(5));
        assert!(!holder.is_finished(), "released while the syncer was busy");
        busy.store(false, Ordering::Release);
        gate.notify();
        holder.join().expect("holder");

        // Busy, with appends queueing: released when the queue reaches DEEP_QUEUE.
        busy.store(true, Ordering::Release);
        for _ in 0..DEEP_QUEUE - 1 {
            gate.enqueued();
        }
        let holder = holding(&gate, &busy);
        std::thread::sleep(Duration::from_millis(5));
        assert!(!holder.is_finished(), "released with a shallow queue");
        gate.enqueued();
        holder.join().expect("holder");
        // A deep queue is not held back at all.
        gate.hold(|| busy.load(Ordering::Acquire), NEVER);

        // Once taken into a batch, the queue is shallow again, and a busy syncer holds the
        // writer until the bound.
        gate.taken(DEEP_QUEUE);
        let bound = Duration::from_millis(20);
        let t = std::time::Instant::now();
        gate.hold(|| busy.load(Ordering::Acquire), bound);
        assert!(t.elapsed() >= bound);
    }

    fn event(position: u64) -> EventEnvelope {
        EventEnvelope {
            event_id: Uuid::from_u128(u128::from(position)),
            tenant_id: TenantId::parse("t1").expect("tenant"),
            stream_id: StreamId::parse(format!("task-{position}")).expect("stream"),
            version: 1,
            position,
            event_type: "TaskCreated".into(),
            schema_version: 1,
            recorded_at: Utc::now(),
            actor: "alice".into(),
            command_id: Uuid::from_u128(7),
            correlation_id: Uuid::from_u128(8),
            causation_id: None,
            payload: serde_json::json!({"title": "t"}),
            hash: String::new(),
        }
    }

    fn outcome(positions: &[u64], replayed: bool) -> Result<AppendOutcome, StoreError> {
        Ok(AppendOutcome {
            events: positions.iter().copied().map(event).map(Arc::new).collect(),
            replayed,
        })
    }

    fn positions(found: Option<Matched>) -> Option<Vec<u64>> {
        found.map(|f| f.events.iter().map(|e| e.position).collect())
    }

    #[test]
    fn the_tail_serves_what_it_holds_and_nothing_older() {
        let mut tail = Tail::new(10, 4);
        tail.push(&[
            outcome(&[11, 12], false),
            Err(StoreError::Invalid("refused".into())),
            outcome(&[5], true),
            outcome(&[13], false),
        ]);
        // Refused and replayed appends wrote nothing new.
        assert_eq!(
            positions(tail.read(10, 99, 100, &|_| true)),
            Some(vec![11, 12, 13])
        );
        assert_eq!(positions(tail.read(11, 99, 1, &|_| true)), Some(vec![12]));
        // Not past what is durable.
        assert_eq!(
            positions(tail.read(10, 12, 100, &|_| true)),
            Some(vec![11, 12])
        );
        assert_eq!(positions(tail.read(13, 99, 100, &|_| true)), Some(vec![]));
        // Older than the tail: the caller must read the store.
        assert_eq!(positions(tail.read(9, 99, 100, &|_| true)), None);

        tail.push(&[outcome(&[14, 15], false)]);
        // 11 left to make room; everything after it is still here.
        assert_eq!(positions(tail.read(10, 99, 100, &|_| true)), None);
        assert_eq!(
            positions(tail.read(11, 99, 100, &|_| true)),
            Some(vec![12, 13, 14, 15])
        );

        // A batch whose fsync failed was never pushed: nothing up to it is served.
        tail.forget_through(17);
        tail.push(&[outcome(&[18], false)]);
        assert_eq!(positions(tail.read(15, 99, 100, &|_| true)), None);
        assert_eq!(positions(tail.read(17, 99, 100, &|_| true)), Some(vec![18]));
    }

    #[test]
    fn a_filtered_read_hands_out_only_what_it_takes_and_says_how_far_it_looked() {
        let mut tail = Tail::new(10, 8);
        tail.push(&[outcome(&[11, 12, 13, 14], false)]);
        let even = |e: &EventEnvelope| e.position.is_multiple_of(2);
        let found = tail.read(10, 99, 3, &even).unwrap();
        assert_eq!((found.through, found.looked), (Some(13), 3));
        assert_eq!(
            found.events.iter().map(|e| e.position).collect::<Vec<_>>(),
            vec![12]
        );
        let none = tail.read(14, 99, 3, &even).unwrap();
        assert_eq!((none.through, none.events.len()), (None, 0));
    }
}
