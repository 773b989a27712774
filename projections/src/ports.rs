//! Ports of the read side. `infra` implements them for SQLite and, later, DynamoDB.

use async_trait::async_trait;
use domain::{EventEnvelope, StreamId, TenantId};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadModelError {
    /// A row was not at the version the writer expected: someone else applied it.
    #[error("row {row_id} of view {view} is not at version {expected}")]
    Conflict {
        view: String,
        row_id: String,
        expected: u64,
    },
    #[error("read model unavailable: {0}")]
    Unavailable(String),
    #[error("read model failure: {0}")]
    Backend(String),
}

/// The global log in order, as the embedded projectors tail it. Its events are shared:
/// every tailer (projector group, workers) and the in-memory tail hold the same envelope
/// instead of copying its strings and payload for each reader.
#[async_trait]
pub trait EventFeed: Send + Sync {
    /// Up to `limit` events with `position > after`, in position order.
    async fn read_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<EventEnvelope>>, ReadModelError>;

    /// Watches the highest committed position, so a tailer sleeps until there is more.
    fn head(&self) -> watch::Receiver<u64>;

    /// The events `wanted` takes among up to `limit` with `position > after`, and the
    /// position of the last one looked at. A tailer that wants few of the log's events
    /// (a worker) copies only those; the default reads them all and drops the rest.
    async fn read_matching(
        &self,
        after: u64,
        limit: usize,
        wanted: &Wanted,
    ) -> Result<Matched, ReadModelError> {
        Ok(Matched::of(self.read_after(after, limit).await?, wanted))
    }
}

/// Which events a reader of the log takes (`EventFeed::read_matching`).
pub type Wanted = dyn for<'e> Fn(&'e EventEnvelope) -> bool + Sync;

/// What `EventFeed::read_matching` found.
#[derive(Debug, Default)]
pub struct Matched {
    /// The events taken, in position order.
    pub events: Vec<Arc<EventEnvelope>>,
    /// The position of the last event looked at; `None` when there was none.
    pub through: Option<u64>,
    /// How many events were looked at: fewer than asked for means the end of the log.
    pub looked: usize,
}

impl Matched {
    /// What `wanted` takes of `batch`.
    pub fn of(batch: Vec<Arc<EventEnvelope>>, wanted: impl Fn(&EventEnvelope) -> bool) -> Self {
        Self {
            through: batch.last().map(|e| e.position),
            looked: batch.len(),
            events: batch.into_iter().filter(|e| wanted(e)).collect(),
        }
    }
}

/// Reads one stream from the store, to fill a gap in what a projector received.
#[async_trait]
pub trait StreamSource: Send + Sync {
    async fn read_stream(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, ReadModelError>;
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RowKey {
    pub tenant_id: TenantId,
    pub row_id: String,
}

/// A read-model row and the version of its source stream it reflects. `doc: None` is a
/// tombstone, kept so that a late duplicate of an older version is still recognised.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRow {
    pub row_id: String,
    pub version: u64,
    pub doc: Option<Value>,
}

/// Set a row to `doc` at `version`, provided it is still at `expected_version` (0: absent).
#[derive(Debug, Clone, PartialEq)]
pub struct RowWrite {
    pub key: RowKey,
    pub expected_version: u64,
    pub version: u64,
    pub doc: Option<Value>,
    /// Changes to summary rows of other views (of the same tenant) that commit with this
    /// row, or not at all.
    pub tallies: Vec<crate::tally::Tally>,
}

/// An event a projection could not apply, kept with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub view: String,
    pub event: EventEnvelope,
    pub error: String,
}

/// A page request on a view: equality filters on top-level fields, an optional search, an
/// optional scope, rows after `after`.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub filters: Vec<(String, String)>,
    pub search: Option<Search>,
    pub within: Option<Within>,
    pub after: Option<String>,
    pub limit: usize,
}

/// Rows whose top-level string field, one of `fields`, contains `text`, ignoring ASCII case.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub fields: Vec<String>,
    /// Lower-case (ASCII).
    pub text: String,
}

/// Rows whose top-level `field` is absent or null, or one of `values`: what a caller who
/// may see only some customers sees of a view (`field`: `customer_id`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Within {
    pub field: String,
    pub values: std::collections::BTreeSet<String>,
}

impl Within {
    /// Whether a row's `doc` is inside.
    pub fn admits(&self, doc: &Value) -> bool {
        match doc.get(&self.field) {
            None | Some(Value::Null) => true,
            Some(Value::String(v)) => self.values.contains(v),
            Some(_) => false,
        }
    }
}

/// The read-model store.
///
/// Contract:
/// - `commit` MUST write all row changes, dead letters and the checkpoint atomically, and
///   MUST fail with `Conflict` (writing nothing) when a row is not at its expected version.
///   A store that must split a large commit MAY do so between rows, provided each row's
///   tallies land together with it (a row re-applied skips, so its tallies are not added
///   twice).
/// - A tally adds its counts into its summary row (`Tally::absorb`), created when absent;
///   the summary row's version counts the changes it took.
/// - Reads MUST never return another tenant's rows, nor tombstones from `list`.
/// - `list` MUST return only rows its `within` admits (`Within::admits`).
#[async_trait]
pub trait ReadModelStore: Send + Sync {
    async fn load(
        &self,
        view: &str,
        keys: &[RowKey],
    ) -> Result<HashMap<RowKey, StoredRow>, ReadModelError>;

    async fn commit(
        &self,
        view: &str,
        writes: Vec<RowWrite>,
        dead_letters: Vec<DeadLetter>,
        checkpoint: Option<(String, u64)>,
    ) -> Result<(), ReadModelError>;

    async fn checkpoint(&self, name: &str) -> Result<u64, ReadModelError>;

    async fn get(
        &self,
        view: &str,
        tenant: &TenantId,
        row_id: &str,
    ) -> Result<Option<StoredRow>, ReadModelError>;

    /// The stream version a row reflects, tombstones included; 0 when there is no row.
    async fn row_version(
        &self,
        view: &str,
        tenant: &TenantId,
        row_id: &str,
    ) -> Result<u64, ReadModelError>;

    /// Live rows in `row_id` order.
    async fn list(
        &self,
        view: &str,
        tenant: &TenantId,
        query: &ListQuery,
    ) -> Result<Vec<StoredRow>, ReadModelError>;

    /// Drops every row of `view` (of one tenant, or all) and its checkpoint, for a rebuild.
    async fn reset(&self, view: &str, tenant: Option<&TenantId>) -> Result<(), ReadModelError>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProjectionError(pub String);

/// A read model where each source stream maps to one row.
pub trait Projection: Send + Sync + 'static {
    /// The view's name, also its checkpoint's.
    fn name(&self) -> &'static str;
    fn handles(&self, event: &EventEnvelope) -> bool;
    fn row_id(&self, event: &EventEnvelope) -> String;
    /// The row after `event`; `None` deletes it (leaving a tombstone).
    fn apply(
        &self,
        row: Option<&Value>,
        event: &EventEnvelope,
    ) -> Result<Option<Value>, ProjectionError>;

    /// What a live row contributes to summary rows (`crate::tally`); none by default.
    fn tallies(&self, _row: &Value) -> Vec<crate::tally::Tally> {
        Vec::new()
    }

    /// The views its tallies write, reset with the view itself for a rebuild.
    fn tally_views(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether the summary rows it feeds are the sum of what each event adds on its own,
    /// whatever came before in its stream: its rows then only remember what each stream has
    /// counted, so that a redelivered event counts once. A projector reading the log in
    /// order needs none of them (`Projector::apply_in_order`): it keeps one row per tenant,
    /// the position of the last event counted, and commits each event's share with it.
    fn additive(&self) -> bool {
        false
    }

    /// Whether each event makes a row of its own (`row_id` names the event, as a log's
    /// lines do), rather than one row folding its stream: a new row then needs no
    /// earlier events of its stream, and the engine reads none.
    fn row_per_event(&self) -> bool {
        false
    }
}

/// The row after `event`, for a read model whose rows show an aggregate's state: the state
/// is rebuilt from the row (`state_of`), the event folds in through the aggregate's own
/// `apply`, so the model cannot drift from what commands see, and `view_of` makes the row
/// again (`None` removes it). A stream's first event must be one that `starts` it.
pub fn fold_state<A: domain::Aggregate, V: serde::Serialize>(
    row: Option<&Value>,
    event: &EventEnvelope,
    starts: fn(&A::Event) -> bool,
    state_of: impl FnOnce(&Value) -> Result<A, ProjectionError>,
    view_of: impl FnOnce(&A, u64) -> Option<V>,
) -> Result<Option<Value>, ProjectionError> {
    use domain::DomainEvent;
    let parsed = A::Event::from_stored(&event.event_type, event.schema_version, &event.payload)
        .map_err(|e| ProjectionError(e.to_string()))?;
    let mut state = match row {
        Some(doc) => state_of(doc)?,
        None if starts(&parsed) => A::default(),
        None => {
            return Err(ProjectionError(format!(
                "{} at version {} comes before the stream's first event",
                event.event_type, event.version
            )));
        }
    };
    state.apply(&parsed);
    view_of(&state, event.version)
        .map(|v| serde_json::to_value(v).map_err(|e| ProjectionError(e.to_string())))
        .transpose()
}

/// A read model whose rows show an aggregate's state, one row per stream (tasks, products,
/// orders, AI queries, customers, syncs): the row is the view of the state, and the state
/// comes back from the row, so each event folds in through the aggregate's own `apply`.
/// `state_projection!` makes the projection of one.
pub trait StateView: serde::Serialize + serde::de::DeserializeOwned {
    type Aggregate: domain::Aggregate;
    /// The view's name.
    const VIEW: &'static str;
    /// Views its rows tally into (`crate::tally`).
    const TALLY_VIEWS: &'static [&'static str] = &[];

    /// Whether `event` may begin a stream's row.
    fn starts(event: &<Self::Aggregate as domain::Aggregate>::Event) -> bool;
    /// The row of a state; `None` removes it.
    fn of_state(tenant_id: &str, state: &Self::Aggregate, version: u64) -> Option<Self>;
    /// The state this row shows.
    fn into_state(self) -> Result<Self::Aggregate, ProjectionError>;

    /// An event that may arrive once the row is gone, and then shows nothing.
    fn after_the_end(_event: &EventEnvelope) -> bool {
        false
    }

    /// What the row adds to summary rows.
    fn tallies(&self) -> Vec<crate::tally::Tally> {
        Vec::new()
    }
}

/// `Projection::apply` of a `StateView`.
pub fn apply_state<V: StateView>(
    row: Option<&Value>,
    event: &EventEnvelope,
) -> Result<Option<Value>, ProjectionError> {
    if row.is_none() && V::after_the_end(event) {
        return Ok(None);
    }
    fold_state::<V::Aggregate, V>(
        row,
        event,
        V::starts,
        |doc| {
            V::deserialize(doc)
                .map_err(|e| ProjectionError(format!("unreadable {} row: {e}", V::VIEW)))?
                .into_state()
        },
        |state, version| V::of_state(event.tenant_id.as_str(), state, version),
    )
}

/// `Projection::tallies` of a `StateView`. A row this projection wrote always reads back;
/// one that does not contributes nothing rather than failing the batch.
pub fn tallies_of<V: StateView>(row: &Value) -> Vec<crate::tally::Tally> {
    V::deserialize(row).map(|v| v.tallies()).unwrap_or_default()
}

/// Declares the projection (a unit struct) of a `StateView`: one row per stream of the
/// view's aggregate, keyed by the stream's instance id.
#[macro_export]
macro_rules! state_projection {
    ($(#[$meta:meta])* $name:ident, $view:ty) => {
        $(#[$meta])*
        #[derive(Debug, Default, Clone, Copy)]
        pub struct $name;

        impl $crate::ports::Projection for $name {
            fn name(&self) -> &'static str {
                <$view as $crate::ports::StateView>::VIEW
            }

            fn handles(&self, event: &domain::EventEnvelope) -> bool {
                event.stream_id.kind()
                    == <<$view as $crate::ports::StateView>::Aggregate as domain::Aggregate>::KIND
            }

            fn row_id(&self, event: &domain::EventEnvelope) -> String {
                event.stream_id.instance().to_owned()
            }

            fn apply(
                &self,
                row: Option<&serde_json::Value>,
                event: &domain::EventEnvelope,
            ) -> Result<Option<serde_json::Value>, $crate::ports::ProjectionError> {
                $crate::ports::apply_state::<$view>(row, event)
            }

            fn tallies(&self, row: &serde_json::Value) -> Vec<$crate::tally::Tally> {
                $crate::ports::tallies_of::<$view>(row)
            }

            fn tally_views(&self) -> &'static [&'static str] {
                <$view as $crate::ports::StateView>::TALLY_VIEWS
            }
        }
    };
}
