//! Rebuilds of read models from position zero, for `chronicle replay`: the projections
//! fold the log into a shadow copy of their views (the same store, each view under its
//! shadow name) while the live copy goes on serving and being projected; once the shadow
//! has caught up with the live projectors, the store swaps it in, in one atomic step that
//! also fences off any batch a live projector computed against the old copy. An
//! interrupted rebuild leaves the live copy as it was; the next one starts its shadow over.

use crate::ProjectionProgress;
use crate::engine::{Projector, ProjectorConfig};
use crate::ports::{
    DeadLetter, EventFeed, ListQuery, Projection, ReadModelError, ReadModelStore, RowKey, RowWrite,
    StoredRow, StreamSource,
};
use async_trait::async_trait;
use domain::{EventEnvelope, TenantId};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The name a view's shadow copy goes by in the store while it is rebuilt.
pub fn shadow_name(view: &str) -> String {
    format!("{view}~rebuild")
}

/// What a swap replaces: the rows of `views` (of one tenant, or all), guarded by the
/// checkpoints of the projections that write them.
#[derive(Debug, Clone, PartialEq)]
pub struct Swap {
    /// Every view rebuilt: the projections' own and those their tallies write.
    pub views: Vec<String>,
    /// The projections' checkpoint names.
    pub checkpoints: Vec<String>,
    pub tenant: Option<TenantId>,
    /// The log position the shadow copy reflects.
    pub position: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Swapped {
    /// The shadow copy is live; its rows replaced the old ones. With `tail`, the store
    /// could not check that the copy reflects all the live one did: the rest of the
    /// history is to be folded into it, now live.
    Done { rows: u64, tail: bool },
    /// A live projector is further on than the shadow: it must catch up first.
    Behind { checkpoint: String, at: u64 },
}

/// A read-model store that can take a rebuilt copy of its views.
#[async_trait]
pub trait Rebuildable: ReadModelStore {
    /// In one atomic step: unless a checkpoint of `swap` is past `swap.position` (then
    /// `Behind`, nothing changed), replaces the live rows and dead letters of the views by
    /// their shadow copies, moves each checkpoint to the position (all tenants) and marks
    /// it replaced, so that a live projector's commit prepared against the old rows fails
    /// and reloads them.
    async fn swap_in(&self, swap: &Swap) -> Result<Swapped, ReadModelError>;

    /// Drops what the swap replaced, once no reader can still be using it (none to drop
    /// by default: the swap replaced the rows in place).
    async fn retire(&self, _swap: &Swap) -> Result<(), ReadModelError> {
        Ok(())
    }
}

/// A store seen through the shadow names of its views and checkpoints.
pub struct Shadow<S>(pub S);

#[async_trait]
impl<S: ReadModelStore> ReadModelStore for Shadow<S> {
    async fn load(
        &self,
        view: &str,
        keys: &[RowKey],
    ) -> Result<HashMap<RowKey, StoredRow>, ReadModelError> {
        self.0.load(&shadow_name(view), keys).await
    }

    async fn commit(
        &self,
        view: &str,
        mut writes: Vec<RowWrite>,
        mut dead_letters: Vec<DeadLetter>,
        checkpoint: Option<(String, u64)>,
    ) -> Result<(), ReadModelError> {
        for t in writes.iter_mut().flat_map(|w| w.tallies.iter_mut()) {
            t.view = shadow_name(&t.view);
        }
        for d in &mut dead_letters {
            d.view = shadow_name(&d.view);
        }
        let checkpoint = checkpoint.map(|(name, at)| (shadow_name(&name), at));
        self.0
            .commit(&shadow_name(view), writes, dead_letters, checkpoint)
            .await
    }

    async fn checkpoint(&self, name: &str) -> Result<u64, ReadModelError> {
        self.0.checkpoint(&shadow_name(name)).await
    }

    async fn get(
        &self,
        view: &str,
        tenant: &TenantId,
        row_id: &str,
    ) -> Result<Option<StoredRow>, ReadModelError> {
        self.0.get(&shadow_name(view), tenant, row_id).await
    }

    async fn row_version(
        &self,
        view: &str,
        tenant: &TenantId,
        row_id: &str,
    ) -> Result<u64, ReadModelError> {
        self.0.row_version(&shadow_name(view), tenant, row_id).await
    }

    async fn list(
        &self,
        view: &str,
        tenant: &TenantId,
        query: &ListQuery,
    ) -> Result<Vec<StoredRow>, ReadModelError> {
        self.0.list(&shadow_name(view), tenant, query).await
    }

    async fn reset(&self, view: &str, tenant: Option<&TenantId>) -> Result<(), ReadModelError> {
        self.0.reset(&shadow_name(view), tenant).await
    }
}

/// What to rebuild.
#[derive(Clone)]
pub struct Plan {
    pub projections: Vec<Arc<dyn Projection>>,
    /// One tenant's rows, or every tenant's.
    pub tenant: Option<TenantId>,
    /// Events read from the log at a time.
    pub batch_size: usize,
}

impl Plan {
    /// Every view the plan rebuilds, tally views included, each once.
    pub fn views(&self) -> Vec<String> {
        let mut views: Vec<String> = Vec::new();
        for p in &self.projections {
            for v in std::iter::once(p.name()).chain(p.tally_views().iter().copied()) {
                if !views.iter().any(|x| x == v) {
                    views.push(v.to_owned());
                }
            }
        }
        views
    }
}

/// How a rebuild went.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Events read from the log (of every tenant).
    pub read: u64,
    /// The highest log position folded in.
    pub position: u64,
    /// Rows swapped in (tombstones included).
    pub rows: u64,
    /// Events a projection could not apply, now the views' dead letters.
    pub dead_letters: u64,
    /// Times the shadow had to catch up again because a live projector was ahead of it.
    pub catch_ups: u32,
    /// How long the swaps took (the store's writer is held that long).
    pub swap: Duration,
}

/// Progress as the rebuild goes: the position reached, the log's head where the history
/// has one, the events read.
pub trait Progress: Send + Sync {
    fn advanced(&self, position: u64, head: Option<u64>, read: u64);
    fn swapping(&self) {}
}

impl Progress for () {
    fn advanced(&self, _position: u64, _head: Option<u64>, _read: u64) {}
}

/// How many times a swap may find a live projector ahead before the rebuild gives up
/// (each time the shadow catches up first; under a steady write load one or two suffice).
const MAX_CATCH_UPS: u32 = 50;

/// The events a rebuild folds, from the first, in an order that keeps each stream's
/// versions in order.
#[async_trait]
pub trait History: Send + Sync {
    /// The next events, up to `limit`; none once it has given all there is for now (a
    /// later call may give more).
    async fn next(&self, limit: usize) -> Result<Vec<EventEnvelope>, ReadModelError>;

    /// The log position it reaches now, where positions mean that (for progress).
    fn head(&self) -> Option<u64> {
        None
    }

    /// Whether it gives every event in log position order, each once, as the projectors
    /// tailing the log read it: then the rebuild folds as they do
    /// (`Projector::apply_in_order`), and its rows are theirs.
    fn in_log_order(&self) -> bool {
        false
    }
}

/// The embedded log, every tenant's events in position order.
pub struct LogHistory {
    log: Arc<dyn EventFeed>,
    after: tokio::sync::Mutex<u64>,
}

impl LogHistory {
    pub fn new(log: Arc<dyn EventFeed>) -> Self {
        Self {
            log,
            after: tokio::sync::Mutex::new(0),
        }
    }
}

#[async_trait]
impl History for LogHistory {
    async fn next(&self, limit: usize) -> Result<Vec<EventEnvelope>, ReadModelError> {
        let mut after = self.after.lock().await;
        let batch = self.log.read_after(*after, limit).await?;
        if let Some(last) = batch.last() {
            *after = last.position;
        }
        Ok(batch.into_iter().map(Arc::unwrap_or_clone).collect())
    }

    fn head(&self) -> Option<u64> {
        Some(*self.log.head().borrow())
    }

    fn in_log_order(&self) -> bool {
        true
    }
}

fn projectors_over(
    store: Arc<dyn ReadModelStore>,
    streams: &Arc<dyn StreamSource>,
    plan: &Plan,
) -> Vec<Arc<Projector>> {
    plan.projections
        .iter()
        .map(|p| {
            Arc::new(Projector::new(
                p.clone(),
                store.clone(),
                streams.clone(),
                ProjectionProgress::default(),
                ProjectorConfig {
                    batch_size: plan.batch_size,
                    record_dead_letters: true,
                    ..ProjectorConfig::default()
                },
            ))
        })
        .collect()
}

/// Rebuilds `plan` from the first event of `history` into the shadow copy and swaps it
/// in; then, where the store asks for it, folds the rest of the history into the copy
/// now live.
pub async fn rebuild<S>(
    store: S,
    history: &dyn History,
    streams: Arc<dyn StreamSource>,
    plan: &Plan,
    progress: &dyn Progress,
) -> Result<Report, ReadModelError>
where
    S: Rebuildable + Clone + 'static,
{
    let shadow: Arc<dyn ReadModelStore> = Arc::new(Shadow(store.clone()));
    let views = plan.views();
    for v in &views {
        // Whatever an interrupted rebuild left.
        shadow.reset(v, plan.tenant.as_ref()).await?;
    }
    let projectors = projectors_over(shadow, &streams, plan);
    let mut report = Report::default();
    loop {
        drain(history, &projectors, plan, &mut report, progress).await?;
        progress.swapping();
        let swap = Swap {
            views: views.clone(),
            checkpoints: plan
                .projections
                .iter()
                .map(|p| p.name().to_owned())
                .collect(),
            tenant: plan.tenant.clone(),
            position: report.position,
        };
        let swapping = std::time::Instant::now();
        let swapped = store.swap_in(&swap).await?;
        report.swap += swapping.elapsed();
        match swapped {
            Swapped::Done { rows, tail } => {
                report.rows = rows;
                if tail {
                    let live = projectors_over(Arc::new(store.clone()), &streams, plan);
                    drain(history, &live, plan, &mut report, progress).await?;
                }
                store.retire(&swap).await?;
                return Ok(report);
            }
            Swapped::Behind { checkpoint, at } => {
                report.catch_ups += 1;
                if report.catch_ups > MAX_CATCH_UPS {
                    return Err(ReadModelError::Unavailable(format!(
                        "the live projector {checkpoint} stays ahead of the rebuild (at {at}, rebuilt to {})",
                        report.position
                    )));
                }
                tracing::info!(
                    checkpoint,
                    at,
                    position = report.position,
                    "a live projector is ahead; catching up"
                );
                // The log the rebuild reads may show the live projector's last events a
                // moment later than the projector saw them.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Folds the history into `projectors` until it has nothing more for now, reading each
/// batch while the one before is folded.
async fn drain(
    history: &dyn History,
    projectors: &[Arc<Projector>],
    plan: &Plan,
    report: &mut Report,
    progress: &dyn Progress,
) -> Result<(), ReadModelError> {
    let mut batch = history.next(plan.batch_size).await?;
    while let Some(last) = batch.iter().map(|e| e.position).max() {
        report.read += batch.len() as u64;
        report.position = report.position.max(last);
        let mine: Arc<[EventEnvelope]> = match &plan.tenant {
            Some(t) => batch.into_iter().filter(|e| &e.tenant_id == t).collect(),
            None => batch.into(),
        };
        let (next, folded) = tokio::join!(
            history.next(plan.batch_size),
            apply(projectors, mine, history.in_log_order(), report)
        );
        folded?;
        batch = next?;
        progress.advanced(report.position, history.head(), report.read);
    }
    Ok(())
}

/// Folds `events` into every projection that handles some of them, the projections side
/// by side (each folds on a core of its own; their commits take turns at the store). A
/// rebuild cut off here aborts them: none starts a commit after that.
async fn apply(
    projectors: &[Arc<Projector>],
    events: Arc<[EventEnvelope]>,
    in_log_order: bool,
    report: &mut Report,
) -> Result<(), ReadModelError> {
    let mut running = tokio::task::JoinSet::new();
    for p in projectors {
        if events.iter().any(|e| p.handles(e)) {
            let (p, events) = (p.clone(), events.clone());
            running.spawn(async move {
                if in_log_order {
                    p.apply_in_order(&events, None).await
                } else {
                    p.apply_batch(&events, None).await
                }
            });
        }
    }
    while let Some(r) = running.join_next().await {
        let outcome =
            r.map_err(|e| ReadModelError::Backend(format!("a projection's fold failed: {e}")))??;
        report.dead_letters += outcome.poisoned.len() as u64;
    }
    Ok(())
}
