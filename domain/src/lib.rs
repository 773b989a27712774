//! Chronicle's pure core: value types, the event envelope with its hash chain, and the
//! aggregates that decide which events a command produces. No IO, no async, no clock reads:
//! time, ids and the acting user come in as arguments.

pub mod account;
pub mod aggregate;
pub mod ai_query;
pub mod ai_usage;
pub mod attempt;
pub mod case;
pub mod case_intake;
pub mod customer;
pub mod customer_sync;
pub mod data_read;
pub mod document;
pub mod envelope;
pub mod ids;
pub mod message;
pub mod money;
pub mod order;
pub mod product;
pub mod quota;
pub mod registry;
pub mod rules;
pub mod salesforce;
pub mod sftp;
pub mod suppression;
pub mod task;
pub mod tenant;
pub mod time;
pub mod transaction;
pub mod user;

pub use aggregate::{
    Actor, Aggregate, CommandContext, DomainEvent, Role, TailState, Tier, UpcastError,
};
pub use envelope::{ConsistencyToken, EventEnvelope, GENESIS_HASH, HashChainError};
pub use ids::{StreamId, TenantId, UserId, ValidationError};
pub use rules::{Pattern, TextRule};
