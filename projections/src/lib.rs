//! The read side: the ports it owns (event feed, stream source, read-model store), the
//! projector engine that applies each (stream, version) once, and the read models.

pub mod engine;
pub mod ports;
pub mod tasks;

pub use engine::{Freshness, ProjectionProgress, Projector, ProjectorConfig};
pub use ports::{
    DeadLetter, EventFeed, ListQuery, Projection, ProjectionError, ReadModelError, ReadModelStore,
    RowKey, RowWrite, StoredRow, StreamSource,
};
