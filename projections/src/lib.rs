//! The read side: the ports it owns (event feed, stream source, read-model store), the
//! projector engine that applies each (stream, version) once, and the read models.

pub mod engine;
pub mod ports;
pub mod tasks;

pub use engine::{
    BatchOutcome, Freshness, ProjectionProgress, Projector, ProjectorConfig, RowVersionFreshness,
};
pub use ports::{
    DeadLetter, EventFeed, ListQuery, Projection, ProjectionError, ReadModelError, ReadModelStore,
    RowKey, RowWrite, StoredRow, StreamSource,
};

/// The view that holds the row of a stream, by the stream's aggregate kind.
pub fn view_for(stream: &domain::StreamId) -> Option<&'static str> {
    match stream.kind() {
        "task" => Some(tasks::VIEW),
        _ => None,
    }
}
