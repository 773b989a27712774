//! DynamoDB item layout (DESIGN §4): events keyed `T#<tenant>#S#<stream>` / version, with the
//! envelope as plain attributes and the payload as a JSON string, so EventBridge patterns and
//! people can read it.

use aws_sdk_dynamodb::types::AttributeValue;
use domain::envelope::format_time;
use domain::{EventEnvelope, StreamId, TenantId};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use uuid::Uuid;

pub(crate) type Item = HashMap<String, AttributeValue>;

/// Shards of a tenant's feed index: one partition takes ~1,000 writes/s, so a busy tenant
/// is spread over several, by stream.
pub(crate) const FEED_SHARDS: u32 = 4;
pub(crate) const FEED_INDEX: &str = "feed";

pub(crate) fn stream_key(tenant: &TenantId, stream: &StreamId) -> String {
    format!("T#{tenant}#S#{stream}")
}

pub(crate) fn idempotency_key(tenant: &TenantId, key: &str) -> String {
    format!("T#{tenant}#IDEM#{key}")
}

pub(crate) fn feed_shard(stream: &StreamId) -> u32 {
    let digest = Sha256::digest(stream.as_str().as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % FEED_SHARDS
}

pub(crate) fn feed_key(tenant: &TenantId, shard: u32) -> String {
    format!("{tenant}#{shard}")
}

/// The feed position of an event on AWS: the time-ordered top half of its UUIDv7.
pub(crate) fn position_of(event_id: &Uuid) -> u64 {
    (event_id.as_u128() >> 64) as u64
}

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn event_item(e: &EventEnvelope) -> Item {
    let mut item = HashMap::from([
        ("pk".to_owned(), s(stream_key(&e.tenant_id, &e.stream_id))),
        ("sk".to_owned(), n(e.version)),
        ("kind".to_owned(), s("event")),
        ("event_id".to_owned(), s(e.event_id.to_string())),
        ("tenant_id".to_owned(), s(e.tenant_id.as_str())),
        ("stream_id".to_owned(), s(e.stream_id.as_str())),
        ("version".to_owned(), n(e.version)),
        ("position".to_owned(), n(e.position)),
        ("event_type".to_owned(), s(e.event_type.clone())),
        ("schema_version".to_owned(), n(e.schema_version)),
        ("recorded_at".to_owned(), s(format_time(&e.recorded_at))),
        ("actor".to_owned(), s(e.actor.clone())),
        ("command_id".to_owned(), s(e.command_id.to_string())),
        ("correlation_id".to_owned(), s(e.correlation_id.to_string())),
        ("payload".to_owned(), s(e.payload.to_string())),
        ("hash".to_owned(), s(e.hash.clone())),
        (
            "gsi1pk".to_owned(),
            s(feed_key(&e.tenant_id, feed_shard(&e.stream_id))),
        ),
        ("gsi1sk".to_owned(), s(e.event_id.to_string())),
    ]);
    if let Some(c) = e.causation_id {
        item.insert("causation_id".to_owned(), s(c.to_string()));
    }
    item
}

#[derive(Debug, thiserror::Error)]
#[error("unreadable event item: {0}")]
pub(crate) struct ItemError(pub String);

pub(crate) fn get_s<'a>(item: &'a Item, key: &str) -> Result<&'a str, ItemError> {
    match item.get(key) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(ItemError(format!("missing string attribute {key}"))),
    }
}

pub(crate) fn get_n<T: std::str::FromStr>(item: &Item, key: &str) -> Result<T, ItemError> {
    match item.get(key) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| ItemError(format!("bad number in {key}"))),
        _ => Err(ItemError(format!("missing number attribute {key}"))),
    }
}

fn uuid(item: &Item, key: &str) -> Result<Uuid, ItemError> {
    Uuid::parse_str(get_s(item, key)?).map_err(|e| ItemError(format!("{key}: {e}")))
}

pub(crate) fn envelope_from_item(item: &Item) -> Result<EventEnvelope, ItemError> {
    let bad = |e: &dyn std::fmt::Display| ItemError(e.to_string());
    Ok(EventEnvelope {
        event_id: uuid(item, "event_id")?,
        tenant_id: TenantId::parse(get_s(item, "tenant_id")?).map_err(|e| bad(&e))?,
        stream_id: StreamId::parse(get_s(item, "stream_id")?).map_err(|e| bad(&e))?,
        version: get_n(item, "version")?,
        position: get_n(item, "position")?,
        event_type: get_s(item, "event_type")?.to_owned(),
        schema_version: get_n(item, "schema_version")?,
        recorded_at: domain::time::parse_rfc3339_strict(get_s(item, "recorded_at")?)
            .map_err(|e| bad(&e))?,
        actor: get_s(item, "actor")?.to_owned(),
        command_id: uuid(item, "command_id")?,
        correlation_id: uuid(item, "correlation_id")?,
        causation_id: match item.get("causation_id") {
            Some(_) => Some(uuid(item, "causation_id")?),
            None => None,
        },
        payload: serde_json::from_str(get_s(item, "payload")?).map_err(|e| bad(&e))?,
        hash: get_s(item, "hash")?.to_owned(),
    })
}

/// A DynamoDB Streams image in the DynamoDB client's types (the two SDKs each have their own).
pub(crate) fn from_stream_image(
    image: &HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>,
) -> Item {
    use aws_sdk_dynamodbstreams::types::AttributeValue as S;
    image
        .iter()
        .filter_map(|(k, v)| {
            let v = match v {
                S::S(x) => AttributeValue::S(x.clone()),
                S::N(x) => AttributeValue::N(x.clone()),
                S::Bool(x) => AttributeValue::Bool(*x),
                S::Null(x) => AttributeValue::Null(*x),
                _ => return None,
            };
            Some((k.clone(), v))
        })
        .collect()
}

/// An image in DynamoDB's JSON form (`{"S": "..."}`, `{"N": "1"}`), as a Lambda receives
/// DynamoDB Streams records.
pub(crate) fn from_dynamodb_json(image: &serde_json::Value) -> Item {
    image
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let v = if let Some(x) = v.get("S").and_then(|x| x.as_str()) {
                AttributeValue::S(x.to_owned())
            } else if let Some(x) = v.get("N").and_then(|x| x.as_str()) {
                AttributeValue::N(x.to_owned())
            } else if let Some(x) = v.get("BOOL").and_then(|x| x.as_bool()) {
                AttributeValue::Bool(x)
            } else if v.get("NULL").is_some() {
                AttributeValue::Null(true)
            } else {
                return None;
            };
            Some((k.clone(), v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use domain::GENESIS_HASH;

    #[test]
    fn an_envelope_round_trips_through_its_item() {
        let mut e = EventEnvelope {
            event_id: Uuid::now_v7(),
            tenant_id: TenantId::parse("t1").unwrap(),
            stream_id: StreamId::parse("task-1").unwrap(),
            version: 3,
            position: 0,
            event_type: "TaskCreated".into(),
            schema_version: 1,
            recorded_at: domain::envelope::truncate_micros(Utc::now()),
            actor: "alice".into(),
            command_id: Uuid::now_v7(),
            correlation_id: Uuid::now_v7(),
            causation_id: Some(Uuid::now_v7()),
            payload: serde_json::json!({"title": "x", "n": [1, 2]}),
            hash: String::new(),
        };
        e.position = position_of(&e.event_id);
        e.seal(GENESIS_HASH);
        assert_eq!(envelope_from_item(&event_item(&e)).unwrap(), e);
    }

    #[test]
    fn positions_follow_event_id_order() {
        let a = Uuid::now_v7();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = Uuid::now_v7();
        assert!(position_of(&a) < position_of(&b));
    }

    #[test]
    fn a_lambda_stream_image_reads_as_an_item() {
        let mut e = EventEnvelope {
            event_id: Uuid::now_v7(),
            tenant_id: TenantId::parse("t1").unwrap(),
            stream_id: StreamId::parse("task-1").unwrap(),
            version: 1,
            position: 7,
            event_type: "TaskCreated".into(),
            schema_version: 1,
            recorded_at: domain::envelope::truncate_micros(Utc::now()),
            actor: "alice".into(),
            command_id: Uuid::now_v7(),
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            payload: serde_json::json!({"title": "x"}),
            hash: String::new(),
        };
        e.seal(GENESIS_HASH);
        let image: serde_json::Map<String, serde_json::Value> = event_item(&e)
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    AttributeValue::S(x) => serde_json::json!({ "S": x }),
                    AttributeValue::N(x) => serde_json::json!({ "N": x }),
                    other => panic!("unexpected {other:?}"),
                };
                (k, v)
            })
            .collect();
        let item = from_dynamodb_json(&serde_json::Value::Object(image));
        assert_eq!(envelope_from_item(&item).unwrap(), e);
    }
}
