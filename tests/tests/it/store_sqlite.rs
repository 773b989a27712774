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
        store.append(req).await.expect("append").events
    };
    let reopened = SqliteEventStore::open(&path).expect("reopen");
    assert_eq!(reopened.last_position(), written[0].position);
    assert_eq!(
        reopened.read_stream(&t, &s, 1, 10).await.expect("read"),
        written
    );
}
