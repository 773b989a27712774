//! The envelope every stored event carries, its tamper-evident hash chain, and the
//! consistency token a command hands back so a query can wait for its own write.

use crate::ids::{StreamId, TenantId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// The `prev` hash of a stream's first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One stored event with everything a reader, an auditor or a projector needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub event_id: Uuid,
    pub tenant_id: TenantId,
    pub stream_id: StreamId,
    /// 1-based, gapless position in its stream.
    pub version: u64,
    /// Feed ordering token: global in the embedded store.
    pub position: u64,
    pub event_type: String,
    pub schema_version: u32,
    #[serde(with = "micros")]
    pub recorded_at: DateTime<Utc>,
    pub actor: String,
    pub command_id: Uuid,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    pub payload: Value,
    /// SHA-256 over this envelope and the previous event's hash in the same stream.
    pub hash: String,
}

impl EventEnvelope {
    /// The chain hash of this envelope given its predecessor's hash. `position` is left
    /// out: it is assigned by the backend's feed, not by the stream.
    pub fn compute_hash(&self, prev_hash: &str) -> String {
        self.compute_hash_with(
            prev_hash,
            &format_time(&self.recorded_at),
            &canonical_json(&self.payload),
        )
    }

    /// `compute_hash` with the time (`format_time`) and payload (`canonical_json`) already
    /// rendered, for a writer that stores those same strings.
    pub fn compute_hash_with(&self, prev_hash: &str, recorded_at: &str, payload: &str) -> String {
        let mut h = Sha256::new();
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        };
        field(prev_hash.as_bytes());
        field(self.event_id.as_bytes());
        field(self.tenant_id.as_str().as_bytes());
        field(self.stream_id.as_str().as_bytes());
        field(&self.version.to_be_bytes());
        field(self.event_type.as_bytes());
        field(&self.schema_version.to_be_bytes());
        field(recorded_at.as_bytes());
        field(self.actor.as_bytes());
        field(self.command_id.as_bytes());
        field(self.correlation_id.as_bytes());
        field(self.causation_id.unwrap_or(Uuid::nil()).as_bytes());
        field(payload.as_bytes());
        hex::encode(h.finalize())
    }

    /// Seals the envelope: sets `hash` from its predecessor's hash.
    pub fn seal(&mut self, prev_hash: &str) {
        self.hash = self.compute_hash(prev_hash);
    }
}

/// A stream's events do not form a valid chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashChainError {
    #[error("{stream_id}: expected version {expected}, found {found}")]
    Gap {
        stream_id: String,
        expected: u64,
        found: u64,
    },
    #[error("{stream_id}: hash mismatch at version {version}")]
    Mismatch { stream_id: String, version: u64 },
}

/// Checks that `events` (one stream, in order, starting at version `from`) chain from
/// `prev_hash`. Returns the last hash, so long streams can be checked page by page.
pub fn verify_chain(
    events: &[EventEnvelope],
    from: u64,
    prev_hash: &str,
) -> Result<String, HashChainError> {
    let mut prev = prev_hash.to_owned();
    for (i, e) in events.iter().enumerate() {
        let expected = from + i as u64;
        if e.version != expected {
            return Err(HashChainError::Gap {
                stream_id: e.stream_id.to_string(),
                expected,
                found: e.version,
            });
        }
        if e.compute_hash(&prev) != e.hash {
            return Err(HashChainError::Mismatch {
                stream_id: e.stream_id.to_string(),
                version: e.version,
            });
        }
        prev.clone_from(&e.hash);
    }
    Ok(prev)
}

/// Store time is kept to the microsecond, so a timestamp survives every backend unchanged.
pub fn format_time(t: &DateTime<Utc>) -> String {
    crate::time::to_micros(t)
}

/// Truncates a timestamp to what `format_time` keeps.
pub fn truncate_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

mod micros {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_time(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        crate::time::parse_rfc3339_strict(&s).map_err(serde::de::Error::custom)
    }
}

/// JSON with object keys sorted at every level: the same value always hashes the same,
/// whatever order a backend returns the keys in.
pub fn canonical_json(v: &Value) -> String {
    let mut out = Vec::with_capacity(128);
    write_canonical(v, &mut out);
    // Only JSON text was written: valid UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            // Already in order unless serde_json keeps insertion order; then sort.
            if !entries.is_sorted_by(|a, b| a.0 <= b.0) {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push(b'{');
            for (i, (k, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_plain(k, out);
                out.push(b':');
                write_canonical(value, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        other => write_plain(other, out),
    }
}

/// serde_json's own compact rendering of a scalar or a key, straight into `out`.
fn write_plain<T: Serialize + ?Sized>(v: &T, out: &mut Vec<u8>) {
    // Writing plain JSON values into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
}

/// What a command's response carries so that a later query can wait until the read model
/// reflects the write: the feed position and the stream version written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyToken {
    pub position: u64,
    pub version: u64,
    pub stream_id: StreamId,
}

impl fmt::Display for ConsistencyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.position, self.version, self.stream_id)
    }
}

/// `<position>.<version>.<stream>`, as `Display` writes it.
static TOKEN: crate::rules::Pattern =
    crate::rules::Pattern::new(r"^[0-9]{1,19}\.[0-9]{1,19}\.[A-Za-z0-9._@+:-]{1,160}$");

impl ConsistencyToken {
    pub const RULE: crate::rules::TextRule = crate::rules::TextRule {
        pattern: Some(&TOKEN),
        ..crate::rules::TextRule::chars(
            5,
            200,
            "the X-Consistency-Token of a command's answer: <position>.<version>.<stream>",
        )
    };
}

impl FromStr for ConsistencyToken {
    type Err = crate::ids::ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::RULE.check("X-Consistency-Token", s)?;
        let bad = || {
            crate::ids::ValidationError::new(
                "X-Consistency-Token",
                "is not a token this server issued",
            )
        };
        let mut parts = s.splitn(3, '.');
        let position = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let version = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let stream_id = parts
            .next()
            .and_then(|p| StreamId::parse(p).ok())
            .ok_or_else(bad)?;
        Ok(Self {
            position,
            version,
            stream_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_is_pinned() {
        // Stored hashes depend on these exact bytes: never change them.
        let v = json!({"b": {"d": true, "c": null}, "é": "\u{1}\"", "a": [1, 2.5, "x"]});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":[1,2.5,"x"],"b":{"c":null,"d":true},"é":"\u0001\""}"#
        );
        let e = EventEnvelope {
            event_id: Uuid::nil(),
            tenant_id: TenantId::parse("t").unwrap(),
            stream_id: StreamId::parse("task-1").unwrap(),
            version: 1,
            position: 9,
            event_type: "TaskCreated".into(),
            schema_version: 1,
            recorded_at: DateTime::from_timestamp(1_700_000_000, 123_456_000).unwrap(),
            actor: "alice".into(),
            command_id: Uuid::nil(),
            correlation_id: Uuid::nil(),
            causation_id: None,
            payload: v,
            hash: String::new(),
        };
        assert_eq!(
            e.compute_hash(GENESIS_HASH),
            "aa6b292aaefca77e87409ef7706f634e4d621652a5b4af94c127bd9fcb115d4d"
        );
    }

    fn event(version: u64, payload: Value) -> EventEnvelope {
        EventEnvelope {
            event_id: Uuid::from_u128(version as u128),
            tenant_id: TenantId::parse("t1").unwrap(),
            stream_id: StreamId::parse("task-1").unwrap(),
            version,
            position: version * 10,
            event_type: "TaskCreated".into(),
            schema_version: 1,
            recorded_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            actor: "alice".into(),
            command_id: Uuid::from_u128(7),
            correlation_id: Uuid::from_u128(8),
            causation_id: None,
            payload,
            hash: String::new(),
        }
    }

    fn chain(n: u64) -> Vec<EventEnvelope> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|v| {
                let mut e = event(v, json!({"n": v, "b": [1, {"z": 1, "a": 2}]}));
                e.seal(&prev);
                prev.clone_from(&e.hash);
                e
            })
            .collect()
    }

    #[test]
    fn a_sealed_chain_verifies_and_tampering_is_detected() {
        let mut events = chain(3);
        assert!(verify_chain(&events, 1, GENESIS_HASH).is_ok());
        events[1].payload = json!({"n": 99});
        assert_eq!(
            verify_chain(&events, 1, GENESIS_HASH),
            Err(HashChainError::Mismatch {
                stream_id: "task-1".into(),
                version: 2
            })
        );
    }

    #[test]
    fn a_gap_is_reported() {
        let mut events = chain(3);
        events.remove(1);
        assert!(matches!(
            verify_chain(&events, 1, GENESIS_HASH),
            Err(HashChainError::Gap {
                expected: 2,
                found: 3,
                ..
            })
        ));
    }

    #[test]
    fn hash_ignores_key_order_and_position() {
        let mut a = event(1, json!({"a": 1, "b": 2}));
        let mut b = event(1, serde_json::from_str(r#"{"b":2,"a":1}"#).unwrap());
        b.position = 999;
        a.seal(GENESIS_HASH);
        b.seal(GENESIS_HASH);
        assert_eq!(a.hash, b.hash);
    }

    #[test]
    fn time_is_formatted_to_the_microsecond() {
        let t = DateTime::parse_from_rfc3339("2026-03-04T05:06:07.1234567Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_time(&t), "2026-03-04T05:06:07.123456Z");
        assert_eq!(
            format_time(&truncate_micros(t)),
            "2026-03-04T05:06:07.123456Z"
        );
    }

    #[test]
    fn envelope_round_trips_through_json() {
        let e = chain(1).remove(0);
        let back: EventEnvelope =
            serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.compute_hash(GENESIS_HASH), e.hash);
    }

    #[test]
    fn consistency_token_round_trips() {
        let t = ConsistencyToken {
            position: 42,
            version: 3,
            stream_id: StreamId::parse("task-0192.x").unwrap(),
        };
        assert_eq!(t.to_string().parse::<ConsistencyToken>().unwrap(), t);
        assert!("nonsense".parse::<ConsistencyToken>().is_err());
    }
}
