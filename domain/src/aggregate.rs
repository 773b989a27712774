//! The shape every aggregate shares: `decide` turns state and a command into events or a
//! typed error; `apply` folds one event into state. Both are pure.

use crate::ids::UserId;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// What a user may do is decided by their role within their tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "ADMIN",
            Role::Member => "MEMBER",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ADMIN" => Some(Role::Admin),
            "MEMBER" => Some(Role::Member),
            _ => None,
        }
    }
}

/// A tenant's plan; it sets limits and rate limits (seed 003).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Tier {
    #[default]
    Basic,
    Premium,
    Enterprise,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Basic => "basic",
            Tier::Premium => "premium",
            Tier::Enterprise => "enterprise",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "basic" => Some(Tier::Basic),
            "premium" => Some(Tier::Premium),
            "enterprise" => Some(Tier::Enterprise),
            _ => None,
        }
    }
}

/// Who acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub user_id: UserId,
    pub role: Role,
}

/// Everything a decision may depend on besides state and command: no clock reads inside.
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub actor: Actor,
    pub now: DateTime<Utc>,
}

/// A stored payload could not be turned back into a domain event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read {event_type} v{schema_version}: {reason}")]
pub struct UpcastError {
    pub event_type: String,
    pub schema_version: u32,
    pub reason: String,
}

/// A domain event: a past-tense type name and a payload version, for upcasting.
pub trait DomainEvent: Sized {
    fn event_type(&self) -> &'static str;
    fn schema_version(&self) -> u32 {
        1
    }
    fn to_payload(&self) -> Value;
    /// Reads a stored payload of any schema version this code knows.
    fn from_stored(
        event_type: &str,
        schema_version: u32,
        payload: &Value,
    ) -> Result<Self, UpcastError>;
}

pub trait Aggregate: Default + Clone + Send + Sync + 'static {
    /// The stream prefix, e.g. `task`.
    const KIND: &'static str;
    type Command;
    type Event: DomainEvent;
    type Error: std::error::Error + Send + Sync + 'static;

    fn decide(
        &self,
        command: &Self::Command,
        ctx: &CommandContext,
    ) -> Result<Vec<Self::Event>, Self::Error>;

    fn apply(&mut self, event: &Self::Event);
}
