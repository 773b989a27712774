//! The shape every aggregate shares: `decide` turns state and a command into events or a
//! typed error; `apply` folds one event into state. Both are pure.

use crate::ids::UserId;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// What a user may do is decided by their role within their tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "UPPERCASE")]
pub enum Role {
    /// The tenant's Root Administrator (seed 002): everything an ADMIN may, and the only
    /// role that manages ADMINs and OWNERs. A tenant always has an active one.
    Owner,
    Admin,
    Member,
    /// A contact of one of the tenant's customers, signed up through a portal invitation:
    /// calls only the portal routes of that customer (`/customer/{id}/...`).
    Customer,
}

impl Role {
    /// The tenant's own people (ADMIN, MEMBER), as against its customers' contacts.
    pub fn is_staff(self) -> bool {
        matches!(self, Role::Owner | Role::Admin | Role::Member)
    }

    /// ADMIN or OWNER: what the ADMIN routes and rules admit.
    pub fn is_admin(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "OWNER",
            Role::Admin => "ADMIN",
            Role::Member => "MEMBER",
            Role::Customer => "CUSTOMER",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "OWNER" => Some(Role::Owner),
            "ADMIN" => Some(Role::Admin),
            "MEMBER" => Some(Role::Member),
            "CUSTOMER" => Some(Role::Customer),
            _ => None,
        }
    }
}

/// A tenant's plan; it sets limits and rate limits (seed 003).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
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

/// An aggregate whose last event holds its whole state (a counter's events carry the count):
/// it can be loaded from that one event, however long its stream.
pub trait TailState: Aggregate {
    fn from_last(event: &Self::Event) -> Self;
}

/// Declares an event enum whose variants wrap serde payload structs, with its
/// `DomainEvent` impl: `event_type` names, JSON payloads, schema version 1.
#[macro_export]
macro_rules! domain_events {
    ($(#[$meta:meta])* $enum:ident, $what:literal { $($variant:ident($payload:ty) = $name:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $enum {
            $($variant($payload)),+
        }

        impl $crate::aggregate::DomainEvent for $enum {
            fn event_type(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => $name),+
                }
            }

            fn to_payload(&self) -> serde_json::Value {
                // Plain structs with string keys: serializing cannot fail.
                match self {
                    $(Self::$variant(e) => serde_json::to_value(e).unwrap_or(serde_json::Value::Null)),+
                }
            }

            fn from_stored(
                event_type: &str,
                schema_version: u32,
                payload: &serde_json::Value,
            ) -> Result<Self, $crate::aggregate::UpcastError> {
                let fail = |reason: String| $crate::aggregate::UpcastError {
                    event_type: event_type.to_owned(),
                    schema_version,
                    reason,
                };
                if schema_version != 1 {
                    return Err(fail("unknown schema version".into()));
                }
                match event_type {
                    $($name => <$payload as serde::Deserialize>::deserialize(payload)
                        .map(Self::$variant)
                        .map_err(|e| fail(e.to_string())),)+
                    _ => Err(fail(concat!("not a ", $what, " event").into())),
                }
            }
        }
    };
}
