//! Quota shards: a tier limit split over several streams, so that writers of different
//! things do not serialize behind one counter. A limit of `value` is split into `SHARDS`
//! shares that add up to exactly `value`; a writer takes a unit from the first shard with
//! room, starting from a shard its own id picks, and appends to it at its exact version.
//! The limit holds exactly under concurrency (every unit is taken on one shard's version),
//! and a writer is refused only when every shard is full.

use crate::aggregate::{Aggregate, CommandContext};
use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Shards per limit.
pub const SHARDS: u32 = 32;

/// Shard `shard`'s share of `value`: the shares of all shards add up to `value`.
pub fn share(value: u32, shard: u32) -> u32 {
    value / SHARDS + u32::from(shard < value % SHARDS)
}

/// The shard a writer with id `key` tries first.
pub fn first_shard(key: &str) -> u32 {
    let d = Sha256::digest(key.as_bytes());
    u32::from_be_bytes([d[0], d[1], d[2], d[3]]) % SHARDS
}

/// The instance id of shard `shard` of `limit` in `period` (e.g. `max_orders-2026-12-3`).
pub fn shard_id(limit: &str, period: &str, shard: u32) -> String {
    if period.is_empty() {
        format!("{limit}-{shard}")
    } else {
        format!("{limit}-{period}-{shard}")
    }
}

/// The calendar month (UTC) a monthly limit counts in, as `2026-12`.
pub fn month_of(t: DateTime<Utc>) -> String {
    format!("{:04}-{:02}", t.year(), t.month())
}

/// The calendar day (UTC) a daily limit counts in, as `2026-12-03`.
pub fn day_of(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// When the day `t` is in ends (UTC midnight).
pub fn next_day(t: DateTime<Utc>) -> DateTime<Utc> {
    let midnight = t.date_naive().and_hms_opt(0, 0, 0).unwrap_or_default();
    (midnight + chrono::Duration::days(1)).and_utc()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaCommand {
    /// Takes one unit for `key`, if the shard's `share` has room.
    Take { key: String, share: u32 },
    /// Gives back `key`'s unit.
    Release { key: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaMoved {
    pub key: String,
    /// Units in use on the shard after the move.
    pub used: u32,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

crate::domain_events!(QuotaEvent, "quota" {
    Taken(QuotaMoved) = "QuotaTaken",
    Released(QuotaMoved) = "QuotaReleased",
});

/// The shard has no room left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the quota shard is full")]
pub struct ShardFull;

/// One shard: how many units are in use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaShard {
    pub used: u32,
}

impl Aggregate for QuotaShard {
    const KIND: &'static str = "quota";
    type Command = QuotaCommand;
    type Event = QuotaEvent;
    type Error = ShardFull;

    fn decide(
        &self,
        command: &QuotaCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<QuotaEvent>, ShardFull> {
        match command {
            QuotaCommand::Take { key, share } => {
                if self.used >= *share {
                    return Err(ShardFull);
                }
                Ok(vec![QuotaEvent::Taken(QuotaMoved {
                    key: key.clone(),
                    used: self.used + 1,
                    at: ctx.now,
                })])
            }
            QuotaCommand::Release { key } => Ok(vec![QuotaEvent::Released(QuotaMoved {
                key: key.clone(),
                used: self.used.saturating_sub(1),
                at: ctx.now,
            })]),
        }
    }

    fn apply(&mut self, event: &QuotaEvent) {
        match event {
            QuotaEvent::Taken(e) | QuotaEvent::Released(e) => self.used = e.used,
        }
    }
}

impl crate::aggregate::TailState for QuotaShard {
    fn from_last(event: &QuotaEvent) -> Self {
        match event {
            QuotaEvent::Taken(e) | QuotaEvent::Released(e) => Self { used: e.used },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_to_the_limit() {
        for value in [0, 1, 7, 8, 9, 10, 100, 1000, 1_000_000] {
            let total: u32 = (0..SHARDS).map(|s| share(value, s)).sum();
            assert_eq!(total, value);
        }
    }
}
