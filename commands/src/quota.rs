//! Tier limits counted on quota shards (`domain::quota`): a command takes a unit of a
//! limit in the same append as what it creates, so the limit holds exactly however many
//! writers race for its last units, and writers of different things rarely meet on a shard.

use crate::handler::CommandError;
use crate::pipeline::Tx;
use crate::store::StoreError;
use domain::quota::{self, QuotaCommand, QuotaShard, SHARDS, ShardFull};
use domain::{Aggregate, StreamId};

/// A limit's name, its value for the tenant's tier, and the period it counts in (`""` for
/// all time, `quota::month_of`, `quota::day_of`).
pub type Limit<'a> = (&'static str, u32, &'a str);

/// Shard `shard` of `limit` in `period`.
pub fn shard_stream(limit: &str, period: &str, shard: u32) -> StreamId {
    StreamId::for_aggregate(QuotaShard::KIND, quota::shard_id(limit, period, shard))
}

/// Takes one unit of `limit` for `key`, from the first shard with room, starting where
/// `key` points: the shard, or `None` when every shard is full.
pub async fn take<E: std::error::Error + 'static>(
    tx: &mut Tx<'_>,
    (limit, value, period): Limit<'_>,
    key: &str,
) -> Result<Option<u32>, CommandError<E>> {
    let first = quota::first_shard(key);
    for k in 0..SHARDS {
        let shard = (first + k) % SHARDS;
        let share = quota::share(value, shard);
        if share == 0 {
            continue;
        }
        let stream = shard_stream(limit, period, shard);
        let (q, _) = tx.load_tail::<QuotaShard>(&stream).await.map_err(loaded)?;
        let take = QuotaCommand::Take {
            key: key.to_owned(),
            share,
        };
        match q.decide(&take, tx.ctx()) {
            Ok(events) => {
                tx.write::<QuotaShard>(&stream, &events);
                return Ok(Some(shard));
            }
            Err(ShardFull) => continue,
        }
    }
    Ok(None)
}

/// Gives `key`'s unit back to shard `shard` of `limit` in `period`.
pub async fn release<E: std::error::Error + 'static>(
    tx: &mut Tx<'_>,
    (limit, period, shard): (&'static str, &str, u32),
    key: &str,
) -> Result<(), CommandError<E>> {
    let stream = shard_stream(limit, period, shard);
    let (q, _) = tx.load_tail::<QuotaShard>(&stream).await.map_err(loaded)?;
    let release = QuotaCommand::Release {
        key: key.to_owned(),
    };
    // A release is never refused.
    if let Ok(freed) = q.decide(&release, tx.ctx()) {
        tx.write::<QuotaShard>(&stream, &freed);
    }
    Ok(())
}

/// A shard's load fails only as a read does: it never rejects.
fn loaded<E: std::error::Error + 'static>(e: CommandError<ShardFull>) -> CommandError<E> {
    e.unless_rejected()
        .unwrap_or_else(|full| CommandError::Store(StoreError::Invalid(full.to_string())))
}
