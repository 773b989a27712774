//! The command side: the `EventStore` port it owns, and the handler that loads an
//! aggregate, lets the domain decide, and appends the result with optimistic concurrency,
//! retry on conflict and idempotency.

pub mod access;
pub mod agents;
pub mod ai;
pub mod ai_worker;
pub mod attempts;
pub mod audit;
pub mod case_worker;
pub mod cases;
pub mod commerce;
pub mod customers;
pub mod documents;
pub mod handler;
pub mod hot;
pub mod ledger;
pub mod mail_worker;
pub mod messages;
pub mod pipeline;
pub mod quota;
pub mod registry;
pub mod sftp;
pub mod sftp_worker;
pub mod states;
pub mod store;
pub mod sync_worker;
mod tenancy;
pub mod worker;

pub use access::{AccessError, AccessService, IssuedInvitation, SignedIn, UserState};
pub use handler::{Clock, CommandError, CommandHandler, CommandMeta, Executed, RequestIds};
pub use pipeline::{Command, Ran, Tx};
pub use store::{
    AppendOutcome, AppendRequest, EventStore, ExpectedVersion, FeedCursor, FeedPage, Idempotency,
    IdempotentRecord, MAX_EVENTS_PER_APPEND, NewEvent, StoreError, StreamWrite,
};
