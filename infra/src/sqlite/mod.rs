//! The embedded backend: the event store and the read models, each in a SQLite file (WAL).

mod events;
mod pool;
mod views;

pub use events::SqliteEventStore;
pub use views::SqliteReadModelStore;
