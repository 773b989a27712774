//! The event-store conformance suite on the embedded SQLite backend, plus what only a
//! file-backed store can show: events survive a reopen.

use chronicle_tests::conformance::{self, Store};
use commands::{EventStore, ExpectedVersion};
use infra::sqlite::SqliteEventStore;
use std::sync::Arc;

async fn sqlite_store() -> Store {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteEventStore::open(&dir.path().join("events.db")).expect("open");
    // The directory must outlive the store's threads; tests are short, so leak it.
    std::mem::forget(dir);
    Arc::new(store)
}

chronicle_tests::store_conformance!(sqlite_store);

#[tokio::test]
async fn events_survive_a_reopen_with_their_positions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    let (t, s) = (conformance::tenant(), conformance::stream("durable"));
    let written = {
        let store = SqliteEventStore::open(&path).expect("open");
        let req = conformance::request(
            &t,
            vec![conformance::write(
                &s,
                ExpectedVersion::NoStream,
                vec![conformance::event(1)],
            )],
        );
        store.append(req).await.expect("append").into_events()
    };
    let reopened = SqliteEventStore::open(&path).expect("reopen");
    assert_eq!(reopened.last_position(), written[0].position);
    assert_eq!(
        reopened.read_stream(&t, &s, 1, 10).await.expect("read"),
        written
    );
}

/// Projectors read the latest events from the store's memory and older ones from disk;
/// both must give the very same feed, whatever the mix of appends that made it.
#[tokio::test]
async fn the_feed_reads_the_same_from_memory_and_from_disk() {
    use commands::Idempotency;
    use projections::EventFeed;

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    let t = conformance::tenant();
    let store = SqliteEventStore::open(&path).expect("open");
    let streams: Vec<_> = (0..7).map(|_| conformance::stream("feed")).collect();
    let mut appends = Vec::new();
    for i in 0..40u64 {
        let s = &streams[(i % 7) as usize];
        let events = (0..=(i % 3)).map(conformance::event).collect();
        let mut req = conformance::request(
            &t,
            vec![conformance::write(s, ExpectedVersion::Any, events)],
        );
        if i % 5 == 0 {
            req.idempotency = Some(Idempotency {
                key: format!("key-{}", i % 10),
                request_hash: format!("hash-{}", i % 10),
            });
        }
        appends.push(store.append(req));
    }
    // Concurrent, so that they commit in shared batches; every fifth one past the second
    // round repeats an idempotency key and is a replay that writes nothing.
    let outcomes = futures::future::join_all(appends).await;
    assert!(outcomes.iter().all(Result::is_ok));
    // A refused append (a conflict) writes nothing either.
    let refused = conformance::request(
        &t,
        vec![conformance::write(
            &streams[0],
            ExpectedVersion::NoStream,
            vec![conformance::event(9)],
        )],
    );
    assert!(store.append(refused).await.is_err());

    let head = store.last_position();
    let starts = [0, 1, 2, 17, head - 3, head];
    let mut from_memory = Vec::new();
    for after in starts {
        from_memory.push(store.read_after(after, 1000).await.expect("memory"));
        from_memory.push(store.read_after(after, 5).await.expect("memory"));
    }
    drop(store);
    let reopened = SqliteEventStore::open(&path).expect("reopen");
    let mut from_disk = Vec::new();
    for after in starts {
        from_disk.push(reopened.read_after(after, 1000).await.expect("disk"));
        from_disk.push(reopened.read_after(after, 5).await.expect("disk"));
    }
    assert_eq!(from_memory, from_disk);
    let all = &from_disk[0];
    assert_eq!(all.last().map(|e| e.position), Some(head));
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
}

/// Commits only append to the WAL; a checkpointer thread copies it into the database file
/// in the background, so the file fills up without any commit doing that copy.
#[tokio::test]
async fn a_background_checkpointer_copies_the_wal_into_the_database_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    let store = SqliteEventStore::open(&path).expect("open");
    let size = || std::fs::metadata(&path).expect("events.db").len();
    let empty = size();
    let t = conformance::tenant();
    for i in 0..300u64 {
        let s = conformance::stream("checkpointed");
        let req = conformance::request(
            &t,
            vec![conformance::write(
                &s,
                ExpectedVersion::NoStream,
                vec![conformance::event(i)],
            )],
        );
        store.append(req).await.expect("append");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while size() == empty && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        size() > empty,
        "events.db still {empty} bytes: nothing was checkpointed"
    );
}

/// The checkpoint sequence number in a WAL file's header: SQLite adds one each time the log
/// starts over from its beginning.
fn wal_restarts(wal: &std::path::Path) -> Option<u32> {
    let bytes = std::fs::read(wal).ok()?;
    Some(u32::from_be_bytes(bytes.get(12..16)?.try_into().ok()?))
}

/// Under appends that never pause, a checkpoint rarely copies the whole log, and SQLite
/// starts the log over only after one that did: the checkpointer must see to it (by
/// catching up and copying the last frames under the writer's lock; by a RESTART past
/// 512 MiB). With that left out, the WAL reached 930 MB here before its third start over.
/// With it, the log starts over at 16k frames (64 MiB) plus what the writer appends while
/// the checkpointer catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_appends_that_never_pause_the_wal_starts_over_and_stays_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    let wal = dir.path().join("events.db-wal");
    let store = Arc::new(SqliteEventStore::open(&path).expect("open"));
    let t = conformance::tenant();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A page of payload per event, so the log grows quickly.
    let pad = "x".repeat(3_000);
    let mut writers = Vec::new();
    for w in 0..16u64 {
        let (store, t, stop, pad) = (store.clone(), t.clone(), stop.clone(), pad.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut e = conformance::event(w * 1_000_000 + n);
                e.payload["pad"] = serde_json::Value::String(pad.clone());
                let s = conformance::stream("busy");
                let req = conformance::request(
                    &t,
                    vec![conformance::write(&s, ExpectedVersion::NoStream, vec![e])],
                );
                store.append(req).await.expect("append");
                n += 1;
            }
            n
        }));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    let mut first = None;
    let mut largest = 0u64;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        let now = wal_restarts(&wal);
        if let Some(now) = now
            && now >= *first.get_or_insert(now) + 3
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the WAL did not start over three times in 180 s of appends (header {first:?} -> {now:?}, {largest} bytes)"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut appended = 0;
    for w in writers {
        appended += w.await.expect("writer");
    }
    assert!(appended > 0);
    assert!(
        largest < 256 * 1024 * 1024,
        "the WAL reached {largest} bytes: it started over only by the forced RESTART"
    );
}
