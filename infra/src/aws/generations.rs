//! Generations of a tenant's view on DynamoDB, for rebuilds swapped in atomically.
//!
//! A view's rows for a tenant live in one partition. Which one is the view's live
//! generation, kept in an item of its own (`GEN#T#<tenant>#V#<view>`, absent: 0):
//! generation 0 is `T#<tenant>#V#<view>`, generation g `T#<tenant>#V#<view>#G<g>`. A
//! rebuild writes the next generation (the shadow name `<view>~rebuild` resolves to it)
//! while the live one serves; the swap is one conditional write of the generation items.
//! Every commit carries a condition on the generations it wrote under, so a projector that
//! still wrote to the old generation after a swap fails, forgets what it cached, and
//! reloads. Readers cache a generation for `FRESH_FOR`: a swap shows within that.

use super::dynamodb::sdk_error;
use super::item::{Item, n, s};
use super::views::error;
use aws_sdk_dynamodb::types::{ConditionCheck, TransactWriteItem};
use projections::ReadModelError;
use projections::replay::shadow_name;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a generation read is trusted by readers.
pub(crate) const FRESH_FOR: Duration = Duration::from_secs(1);

/// The generation a commit wrote under: the condition that makes it land only while that
/// generation is still the live one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Fence {
    pub(crate) tenant: String,
    pub(crate) view: String,
    pub(crate) generation: u64,
}

/// (tenant, view) → the generation read, and when.
type Cache = HashMap<(String, String), (u64, Instant)>;

#[derive(Clone)]
pub(crate) struct Generations {
    client: aws_sdk_dynamodb::Client,
    table: String,
    cache: Arc<Mutex<Cache>>,
}

pub(crate) fn generation_key(tenant: &str, view: &str) -> String {
    format!("GEN#T#{tenant}#V#{view}")
}

/// The partition of a generation of a tenant's view.
pub(crate) fn partition_of(tenant: &str, view: &str, generation: u64) -> String {
    match generation {
        0 => format!("T#{tenant}#V#{view}"),
        g => format!("T#{tenant}#V#{view}#G{g}"),
    }
}

/// A view's live name and how many generations past the live one it is (a shadow: 1).
fn resolve(view: &str) -> (&str, u64) {
    match view.strip_suffix(shadow_name("").as_str()) {
        Some(live) => (live, 1),
        None => (view, 0),
    }
}

/// The condition that the fence's view is still at its generation (`:g`); generation 0 is
/// also the absence of the item.
fn still_at(fence: &Fence) -> &'static str {
    if fence.generation == 0 {
        "attribute_not_exists(gen) OR gen = :g"
    } else {
        "gen = :g"
    }
}

impl Generations {
    pub(crate) fn new(client: aws_sdk_dynamodb::Client, table: String) -> Self {
        Self {
            client,
            table,
            cache: Arc::default(),
        }
    }

    /// The live generation as stored (a consistent read), cached.
    pub(crate) async fn read(&self, tenant: &str, view: &str) -> Result<u64, ReadModelError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(generation_key(tenant, view)))
            .key("sk", s("0"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| error(sdk_error(e)))?;
        let generation = out
            .item()
            .and_then(|i| i.get("gen"))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        self.lock().insert(
            (tenant.to_owned(), view.to_owned()),
            (generation, Instant::now()),
        );
        Ok(generation)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn live(&self, tenant: &str, view: &str) -> Result<u64, ReadModelError> {
        let cached = self
            .lock()
            .get(&(tenant.to_owned(), view.to_owned()))
            .filter(|(_, at)| at.elapsed() < FRESH_FOR)
            .map(|(g, _)| *g);
        match cached {
            Some(g) => Ok(g),
            None => self.read(tenant, view).await,
        }
    }

    /// Drops what is cached of a generation (after a fence failed, or a swap).
    pub(crate) fn forget(&self, tenant: &str, view: &str) {
        self.lock().remove(&(tenant.to_owned(), view.to_owned()));
    }

    /// The partition `view` (a live or shadow name) of `tenant` is in now, and the fence
    /// a write to it needs.
    pub(crate) async fn partition(
        &self,
        tenant: &str,
        view: &str,
    ) -> Result<(String, Fence), ReadModelError> {
        let (live, ahead) = resolve(view);
        let generation = self.live(tenant, live).await?;
        Ok((
            partition_of(tenant, live, generation + ahead),
            Fence {
                tenant: tenant.to_owned(),
                view: live.to_owned(),
                generation,
            },
        ))
    }

    /// The condition of a fence, as a transaction's action.
    pub(crate) fn check(&self, fence: &Fence) -> Result<TransactWriteItem, ReadModelError> {
        let condition = still_at(fence);
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .key("pk", s(generation_key(&fence.tenant, &fence.view)))
            .key("sk", s("0"))
            .condition_expression(condition)
            .expression_attribute_values(":g", n(fence.generation))
            .build()
            .map_err(|e| ReadModelError::Backend(e.to_string()))?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    /// The write that moves a fence's view to the next generation, if still at it.
    pub(crate) fn advance(&self, fence: &Fence) -> Result<TransactWriteItem, ReadModelError> {
        let condition = still_at(fence);
        let item: Item = HashMap::from([
            (
                "pk".to_owned(),
                s(generation_key(&fence.tenant, &fence.view)),
            ),
            ("sk".to_owned(), s("0")),
            ("gen".to_owned(), n(fence.generation + 1)),
        ]);
        let put = aws_sdk_dynamodb::types::Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .expression_attribute_values(":g", n(fence.generation))
            .build()
            .map_err(|e| ReadModelError::Backend(e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shadow_name_is_the_next_generation_of_its_view() {
        assert_eq!(resolve("tasks"), ("tasks", 0));
        assert_eq!(resolve(&shadow_name("tasks")), ("tasks", 1));
        assert_eq!(partition_of("acme", "tasks", 0), "T#acme#V#tasks");
        assert_eq!(partition_of("acme", "tasks", 2), "T#acme#V#tasks#G2");
    }
}
