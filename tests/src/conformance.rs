//! The event-store conformance suite (DESIGN §4), written once. A backend runs it with
//! `store_conformance!(factory)`, where `factory()` returns a store; every test uses fresh
//! random tenants, so a shared store (one emulator table) works as well as a fresh one.

use commands::{
    AppendRequest, EventStore, ExpectedVersion, FeedCursor, Idempotency, MAX_EVENTS_PER_APPEND,
    NewEvent, StoreError, StreamWrite,
};
use domain::envelope::verify_chain;
use domain::{EventEnvelope, GENESIS_HASH, StreamId, TenantId};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use uuid::Uuid;

pub type Store = Arc<dyn EventStore>;

/// Expands to one `#[tokio::test]` per conformance point, each calling `$factory().await`.
#[macro_export]
macro_rules! store_conformance {
    ($factory:path) => {
        $crate::store_conformance!(@tests $factory;
            expected_version_is_enforced_and_a_conflict_writes_nothing,
            concurrent_any_appends_to_one_stream_are_gapless_and_lossless,
            concurrent_exact_appends_with_retry_are_gapless_and_lossless,
            a_multi_stream_append_is_all_or_nothing,
            idempotency_key_replays_the_first_result,
            stream_reads_page_in_version_order,
            the_last_event_is_the_highest_version_of_the_stream_only,
            tenant_feed_gives_each_event_once_and_only_its_own,
            every_event_carries_a_valid_hash_chain,
            malformed_appends_are_refused,
        );
    };
    (@tests $factory:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                $crate::conformance::$name($factory().await).await;
            }
        )*
    };
}

pub fn tenant() -> TenantId {
    TenantId::parse(format!("t-{}", Uuid::new_v4().simple())).expect("valid tenant")
}

pub fn stream(kind: &str) -> StreamId {
    StreamId::for_aggregate(kind, Uuid::now_v7())
}

pub fn event(n: u64) -> NewEvent {
    NewEvent {
        event_type: "Tested".into(),
        schema_version: 1,
        payload: json!({ "n": n }),
    }
}

pub fn request(tenant: &TenantId, writes: Vec<StreamWrite>) -> AppendRequest {
    AppendRequest {
        tenant_id: tenant.clone(),
        command_id: Uuid::now_v7(),
        correlation_id: Uuid::now_v7(),
        causation_id: None,
        actor: "conformance".into(),
        idempotency: None,
        streams: writes,
    }
}

pub fn write(stream: &StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> StreamWrite {
    StreamWrite {
        stream_id: stream.clone(),
        expected,
        events,
        prev_hash: None,
    }
}

pub async fn read_all(store: &Store, tenant: &TenantId, s: &StreamId) -> Vec<EventEnvelope> {
    let mut out: Vec<EventEnvelope> = Vec::new();
    loop {
        let from = out.last().map_or(1, |e| e.version + 1);
        let page = store
            .read_stream(tenant, s, from, 500)
            .await
            .expect("read stream");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

pub async fn expected_version_is_enforced_and_a_conflict_writes_nothing(store: Store) {
    let (t, s) = (tenant(), stream("c"));
    let first = store
        .append(request(
            &t,
            vec![write(
                &s,
                ExpectedVersion::NoStream,
                vec![event(1), event(2)],
            )],
        ))
        .await
        .expect("first append");
    assert_eq!(
        first.events.iter().map(|e| e.version).collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(!first.replayed);

    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(1),
        ExpectedVersion::Exact(3),
    ] {
        let err = store
            .append(request(&t, vec![write(&s, expected, vec![event(9)])]))
            .await
            .expect_err("stale expected version must conflict");
        assert_eq!(
            err,
            StoreError::Conflict {
                stream_id: s.clone(),
                expected,
                actual: 2
            }
        );
    }
    assert_eq!(
        read_all(&store, &t, &s).await.len(),
        2,
        "a conflict wrote nothing"
    );

    let exact = store
        .append(request(
            &t,
            vec![write(&s, ExpectedVersion::Exact(2), vec![event(3)])],
        ))
        .await
        .expect("exact");
    assert_eq!(exact.events[0].version, 3);
    let any = store
        .append(request(
            &t,
            vec![write(&s, ExpectedVersion::Any, vec![event(4)])],
        ))
        .await
        .expect("any");
    assert_eq!(any.events[0].version, 4);
    let fresh = stream("c");
    let err = store
        .append(request(
            &t,
            vec![write(&fresh, ExpectedVersion::Exact(1), vec![event(1)])],
        ))
        .await
        .expect_err("a missing stream is at version 0");
    assert!(matches!(err, StoreError::Conflict { actual: 0, .. }));
    let other_tenant = store
        .append(request(
            &tenant(),
            vec![write(&s, ExpectedVersion::NoStream, vec![event(1)])],
        ))
        .await
        .expect("the same stream id in another tenant is another stream");
    assert_eq!(other_tenant.events[0].version, 1);
}

/// Checks that `events` are versions 1..=n exactly once and hold every acknowledged id.
fn assert_gapless_and_complete(events: &[EventEnvelope], acked: &HashSet<String>) {
    let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
    let expected: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(versions, expected, "versions must be gapless and unique");
    let stored: HashSet<String> = events
        .iter()
        .map(|e| e.payload["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(stored.len(), events.len(), "no event stored twice");
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged appends lost: {lost:?}");
    assert_eq!(
        stored.len(),
        acked.len(),
        "nothing stored that was not acknowledged"
    );
}

const WRITERS: usize = 32;

pub async fn concurrent_any_appends_to_one_stream_are_gapless_and_lossless(store: Store) {
    let (t, s) = (tenant(), stream("race"));
    let per_writer = 100;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (store, t, s) = (store.clone(), t.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..per_writer {
                let id = format!("{w}-{i}");
                let new = NewEvent {
                    event_type: "Raced".into(),
                    schema_version: 1,
                    payload: json!({ "id": id }),
                };
                store
                    .append(request(
                        &t,
                        vec![write(&s, ExpectedVersion::Any, vec![new])],
                    ))
                    .await
                    .expect("an Any append never conflicts");
                acked.push(id);
            }
            acked
        }));
    }
    let mut acked = HashSet::new();
    for task in tasks {
        acked.extend(task.await.expect("writer"));
    }
    assert_eq!(acked.len(), WRITERS * per_writer);
    assert_gapless_and_complete(&read_all(&store, &t, &s).await, &acked);
}

pub async fn concurrent_exact_appends_with_retry_are_gapless_and_lossless(store: Store) {
    let (t, s) = (tenant(), stream("race"));
    // Every lost race costs a round trip: kept small so emulated backends finish too.
    let per_writer = 4;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (store, t, s) = (store.clone(), t.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut known = 0;
            for i in 0..per_writer {
                let id = format!("{w}-{i}");
                loop {
                    let new = NewEvent {
                        event_type: "Raced".into(),
                        schema_version: 1,
                        payload: json!({ "id": id }),
                    };
                    let expected = if known == 0 {
                        ExpectedVersion::NoStream
                    } else {
                        ExpectedVersion::Exact(known)
                    };
                    match store
                        .append(request(&t, vec![write(&s, expected, vec![new])]))
                        .await
                    {
                        Ok(o) => {
                            known = o.events[0].version;
                            break;
                        }
                        Err(StoreError::Conflict { actual, .. }) => known = actual,
                        Err(e) => panic!("unexpected error {e}"),
                    }
                }
                acked.push(id);
            }
            acked
        }));
    }
    let mut acked = HashSet::new();
    for task in tasks {
        acked.extend(task.await.expect("writer"));
    }
    assert_gapless_and_complete(&read_all(&store, &t, &s).await, &acked);
}

pub async fn a_multi_stream_append_is_all_or_nothing(store: Store) {
    let t = tenant();
    let (a, b, c) = (stream("order"), stream("product"), stream("product"));
    store
        .append(request(
            &t,
            vec![write(&b, ExpectedVersion::NoStream, vec![event(1)])],
        ))
        .await
        .expect("seed b");
    let err = store
        .append(request(
            &t,
            vec![
                write(&a, ExpectedVersion::NoStream, vec![event(1), event(2)]),
                write(&c, ExpectedVersion::NoStream, vec![event(1)]),
                write(&b, ExpectedVersion::Exact(5), vec![event(2)]),
            ],
        ))
        .await
        .expect_err("b is at 1, not 5");
    assert!(
        matches!(err, StoreError::Conflict { ref stream_id, actual: 1, .. } if *stream_id == b)
    );
    assert!(
        read_all(&store, &t, &a).await.is_empty(),
        "nothing of a losing append"
    );
    assert!(
        read_all(&store, &t, &c).await.is_empty(),
        "nothing of a losing append"
    );
    assert_eq!(read_all(&store, &t, &b).await.len(), 1);

    // The same with the losing stream in the middle and expecting "no stream", the
    // check a backend can only make inside its transaction (a unique-value reservation).
    let err = store
        .append(request(
            &t,
            vec![
                write(&a, ExpectedVersion::NoStream, vec![event(1)]),
                write(&b, ExpectedVersion::NoStream, vec![event(1)]),
                write(&c, ExpectedVersion::NoStream, vec![event(1)]),
            ],
        ))
        .await
        .expect_err("b exists");
    assert!(
        matches!(err, StoreError::Conflict { ref stream_id, .. } if *stream_id == b),
        "{err:?}"
    );
    for s in [&a, &c] {
        assert!(
            read_all(&store, &t, s).await.is_empty(),
            "nothing of a losing append"
        );
    }
    assert_eq!(read_all(&store, &t, &b).await.len(), 1);

    let ok = store
        .append(request(
            &t,
            vec![
                write(&a, ExpectedVersion::NoStream, vec![event(1), event(2)]),
                write(&c, ExpectedVersion::NoStream, vec![event(1)]),
                write(&b, ExpectedVersion::Exact(1), vec![event(2)]),
            ],
        ))
        .await
        .expect("all expectations hold");
    let written: Vec<(StreamId, u64)> = ok
        .events
        .iter()
        .map(|e| (e.stream_id.clone(), e.version))
        .collect();
    assert_eq!(
        written,
        [
            (a.clone(), 1),
            (a.clone(), 2),
            (c.clone(), 1),
            (b.clone(), 2)
        ]
    );
    assert!(
        ok.events
            .iter()
            .all(|e| e.command_id == ok.events[0].command_id)
    );
    assert_eq!(read_all(&store, &t, &a).await.len(), 2);
    assert_eq!(read_all(&store, &t, &b).await.len(), 2);
}

pub async fn idempotency_key_replays_the_first_result(store: Store) {
    let (t, s) = (tenant(), stream("idem"));
    let keyed = |hash: &str, expected| {
        let mut r = request(&t, vec![write(&s, expected, vec![event(1), event(2)])]);
        r.idempotency = Some(Idempotency {
            key: "key-1".into(),
            request_hash: hash.into(),
        });
        r
    };
    let first = store
        .append(keyed("h1", ExpectedVersion::NoStream))
        .await
        .expect("first");
    assert!(!first.replayed);
    // The retry would conflict (NoStream on an existing stream) were it not recognised.
    let again = store
        .append(keyed("h1", ExpectedVersion::NoStream))
        .await
        .expect("retry");
    assert!(again.replayed);
    assert_eq!(again.events, first.events, "the first result, unchanged");
    assert_eq!(
        read_all(&store, &t, &s).await.len(),
        2,
        "nothing new written"
    );

    let record = store
        .idempotent_result(&t, "key-1")
        .await
        .expect("lookup")
        .expect("recorded");
    assert_eq!(record.request_hash, "h1");
    let first_events: Vec<EventEnvelope> = first.clone().into_events();
    assert_eq!(record.events, first_events);

    let err = store
        .append(keyed("h2", ExpectedVersion::Any))
        .await
        .expect_err("other request");
    assert_eq!(
        err,
        StoreError::IdempotencyMismatch {
            key: "key-1".into()
        }
    );
    assert_eq!(read_all(&store, &t, &s).await.len(), 2);

    let other = tenant();
    assert!(
        store
            .idempotent_result(&other, "key-1")
            .await
            .expect("lookup")
            .is_none()
    );
    let mut r = request(
        &other,
        vec![write(&s, ExpectedVersion::NoStream, vec![event(1)])],
    );
    r.idempotency = Some(Idempotency {
        key: "key-1".into(),
        request_hash: "h2".into(),
    });
    assert!(!store.append(r).await.expect("keys are per tenant").replayed);
}

pub async fn the_last_event_is_the_highest_version_of_the_stream_only(store: Store) {
    let (t, s, other) = (tenant(), stream("last"), stream("last"));
    assert!(
        store.read_last(&t, &s).await.expect("read").is_none(),
        "no stream yet"
    );
    for n in 1..=3u64 {
        store
            .append(request(
                &t,
                vec![
                    write(&s, ExpectedVersion::Any, vec![event(n)]),
                    write(&other, ExpectedVersion::Any, vec![event(100 + n)]),
                ],
            ))
            .await
            .expect("append");
    }
    let last = store
        .read_last(&t, &s)
        .await
        .expect("read")
        .expect("an event");
    assert_eq!((last.version, last.payload["n"].as_u64()), (3, Some(3)));
    assert_eq!(last.stream_id, s);
    assert!(
        store
            .read_last(&tenant(), &s)
            .await
            .expect("read")
            .is_none(),
        "another tenant sees none of it"
    );
}

pub async fn stream_reads_page_in_version_order(store: Store) {
    let (t, s) = (tenant(), stream("page"));
    for chunk in 0..5u64 {
        let events = (0..5).map(|i| event(chunk * 5 + i + 1)).collect();
        store
            .append(request(&t, vec![write(&s, ExpectedVersion::Any, events)]))
            .await
            .expect("append");
    }
    for page_size in [1usize, 3, 7, 25, 100] {
        let mut got = Vec::new();
        loop {
            let from = got.last().map_or(1, |e: &EventEnvelope| e.version + 1);
            let page = store
                .read_stream(&t, &s, from, page_size)
                .await
                .expect("read");
            assert!(page.len() <= page_size);
            if page.is_empty() {
                break;
            }
            got.extend(page);
        }
        let ns: Vec<u64> = got
            .iter()
            .map(|e| e.payload["n"].as_u64().expect("n"))
            .collect();
        assert_eq!(ns, (1..=25).collect::<Vec<_>>(), "page size {page_size}");
    }
    let tail = store
        .read_stream(&t, &s, 20, 100)
        .await
        .expect("read from 20");
    assert_eq!(
        tail.iter().map(|e| e.version).collect::<Vec<_>>(),
        [20, 21, 22, 23, 24, 25]
    );
    assert!(
        store
            .read_stream(&t, &stream("none"), 1, 10)
            .await
            .expect("read")
            .is_empty()
    );
    assert!(
        store
            .read_stream(&tenant(), &s, 1, 10)
            .await
            .expect("read")
            .is_empty(),
        "other tenant"
    );
}

pub async fn tenant_feed_gives_each_event_once_and_only_its_own(store: Store) {
    let (a, b) = (tenant(), tenant());
    let streams: Vec<StreamId> = (0..4).map(|_| stream("feed")).collect();
    let mut expected = 0;
    for round in 0..6u64 {
        for s in &streams {
            for t in [&a, &b] {
                store
                    .append(request(
                        t,
                        vec![write(s, ExpectedVersion::Any, vec![event(round)])],
                    ))
                    .await
                    .expect("append");
            }
            expected += 1;
        }
    }
    for page_size in [1usize, 5, 1000] {
        let mut cursor = FeedCursor::start();
        let mut seen: Vec<EventEnvelope> = Vec::new();
        loop {
            let page = store
                .read_tenant_feed(&a, &cursor, page_size)
                .await
                .expect("feed");
            assert!(page.events.len() <= page_size);
            if page.events.is_empty() {
                break;
            }
            seen.extend(page.events);
            cursor = page.next;
        }
        assert!(
            seen.iter().all(|e| e.tenant_id == a),
            "another tenant's event in the feed"
        );
        let ids: HashSet<Uuid> = seen.iter().map(|e| e.event_id).collect();
        assert_eq!(ids.len(), seen.len(), "an event appeared twice");
        assert_eq!(seen.len(), expected, "page size {page_size}");
        let mut last: HashMap<&StreamId, u64> = HashMap::new();
        for e in &seen {
            let prev = last.insert(&e.stream_id, e.version).unwrap_or(0);
            assert_eq!(e.version, prev + 1, "stream {} out of order", e.stream_id);
        }
    }
}

pub async fn every_event_carries_a_valid_hash_chain(store: Store) {
    let t = tenant();
    let (s1, s2) = (stream("hash"), stream("hash"));
    for i in 0..5 {
        store
            .append(request(
                &t,
                vec![
                    write(&s1, ExpectedVersion::Any, vec![event(i), event(i + 100)]),
                    write(&s2, ExpectedVersion::Any, vec![event(i)]),
                ],
            ))
            .await
            .expect("append");
    }
    for s in [&s1, &s2] {
        let events = read_all(&store, &t, s).await;
        assert!(!events.is_empty());
        verify_chain(&events, 1, GENESIS_HASH).expect("valid chain");
        let mut tampered = events.clone();
        tampered[1].payload = json!({ "n": "forged" });
        assert!(
            verify_chain(&tampered, 1, GENESIS_HASH).is_err(),
            "tampering detected"
        );
    }
}

pub async fn malformed_appends_are_refused(store: Store) {
    let (t, s) = (tenant(), stream("bad"));
    let cases = vec![
        request(&t, vec![]),
        request(&t, vec![write(&s, ExpectedVersion::Any, vec![])]),
        request(
            &t,
            vec![
                write(&s, ExpectedVersion::Any, vec![event(1)]),
                write(&s, ExpectedVersion::Any, vec![event(2)]),
            ],
        ),
        request(
            &t,
            vec![write(
                &s,
                ExpectedVersion::Any,
                (0..=MAX_EVENTS_PER_APPEND as u64).map(event).collect(),
            )],
        ),
    ];
    for r in cases {
        let err = store.append(r).await.expect_err("malformed");
        assert!(matches!(err, StoreError::Invalid(_)), "got {err:?}");
    }
    assert!(read_all(&store, &t, &s).await.is_empty());
    let max = request(
        &t,
        vec![write(
            &s,
            ExpectedVersion::NoStream,
            (0..MAX_EVENTS_PER_APPEND as u64).map(event).collect(),
        )],
    );
    assert_eq!(
        store
            .append(max)
            .await
            .expect("the maximum fits")
            .events
            .len(),
        MAX_EVENTS_PER_APPEND
    );
}
