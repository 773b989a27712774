//! The embedded backend: the event store and the read models, each in a SQLite file (WAL).

mod events;
mod pool;
mod views;

use rusqlite::Connection;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

pub use events::{CommittedLog, SqliteEventStore};
pub use views::SqliteReadModelStore;

/// How often a checkpointer copies its WAL into the database file. A checkpoint ends in
/// an fsync of the database file, which flushes every page it copied; while that flush
/// runs, the event store's own WAL fsyncs (which acknowledge appends) queue behind it on
/// the same disk. The views are written as fast as the events, so under load each 2 s
/// checkpoint of theirs flushed 100-150 ms of pages, a few acknowledging fsyncs took
/// 50-100 ms, and the `POST /tasks` p99 under wrk was 45-75 ms (p90 3 ms). Small, frequent
/// checkpoints flush a little at a time: at 250 ms the p99 was 14-15 ms, at 100 ms 9-10
/// ms, at 50 ms 6-8 ms, with the same throughput and checkpoint work per second.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);

/// WAL frames (4 KiB pages) past which a checkpointer has the log start over, so that the
/// WAL cannot grow without bound under constant load.
const WAL_RESTART_FRAMES: i64 = 16 * 1024;

/// Frames appended during a catch-up checkpoint below which the rest are copied under the
/// writer's lock (see `checkpointer`).
const CATCH_UP_FRAMES: i64 = 512;

/// WAL frames past which the log is restarted the hard way (RESTART, which waits for every
/// reader): only when readers kept the writer from starting it over for several rounds.
const WAL_FORCE_RESTART_FRAMES: i64 = 8 * WAL_RESTART_FRAMES;

/// The database files of a process are checkpointed one at a time. Each checkpoint ends in
/// an fsync of its database file, and on ext4 (data=ordered) an fsync commits the journal
/// and waits for the data of every file written before it: the views' checkpoint (150 ms
/// of page writes under load) overlapping the events' made the events' sync take 80-120 ms,
/// against 20 ms one after the other.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The writer's connection of a database, shared with its checkpointer.
pub(crate) type Writer = Arc<Mutex<Connection>>;

/// Copies a WAL into its database file every `CHECKPOINT_EVERY`, on a thread and a
/// connection of its own, without blocking the writer (PASSIVE). Ends once the writer's
/// connection is gone.
///
/// The log must also start over now and then, or it grows without bound. SQLite starts it
/// over at the writer's next commit once every frame has been copied; under constant load
/// the writer appends frames while a PASSIVE checkpoint runs, so that never happens by
/// itself. A RESTART checkpoint forces it, but holds the writer back while it copies and
/// syncs: at 28k appends/s, 45-120 ms every 2 s, and all 64 connections of a load stalled
/// with it (the `POST /tasks` p99.9 of 40-75 ms). So once the log is long, PASSIVE runs
/// again until few frames are left, and those are copied under the writer's lock, on its
/// own connection: a hold of a few milliseconds, after which nothing is left to copy and
/// the writer's next commit starts the log over. A reader of the WAL's older frames keeps
/// it from starting over; past `WAL_FORCE_RESTART_FRAMES` a RESTART waits those readers
/// out.
fn checkpointer(conn: &Connection, writer: &Weak<Mutex<Connection>>, db: &'static str) {
    let took = |mode: &'static str| metrics::histogram!("chronicle_wal_checkpoint_seconds", "db" => db, "mode" => mode);
    let (passive_took, catch_up_took, restart_took) =
        (took("passive"), took("catch_up"), took("restart"));
    // The frames in the log after a checkpoint over `c` in `mode`.
    let checkpoint = |c: &Connection, mode: &str, timer: &metrics::Histogram| {
        let started = std::time::Instant::now();
        let frames = c.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            r.get::<_, i64>(1)
        });
        timer.record(started.elapsed().as_secs_f64());
        frames.inspect_err(|e| tracing::debug!(error = %e, db, mode, "checkpoint failed; retrying"))
    };
    loop {
        std::thread::sleep(CHECKPOINT_EVERY);
        let Some(writer) = writer.upgrade() else {
            return;
        };
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
        let Ok(mut frames) = checkpoint(conn, "PASSIVE", &passive_took) else {
            continue;
        };
        if frames <= WAL_RESTART_FRAMES {
            continue;
        }
        if frames > WAL_FORCE_RESTART_FRAMES {
            if let Err(e) = checkpoint(conn, "RESTART", &restart_took) {
                tracing::warn!(error = %e, frames, db, "WAL restart failed");
            }
            continue;
        }
        // Each round copies what the writer appended during the one before.
        for _ in 0..8 {
            let before = frames;
            let Ok(now) = checkpoint(conn, "PASSIVE", &catch_up_took) else {
                break;
            };
            frames = now;
            if frames - before <= CATCH_UP_FRAMES {
                break;
            }
        }
        let held = writer.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = checkpoint(&held, "PASSIVE", &catch_up_took);
    }
}

/// Starts `checkpointer` on a store thread named `name`, over its own connection to `path`.
fn spawn_checkpointer(
    name: &str,
    path: &std::path::Path,
    writer: Weak<Mutex<Connection>>,
    db: &'static str,
) -> Result<(), String> {
    let conn = Connection::open(path).map_err(|e| e.to_string())?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    crate::placement::spawn_store_thread(name, move || checkpointer(&conn, &writer, db))
        .map(drop)
        .map_err(|e| e.to_string())
}
