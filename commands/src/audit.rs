//! Audits of the store: a tenant's timeline (who did what, when, through which command),
//! a check of every stream's hash chain and version sequence, and a digest of the history
//! (event count, head position, a Merkle root over every stream's head) that an auditor
//! keeps outside the system: verified later against the store, it catches a rewrite even
//! when every hash was recomputed. Everything streams page by page; only a stream's last
//! version and hash are held, never its events.

use crate::store::{EventStore, FeedCursor, StoreError};
use chrono::{DateTime, Utc};
use domain::{EventEnvelope, GENESIS_HASH, StreamId, TenantId};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Events read per page.
pub const PAGE: usize = 1000;

/// Which events a timeline shows.
#[derive(Debug, Clone, Default)]
pub struct TimelineFilter {
    pub stream: Option<StreamId>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub actor: Option<String>,
    pub event_type: Option<String>,
}

impl TimelineFilter {
    pub fn admits(&self, e: &EventEnvelope) -> bool {
        self.stream.as_ref().is_none_or(|s| *s == e.stream_id)
            && self.since.is_none_or(|t| e.recorded_at >= t)
            && self.until.is_none_or(|t| e.recorded_at <= t)
            && self.actor.as_ref().is_none_or(|a| *a == e.actor)
            && self.event_type.as_ref().is_none_or(|t| *t == e.event_type)
    }
}

/// One page of a tenant's timeline: of the next `limit` events after `after`, those that
/// `filter` admits (so a page may hold fewer, even none), and the cursor to go on from
/// (`None` at the end of the history).
pub async fn timeline_page(
    store: &dyn EventStore,
    tenant: &TenantId,
    filter: &TimelineFilter,
    after: &FeedCursor,
    limit: usize,
) -> Result<(Vec<EventEnvelope>, Option<FeedCursor>), StoreError> {
    let limit = limit.clamp(1, PAGE);
    let page = store.read_tenant_feed(tenant, after, limit).await?;
    let more = page.events.len() == limit;
    let events = page
        .events
        .into_iter()
        .filter(|e| filter.admits(e))
        .collect();
    Ok((events, more.then_some(page.next)))
}

/// A broken stream, as `verify` names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Broken {
    pub tenant_id: String,
    pub stream_id: String,
    pub version: u64,
    pub reason: String,
}

/// Each stream's last version and hash, as the events go by in feed order (each stream
/// in version order): checks the chain and the version sequence, and is the input of a
/// digest. A stream is held as 72 bytes (the SHA-256 of its tenant and id, its version,
/// its head hash), so a store of millions of streams is checked in bounded memory.
#[derive(Debug, Default)]
pub struct ChainCheck {
    heads: std::collections::HashMap<[u8; 32], Head>,
    pub events: u64,
    pub head_position: u64,
    pub broken: Vec<Broken>,
}

/// A stream's last version and hash.
type Head = (u64, [u8; 32]);

fn stream_key(tenant: &TenantId, stream: &StreamId) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [tenant.as_str().as_bytes(), stream.as_str().as_bytes()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

fn hash_bytes(hex_hash: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    // A hash that is not 64 hex digits cannot chain anyway; it is held as zeros.
    let _ = hex::decode_to_slice(hex_hash, &mut out);
    out
}

impl ChainCheck {
    pub fn add(&mut self, e: &EventEnvelope) {
        self.events += 1;
        self.head_position = self.head_position.max(e.position);
        let key = stream_key(&e.tenant_id, &e.stream_id);
        let (version, prev) = self
            .heads
            .get(&key)
            .map_or((0, GENESIS_HASH.to_owned()), |(v, h)| (*v, hex::encode(h)));
        let mut problem = None;
        if e.version != version + 1 {
            problem = Some(format!(
                "version {} follows version {version}: events are missing or out of order",
                e.version
            ));
        } else if e.compute_hash(&prev) != e.hash {
            problem = Some("its hash does not chain: the event was altered".to_owned());
        }
        if let Some(reason) = problem {
            self.broken.push(Broken {
                tenant_id: e.tenant_id.to_string(),
                stream_id: e.stream_id.to_string(),
                version: e.version,
                reason,
            });
        }
        self.heads.insert(key, (e.version, hash_bytes(&e.hash)));
    }

    pub fn streams(&self) -> usize {
        self.heads.len()
    }

    /// The digest of what was added: the leaves in the order of their streams' keys.
    pub fn digest(&self, tenant: Option<&TenantId>) -> HistoryDigest {
        let mut heads: Vec<(&[u8; 32], &Head)> = self.heads.iter().collect();
        heads.sort_unstable_by(|a, b| a.0.cmp(b.0));
        HistoryDigest {
            tenant_id: tenant.map(ToString::to_string),
            events: self.events,
            streams: self.heads.len() as u64,
            head_position: self.head_position,
            root: merkle_root(heads.into_iter().map(|(k, (v, h))| leaf(k, *v, h))),
        }
    }
}

/// What an auditor keeps: the history's size, where it ended, and a Merkle root over every
/// stream's head (tenant, stream, version, hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryDigest {
    pub tenant_id: Option<String>,
    pub events: u64,
    pub streams: u64,
    pub head_position: u64,
    pub root: String,
}

fn leaf(stream: &[u8; 32], version: u64, hash: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(stream);
    h.update(version.to_be_bytes());
    h.update(hash);
    h.finalize().into()
}

/// The root of a binary Merkle tree over `leaves` (in order); an odd node is carried up.
fn merkle_root(leaves: impl Iterator<Item = [u8; 32]>) -> String {
    let mut level: Vec<[u8; 32]> = leaves.collect();
    if level.is_empty() {
        return hex::encode(Sha256::digest(b""));
    }
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [a, b] => {
                    let mut h = Sha256::new();
                    h.update(a);
                    h.update(b);
                    h.finalize().into()
                }
                [a] => *a,
                _ => unreachable!("chunks of two"),
            })
            .collect();
    }
    hex::encode(level[0])
}

/// Feeds every event of `tenant` (up to `until_position` when given) to `check`.
pub async fn check_tenant(
    store: &dyn EventStore,
    tenant: &TenantId,
    until_position: Option<u64>,
    check: &mut ChainCheck,
) -> Result<(), StoreError> {
    let mut cursor = FeedCursor::start();
    loop {
        let page = store.read_tenant_feed(tenant, &cursor, PAGE).await?;
        if page.events.is_empty() {
            return Ok(());
        }
        for e in &page.events {
            if until_position.is_none_or(|p| e.position <= p) {
                check.add(e);
            }
        }
        cursor = page.next;
    }
}

/// Whether the store's history still matches `digest`: the same events, streams and heads
/// up to its head position. The differences, named.
pub fn compare(digest: &HistoryDigest, now: &HistoryDigest) -> Vec<String> {
    let mut out = Vec::new();
    if now.events != digest.events {
        out.push(format!(
            "{} events up to position {}, the digest has {}",
            now.events, digest.head_position, digest.events
        ));
    }
    if now.streams != digest.streams {
        out.push(format!(
            "{} streams, the digest has {}",
            now.streams, digest.streams
        ));
    }
    if now.root != digest.root {
        out.push("the streams' heads differ from the digest's: history was rewritten".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_depends_on_every_head() {
        let (s1, s2) = ([1u8; 32], [2u8; 32]);
        let (h1, h2, hx) = ([7u8; 32], [8u8; 32], [9u8; 32]);
        let a = merkle_root([leaf(&s1, 1, &h1), leaf(&s2, 2, &h2)].into_iter());
        let b = merkle_root([leaf(&s1, 1, &h1), leaf(&s2, 2, &hx)].into_iter());
        let c = merkle_root([leaf(&s1, 1, &h1), leaf(&s2, 3, &h2)].into_iter());
        assert_ne!(a, b);
        assert_ne!(a, c);
        let three =
            merkle_root([leaf(&s1, 1, &h1), leaf(&s2, 1, &h2), leaf(&[3; 32], 1, &hx)].into_iter());
        assert_eq!(three.len(), 64);
    }
}
