//! Read models against a fresh replay: every row a set of projections holds for a tenant,
//! and the same rows rebuilt from the tenant's events in one pass on an empty store. A live
//! read model (kept batch by batch, however the events came) must equal its replay.

use commands::{EventStore, FeedCursor};
use domain::{EventEnvelope, TenantId};
use infra::sqlite::SqliteReadModelStore;
use projections::{
    ListQuery, Projection, ProjectionProgress, Projector, ProjectorConfig, ReadModelStore,
    StoredRow, StreamSource,
};
use std::sync::Arc;

/// A row of a view: (view, row id, stream version or none for a summary row, the row).
pub type Row = (String, String, Option<u64>, StoredRow);

/// Every row of `projections`' views (and their tallies) that `store` holds for `tenant`.
/// Summary rows are compared by their figures only: their versions count the changes,
/// which batching sets.
pub async fn rows(
    store: &dyn ReadModelStore,
    tenant: &TenantId,
    projections: &[Arc<dyn Projection>],
) -> Vec<Row> {
    let all = ListQuery {
        filters: vec![],
        search: None,
        within: None,
        after: None,
        limit: 100_000,
    };
    let mut out = Vec::new();
    for projection in projections {
        for view in
            std::iter::once(projection.name()).chain(projection.tally_views().iter().copied())
        {
            let summary = view != projection.name();
            for row in store.list(view, tenant, &all).await.expect("list") {
                let version = (!summary).then_some(row.version);
                out.push((
                    view.to_owned(),
                    row.row_id.clone(),
                    version,
                    StoredRow { version: 0, ..row },
                ));
            }
        }
    }
    out
}

/// Every event of `tenant`, in feed order.
pub async fn tenant_events(events: &dyn EventStore, tenant: &TenantId) -> Vec<EventEnvelope> {
    let mut all = Vec::new();
    let mut cursor = FeedCursor::start();
    loop {
        let page = events
            .read_tenant_feed(tenant, &cursor, 1000)
            .await
            .expect("feed");
        if page.events.is_empty() {
            return all;
        }
        all.extend(page.events);
        cursor = page.next;
    }
}

/// The rows `projections` make of `tenant`'s events, replayed in one pass on an empty store.
pub async fn replay<S>(
    events: Arc<S>,
    tenant: &TenantId,
    projections: &[Arc<dyn Projection>],
) -> Vec<Row>
where
    S: EventStore + StreamSource + 'static,
{
    let all = tenant_events(events.as_ref(), tenant).await;
    let dir = tempfile::tempdir().expect("dir");
    let fresh = SqliteReadModelStore::open(&dir.path().join("views.db")).expect("views");
    for projection in projections {
        Projector::new(
            projection.clone(),
            Arc::new(fresh.clone()),
            events.clone(),
            ProjectionProgress::default(),
            ProjectorConfig::default(),
        )
        .apply_batch(&all, None)
        .await
        .expect("replay");
    }
    rows(&fresh, tenant, projections).await
}
