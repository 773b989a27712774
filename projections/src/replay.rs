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
    /// The shadow copy is live; its rows replaced the old ones.
    Done { rows: u64 },
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
    /// Events of the rebuilt tenant(s) folded in.
    pub applied: u64,
    /// The log position the swapped-in copy reflects.
    pub position: u64,
    /// Rows swapped in (tombstones included).
    pub rows: u64,
    /// Events a projection could not apply, now the views' dead letters.
    pub dead_letters: u64,
    /// Times the shadow had to catch up again because a live projector was ahead of it.
    pub catch_ups: u32,
}

/// Progress as the rebuild goes: the position reached and the log's head.
pub trait Progress: Send + Sync {
    fn advanced(&self, position: u64, head: u64, read: u64);
    fn swapping(&self) {}
}

impl Progress for () {
    fn advanced(&self, _position: u64, _head: u64, _read: u64) {}
}

/// How many times a swap may find a live projector ahead before the rebuild gives up
/// (each time the shadow catches up first; under a steady write load one or two suffice).
const MAX_CATCH_UPS: u32 = 50;

/// Rebuilds `plan` from position zero into the shadow copy and swaps it in.
pub async fn rebuild<S>(
    store: S,
    log: Arc<dyn EventFeed>,
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
        shadow.reset(v, None).await?;
    }
    let projectors: Vec<Projector> = plan
        .projections
        .iter()
        .map(|p| {
            Projector::new(
                p.clone(),
                shadow.clone(),
                streams.clone(),
                ProjectionProgress::default(),
                ProjectorConfig {
                    batch_size: plan.batch_size,
                    record_dead_letters: true,
                },
            )
        })
        .collect();
    let mut report = Report::default();
    let mut position = 0;
    loop {
        let head = *log.head().borrow();
        let batch = log.read_after(position, plan.batch_size).await?;
        if let Some(last) = batch.last().map(|e| e.position) {
            report.read += batch.len() as u64;
            let mine: Vec<EventEnvelope> = match &plan.tenant {
                Some(t) => batch.into_iter().filter(|e| &e.tenant_id == t).collect(),
                None => batch,
            };
            position = last;
            apply(&projectors, &mine, &mut report).await?;
            progress.advanced(position, head.max(position), report.read);
            continue;
        }
        progress.swapping();
        let swap = Swap {
            views: views.clone(),
            checkpoints: plan
                .projections
                .iter()
                .map(|p| p.name().to_owned())
                .collect(),
            tenant: plan.tenant.clone(),
            position,
        };
        match store.swap_in(&swap).await? {
            Swapped::Done { rows } => {
                report.position = position;
                report.rows = rows;
                return Ok(report);
            }
            Swapped::Behind { checkpoint, at } => {
                report.catch_ups += 1;
                if report.catch_ups > MAX_CATCH_UPS {
                    return Err(ReadModelError::Unavailable(format!(
                        "the live projector {checkpoint} stays ahead of the rebuild (at {at}, rebuilt to {position})"
                    )));
                }
                tracing::info!(
                    checkpoint,
                    at,
                    position,
                    "a live projector is ahead; catching up"
                );
                // The log the rebuild reads may show the live projector's last events a
                // moment later than the projector saw them.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Folds `events` into every projection that handles some of them.
async fn apply(
    projectors: &[Projector],
    events: &[EventEnvelope],
    report: &mut Report,
) -> Result<(), ReadModelError> {
    for p in projectors {
        if events.iter().any(|e| p.handles(e)) {
            let outcome = p.apply_batch(events, None).await?;
            report.dead_letters += outcome.poisoned.len() as u64;
        }
    }
    report.applied += events.len() as u64;
    Ok(())
}
