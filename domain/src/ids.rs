//! Identifier newtypes, validated once at the edge so nothing deeper takes a raw `String`.

use crate::rules::{Pattern, TextRule};
use std::fmt;

/// A value from outside failed validation; `field` names the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    pub field: &'static str,
    pub reason: String,
}

impl ValidationError {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// The id alphabet: what every id may be made of.
static ID: Pattern = Pattern::new(r"^[A-Za-z0-9._@+:-]+$");

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident, $field:literal, $max:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub const RULE: TextRule = TextRule {
                pattern: Some(&ID),
                ..TextRule::chars(
                    1,
                    $max,
                    "ASCII letters, digits and - _ . @ + :",
                )
            };

            pub fn parse(value: impl Into<String>) -> Result<Self, ValidationError> {
                let value = value.into();
                Self::RULE.check($field, &value)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        crate::rules::text_serde!($name);
        crate::rules::text_schema!($name, stringify!($name));

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// The owning tenant: part of every key and every query.
    TenantId,
    "tenant_id",
    64
);
string_id!(
    /// A user (or `system:<worker>`), as it appears in `actor`, `created_by` and `assigned_to`.
    UserId,
    "user_id",
    128
);
string_id!(
    /// One aggregate instance's stream, `<kind>-<id>`, e.g. `task-0192…`.
    StreamId,
    "stream_id",
    160
);

impl StreamId {
    /// The stream of aggregate `kind` with instance id `id`.
    pub fn for_aggregate(kind: &str, id: impl fmt::Display) -> Self {
        Self(format!("{kind}-{id}"))
    }

    /// The aggregate kind, the part before the first `-`.
    pub fn kind(&self) -> &str {
        self.0.split_once('-').map_or(&self.0, |(kind, _)| kind)
    }

    /// The instance id, the part after the first `-`.
    pub fn instance(&self) -> &str {
        self.0.split_once('-').map_or("", |(_, id)| id)
    }
}

crate::bounded_int!(
    /// A version of a stream (1-based), as a query names it.
    StreamVersion(u64),
    1,
    9_007_199_254_740_991,
    "a version of the stream, from 1"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_reject_empty_long_and_odd_characters() {
        assert!(TenantId::parse("karachi-tech").is_ok());
        assert_eq!(TenantId::parse("").unwrap_err().field, "tenant_id");
        assert!(TenantId::parse("a".repeat(65)).is_err());
        assert!(TenantId::parse("a b").is_err());
        assert!(UserId::parse("hassan.malik@company.pk").is_ok());
        assert!(UserId::parse("bad\nuser").is_err());
    }

    #[test]
    fn stream_id_splits_kind_and_instance() {
        let s = StreamId::for_aggregate("task", "0192-abc");
        assert_eq!(s.as_str(), "task-0192-abc");
        assert_eq!(s.kind(), "task");
        assert_eq!(s.instance(), "0192-abc");
    }

    #[test]
    fn ids_deserialize_through_validation() {
        let err = serde_json::from_str::<TenantId>("\"\"").unwrap_err();
        assert!(err.to_string().contains("must not be empty"));
    }
}
