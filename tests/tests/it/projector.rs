//! The projector engine on the real SQLite stores: exactly-once in effect under duplicate
//! and out-of-order delivery, gap filling, dead letters, restart without duplicates or
//! gaps, and a rebuild that equals the live model.

use commands::{AppendRequest, EventStore, ExpectedVersion, NewEvent, StreamWrite};
use domain::{EventEnvelope, StreamId, TenantId};
use infra::sqlite::{SqliteEventStore, SqliteReadModelStore};
use projections::tasks::{TasksProjection, VIEW};
use projections::{ListQuery, ProjectionProgress, Projector, ProjectorConfig, ReadModelStore};
use serde_json::{Value, json};
use std::sync::Arc;
use uuid::Uuid;

struct Rig {
    _dir: tempfile::TempDir,
    events: SqliteEventStore,
    views: SqliteReadModelStore,
}

impl Rig {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let events = SqliteEventStore::open(&dir.path().join("events.db")).expect("events");
        let views = SqliteReadModelStore::open(&dir.path().join("views.db")).expect("views");
        Self {
            _dir: dir,
            events,
            views,
        }
    }

    fn projector(&self, batch_size: usize) -> Projector {
        Projector::new(
            Arc::new(TasksProjection),
            Arc::new(self.views.clone()),
            Arc::new(self.events.clone()),
            ProjectionProgress::default(),
            ProjectorConfig {
                batch_size,
                ..ProjectorConfig::default()
            },
        )
    }

    async fn append(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        events: Vec<(&str, Value)>,
    ) -> Vec<EventEnvelope> {
        let request = AppendRequest {
            tenant_id: tenant.clone(),
            command_id: Uuid::now_v7(),
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            actor: "tester".into(),
            idempotency: None,
            streams: vec![StreamWrite {
                stream_id: stream.clone(),
                expected: ExpectedVersion::Any,
                events: events
                    .into_iter()
                    .map(|(t, payload)| NewEvent {
                        event_type: t.into(),
                        schema_version: 1,
                        payload,
                    })
                    .collect(),
                prev_hash: None,
            }],
        };
        self.events
            .append(request)
            .await
            .expect("append")
            .into_events()
    }

    /// A new task of `tenant`, created with `title` in a stream of its own: its id and event.
    async fn create_task(&self, tenant: &TenantId, title: &str) -> (Uuid, EventEnvelope) {
        let id = Uuid::now_v7();
        let mut written = self
            .append(
                tenant,
                &StreamId::for_aggregate("task", id),
                vec![created(&id, title)],
            )
            .await;
        (id, written.remove(0))
    }

    async fn rows(&self, tenant: &TenantId) -> Vec<(String, u64, Option<Value>)> {
        let q = ListQuery {
            search: None,
            limit: 1000,
            ..ListQuery::default()
        };
        let rows = self.views.list(VIEW, tenant, &q).await.expect("list");
        rows.into_iter()
            .map(|r| (r.row_id, r.version, r.doc))
            .collect()
    }
}

fn created(id: &Uuid, title: &str) -> (&'static str, Value) {
    (
        "TaskCreated",
        json!({"task_id": id.to_string(), "title": title, "description": "", "assigned_to": null,
               "created_by": "alice", "created_at": "2026-01-01T00:00:00Z"}),
    )
}

fn renamed(title: &str) -> (&'static str, Value) {
    (
        "TaskUpdated",
        json!({"title": title, "updated_at": "2026-01-02T00:00:00Z"}),
    )
}

#[tokio::test]
async fn duplicates_are_skipped_and_gaps_are_filled_from_the_store() {
    let rig = Rig::new();
    let tenant = TenantId::parse("t1").expect("tenant");
    let id = Uuid::now_v7();
    let stream = StreamId::for_aggregate("task", id);
    let mut all = rig
        .append(
            &tenant,
            &stream,
            vec![
                created(&id, "v1"),
                renamed("v2"),
                renamed("v3"),
                renamed("v4"),
            ],
        )
        .await;
    let projector = rig.projector(100);

    // Delivered: version 1, then 1 again, then 4 (2 and 3 never arrive).
    projector
        .apply_batch(&[all[0].clone(), all[0].clone()], None)
        .await
        .expect("batch 1");
    projector
        .apply_batch(&[all[3].clone()], None)
        .await
        .expect("batch 2 fills the gap");
    let rows = rig.rows(&tenant).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].1, 4);
    assert_eq!(rows[0].2.as_ref().expect("doc")["title"], "v4");

    // Late, out-of-order duplicates change nothing.
    all.reverse();
    projector
        .apply_batch(&all, None)
        .await
        .expect("replayed duplicates");
    let again = rig.rows(&tenant).await;
    assert_eq!(again, rows);

    // The stream's first event alone, again: taken for a new stream's, it meets the row
    // at commit, and the batch is applied again with the row looked up.
    let first = all.last().expect("version 1").clone();
    assert_eq!(first.version, 1);
    projector
        .apply_batch(&[first], None)
        .await
        .expect("first event redelivered");
    assert_eq!(rig.rows(&tenant).await, rows);
}

#[tokio::test]
async fn a_poison_event_goes_to_dead_letters_and_other_streams_go_on() {
    let rig = Rig::new();
    let tenant = TenantId::parse("t1").expect("tenant");
    let (good, bad) = (Uuid::now_v7(), Uuid::now_v7());
    let good_stream = StreamId::for_aggregate("task", good);
    let bad_stream = StreamId::for_aggregate("task", bad);
    rig.append(
        &tenant,
        &bad_stream,
        vec![("TaskCreated", json!({"nonsense": true}))],
    )
    .await;
    rig.append(&tenant, &good_stream, vec![created(&good, "fine")])
        .await;
    rig.append(&tenant, &bad_stream, vec![renamed("never")])
        .await;
    rig.append(&tenant, &good_stream, vec![renamed("still fine")])
        .await;

    let projector = rig.projector(2);
    projector
        .catch_up(&rig.events)
        .await
        .expect("catch up despite poison");
    let rows = rig.rows(&tenant).await;
    assert_eq!(rows.len(), 1, "only the good stream has a row");
    assert_eq!(rows[0].2.as_ref().expect("doc")["title"], "still fine");
    let dead = rig.views.dead_letters(VIEW).await.expect("dead letters");
    assert!(
        dead.iter()
            .any(|(s, v, e)| s == bad_stream.as_str() && *v == 1 && e.contains("TaskCreated")),
        "{dead:?}"
    );
    assert!(
        dead.iter()
            .any(|(s, v, _)| s == bad_stream.as_str() && *v == 2),
        "the stream stays blocked: {dead:?}"
    );
    assert_eq!(
        projector.progress().applied(),
        rig.events.last_position(),
        "the checkpoint moved past the poison"
    );
}

#[tokio::test]
async fn a_restarted_projector_resumes_without_duplicates_or_gaps_and_a_rebuild_equals_live() {
    let rig = Rig::new();
    let tenants = [
        TenantId::parse("a").expect("a"),
        TenantId::parse("b").expect("b"),
    ];
    let mut ids = Vec::new();
    for i in 0..20 {
        let tenant = &tenants[i % 2];
        let (id, _) = rig.create_task(tenant, &format!("t{i}")).await;
        ids.push((tenant.clone(), id));
    }
    rig.projector(7)
        .catch_up(&rig.events)
        .await
        .expect("first run");
    // More events while "down", then a fresh projector on the same stores.
    for (tenant, id) in ids.iter().take(10) {
        rig.append(
            tenant,
            &StreamId::for_aggregate("task", id),
            vec![renamed(&format!("{id}-renamed"))],
        )
        .await;
    }
    let resumed = rig.projector(3);
    let read = resumed.catch_up(&rig.events).await.expect("resume");
    assert_eq!(read, 10, "only the events after the checkpoint are read");
    let live_a = rig.rows(&tenants[0]).await;
    let live_b = rig.rows(&tenants[1]).await;
    assert_eq!(live_a.len(), 10);
    assert_eq!(live_b.len(), 10);
    assert!(
        live_a
            .iter()
            .chain(&live_b)
            .all(|(_, v, doc)| doc.as_ref().is_some_and(|d| d["version"] == *v))
    );
    assert_eq!(
        live_a.iter().filter(|(_, v, _)| *v == 2).count()
            + live_b.iter().filter(|(_, v, _)| *v == 2).count(),
        10
    );

    rig.views.reset(VIEW, None).await.expect("reset");
    assert!(rig.rows(&tenants[0]).await.is_empty());
    rig.projector(64)
        .catch_up(&rig.events)
        .await
        .expect("rebuild");
    assert_eq!(rig.rows(&tenants[0]).await, live_a, "rebuild equals live");
    assert_eq!(rig.rows(&tenants[1]).await, live_b, "rebuild equals live");
}

#[tokio::test]
async fn projectors_in_a_group_read_the_log_once_and_each_applies_only_its_own_events() {
    use projections::users::{UsersProjection, VIEW as USERS};
    let rig = Rig::new();
    let tenant = TenantId::parse("acme").expect("tenant");
    let group_of = |rig: &Rig| -> Vec<Projector> {
        [
            Arc::new(TasksProjection) as Arc<dyn projections::Projection>,
            Arc::new(UsersProjection),
        ]
        .into_iter()
        .map(|p| {
            Projector::new(
                p,
                Arc::new(rig.views.clone()),
                Arc::new(rig.events.clone()),
                ProjectionProgress::default(),
                ProjectorConfig::default(),
            )
        })
        .collect()
    };
    let run_until = |projectors: Vec<Projector>, position: u64| {
        let feed: Arc<dyn projections::EventFeed> = Arc::new(rig.events.clone());
        async move {
            let group: Vec<&Projector> = projectors.iter().collect();
            let progress: Vec<ProjectionProgress> =
                projectors.iter().map(|p| p.progress().clone()).collect();
            let done = async move {
                for p in &progress {
                    p.wait_for_position(position, std::time::Duration::from_secs(10))
                        .await;
                }
            };
            projections::run_group(&group, feed, done).await;
        }
    };
    let (_, tasks_only) = rig.create_task(&tenant, "one").await;
    run_until(group_of(&rig), tasks_only.position).await;
    assert_eq!(rig.rows(&tenant).await.len(), 1);
    // The users projector had nothing to write, so it stored no checkpoint for that batch.
    assert_eq!(rig.views.checkpoint(USERS).await.expect("checkpoint"), 0);
    assert_eq!(
        rig.views.checkpoint(VIEW).await.expect("checkpoint"),
        tasks_only.position
    );

    let user = Uuid::now_v7();
    let registered = rig
        .append(
            &tenant,
            &StreamId::for_aggregate("user", user),
            vec![(
                "UserRegistered",
                json!({"user_id": user.to_string(), "email": "ann@acme.test", "role": "MEMBER",
                       "registered_at": "2026-01-01T00:00:00Z"}),
            )],
        )
        .await;
    // A restarted group: the users projector re-reads from its stored checkpoint.
    run_until(group_of(&rig), registered[0].position).await;
    assert_eq!(
        rig.views.checkpoint(USERS).await.expect("checkpoint"),
        registered[0].position
    );
    let users = rig
        .views
        .list(
            USERS,
            &tenant,
            &ListQuery {
                search: None,
                limit: 10,
                ..ListQuery::default()
            },
        )
        .await
        .expect("users");
    assert_eq!(users.len(), 1);
    assert_eq!(
        users[0].doc.as_ref().expect("doc")["email"],
        "ann@acme.test"
    );
    assert_eq!(
        rig.rows(&tenant).await.len(),
        1,
        "the task row is untouched"
    );
}

/// A feed that counts its reads.
struct Counted {
    inner: SqliteEventStore,
    reads: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl projections::EventFeed for Counted {
    async fn read_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<EventEnvelope>>, projections::ReadModelError> {
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.read_after(after, limit).await
    }

    fn head(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.head()
    }
}

#[tokio::test]
async fn a_group_of_no_projectors_waits_for_shutdown_without_reading_the_log() {
    let rig = Rig::new();
    let tenant = TenantId::parse("acme").expect("tenant");
    rig.create_task(&tenant, "one").await;
    let feed = Arc::new(Counted {
        inner: rig.events.clone(),
        reads: Default::default(),
    });
    let shutdown = tokio::time::sleep(std::time::Duration::from_millis(200));
    projections::run_group(&[], feed.clone(), shutdown).await;
    // Without a checkpoint to move, every step would read the log's first batch again.
    assert_eq!(feed.reads.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_swap_from_another_handle_fences_a_commit_prepared_against_the_old_rows() {
    use projections::replay::{Rebuildable, Swap, Swapped};
    use projections::{ReadModelError, RowKey, RowWrite};
    let rig = Rig::new();
    let tenant = TenantId::parse("t1").expect("tenant");
    let id = Uuid::now_v7();
    let stream = StreamId::for_aggregate("task", id);
    rig.append(&tenant, &stream, vec![created(&id, "v1")]).await;
    let live = rig.projector(16);
    live.catch_up(&rig.events).await.expect("live");
    let at = rig.views.checkpoint(VIEW).await.expect("checkpoint");

    // Another process's handle on the same file: the replay's, which starts a rebuild.
    let replay = SqliteReadModelStore::open(&rig._dir.path().join("views.db")).expect("views");
    projections::replay::Shadow(replay.clone())
        .reset(VIEW, None)
        .await
        .expect("a rebuild under way");
    let swap = |position| Swap {
        views: vec![VIEW.into()],
        checkpoints: vec![VIEW.into()],
        tenant: None,
        position,
    };
    assert_eq!(
        replay.swap_in(&swap(at - 1)).await.expect("swap"),
        Swapped::Behind {
            checkpoint: VIEW.into(),
            at
        },
        "a copy behind the live projector is not swapped in"
    );
    assert_eq!(rig.rows(&tenant).await.len(), 1, "and nothing changed");
    assert!(matches!(
        replay.swap_in(&swap(at)).await.expect("swap"),
        Swapped::Done {
            rows: 0,
            tail: false
        }
    ));
    assert!(
        rig.rows(&tenant).await.is_empty(),
        "the (empty) copy is live"
    );

    // The live handle's next commit was prepared before the swap: refused, nothing written.
    let write = RowWrite {
        key: RowKey {
            tenant_id: tenant.clone(),
            row_id: id.to_string(),
        },
        expected_version: 1,
        version: 2,
        doc: Some(json!({"title": "stale"})),
        tallies: Vec::new(),
    };
    let fenced = rig
        .views
        .commit(VIEW, vec![write], vec![], Some((VIEW.into(), at + 1)))
        .await;
    assert!(
        matches!(fenced, Err(ReadModelError::Conflict { .. })),
        "{fenced:?}"
    );
    assert_eq!(rig.views.checkpoint(VIEW).await.expect("cp"), at);
    // Prepared again against the rows now there, it lands.
    rig.views
        .commit(VIEW, vec![], vec![], Some((VIEW.into(), at + 1)))
        .await
        .expect("after the reload");
    assert_eq!(rig.views.checkpoint(VIEW).await.expect("cp"), at + 1);
}

#[tokio::test]
async fn an_additive_projection_reading_the_log_in_order_counts_each_event_once_without_a_row_per_stream()
 {
    use projections::analytics::{AnalyticsProjection, STREAMS, VIEW as DAYS};
    use projections::engine::COUNTED_THROUGH;
    let rig = Rig::new();
    let (acme, globex) = (
        TenantId::parse("acme").expect("tenant"),
        TenantId::parse("globex").expect("tenant"),
    );
    let mut streams = Vec::new();
    for (tenant, n) in [(&acme, 3), (&globex, 2)] {
        for _ in 0..n {
            let (_, event) = rig.create_task(tenant, "a task").await;
            streams.push((tenant.clone(), event.stream_id));
        }
    }
    let done = json!({"from": "OPEN", "to": "DONE", "updated_at": "2026-01-02T00:00:00Z"});
    let last = rig
        .append(&acme, &streams[0].1, vec![("TaskStatusChanged", done)])
        .await;
    let analytics = |views: &SqliteReadModelStore| {
        Projector::new(
            Arc::new(AnalyticsProjection),
            Arc::new(views.clone()),
            Arc::new(rig.events.clone()),
            ProjectionProgress::default(),
            ProjectorConfig::default(),
        )
    };
    let day = projections::revenue::day_row(last[0].recorded_at.date_naive());
    let counts = |views: SqliteReadModelStore, tenant: TenantId| {
        let day = day.clone();
        async move {
            let row = views.get(DAYS, &tenant, &day).await.expect("get");
            let doc = row.and_then(|r| r.doc).unwrap_or(json!({"counts": {}}));
            (
                doc["counts"]["tasks_created"].clone(),
                doc["counts"]["tasks_completed"].clone(),
            )
        }
    };
    let feed: Arc<dyn projections::EventFeed> = Arc::new(rig.events.clone());
    let projector = analytics(&rig.views);
    assert_eq!(
        projector.catch_up(feed.as_ref()).await.expect("catch up"),
        6
    );
    assert_eq!(
        counts(rig.views.clone(), acme.clone()).await,
        (json!("3"), json!("1"))
    );
    assert_eq!(
        counts(rig.views.clone(), globex.clone()).await,
        (json!("2"), Value::Null)
    );
    // One row per tenant, at the position of its last event counted; none per stream.
    let version = |tenant: &TenantId, row: &str| {
        let (views, tenant, row) = (rig.views.clone(), tenant.clone(), row.to_owned());
        async move {
            views
                .row_version(STREAMS, &tenant, &row)
                .await
                .expect("version")
        }
    };
    assert_eq!(version(&acme, COUNTED_THROUGH).await, last[0].position);
    assert!(version(&globex, COUNTED_THROUGH).await > 0);
    for (tenant, stream) in &streams {
        assert_eq!(version(tenant, stream.as_str()).await, 0);
    }

    // The same stretch of the log again (the checkpoint moved back): nothing counts twice.
    rig.views
        .commit(STREAMS, vec![], vec![], Some((STREAMS.into(), 0)))
        .await
        .expect("checkpoint back to 0");
    assert_eq!(projector.catch_up(feed.as_ref()).await.expect("again"), 6);
    assert_eq!(
        counts(rig.views.clone(), acme.clone()).await,
        (json!("3"), json!("1"))
    );

    // New events count once more each, and the figures equal what a row per stream, as
    // delivery in any order keeps them, adds up to over the same events.
    rig.create_task(&globex, "one more").await;
    projector.catch_up(feed.as_ref()).await.expect("more");
    assert_eq!(
        counts(rig.views.clone(), globex.clone()).await,
        (json!("3"), Value::Null)
    );
    let other = Rig::new();
    let unordered = analytics(&other.views);
    let mut all = projections::EventFeed::read_after(&rig.events, 0, 100)
        .await
        .expect("log");
    all.reverse();
    let all: Vec<EventEnvelope> = all.iter().map(|e| (**e).clone()).collect();
    unordered.apply_batch(&all, None).await.expect("applies");
    for tenant in [&acme, &globex] {
        assert_eq!(
            counts(other.views.clone(), tenant.clone()).await,
            counts(rig.views.clone(), tenant.clone()).await
        );
    }
}
