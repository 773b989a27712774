//! The analytics figures (DESIGN §8): per tenant, one summary row per UTC day holding that
//! day's orders placed and revenue, order status changes, tasks created and completed, AI
//! queries, tokens and failures, and customer sync runs and records changed.
//!
//! The figures are folded from the event feed by a projection like any other, so each
//! event counts once however often it is delivered: its row, one per source stream,
//! remembers what the stream has added to each day, at the stream version it reflects;
//! a duplicate (an event at or below that version) changes nothing, and the change of
//! the row's contributions, written with the row (`crate::tally`), is the new event's
//! figures. Embedded, the log tail feeds it; on AWS, the Kinesis consumer.

use crate::ports::{Projection, ProjectionError};
use crate::tally::Tally;
use domain::ai_query::AiQueryEvent;
use domain::customer_sync::{SyncCounts, SyncEvent};
use domain::order::{OrderEvent, OrderStatus};
use domain::task::{TaskEvent, TaskStatus};
use domain::{DomainEvent, EventEnvelope};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

/// The summary rows, one per tenant per day (`crate::revenue::day_row`).
pub const VIEW: &str = "analytics_daily";
/// The rows per source stream: what each has added to each day.
pub const STREAMS: &str = "analytics_streams";

pub const ORDERS_PLACED: &str = "orders_placed";
pub const TASKS_CREATED: &str = "tasks_created";
pub const TASKS_COMPLETED: &str = "tasks_completed";
pub const AI_QUERIES: &str = "ai_queries";
pub const AI_COMPLETED: &str = "ai_completed";
pub const AI_FAILURES: &str = "ai_failures";
pub const AI_TOKENS: &str = "ai_tokens";
pub const SYNC_RUNS: &str = "sync_runs";
pub const SYNC_FAILURES: &str = "sync_failures";
pub const SYNC_RECORDS_CHANGED: &str = "sync_records_changed";

/// The count of revenue booked by orders placed, in `currency`.
pub fn revenue(currency: &str) -> String {
    format!("revenue/{currency}")
}

/// The count of orders that moved to `status` (`OrderStatus::as_str`; placed: pending).
pub fn orders_to(status: &str) -> String {
    format!("orders/{status}")
}

/// The aggregates whose events carry figures.
const KINDS: [&str; 4] = ["task", "order", "aiquery", "customersync"];

#[derive(Debug, Default, Clone, Copy)]
pub struct AnalyticsProjection;

fn bad(e: impl std::fmt::Display) -> ProjectionError {
    ProjectionError(e.to_string())
}

/// What one event adds to its day, as (count, amount) pairs.
pub fn figures(event: &EventEnvelope) -> Result<Vec<(String, Decimal)>, ProjectionError> {
    let one = |k: &str| (k.to_owned(), Decimal::ONE);
    let (kind, t, v, p) = (
        event.stream_id.kind(),
        event.event_type.as_str(),
        event.schema_version,
        &event.payload,
    );
    Ok(match kind {
        "order" => match OrderEvent::from_stored(t, v, p).map_err(bad)? {
            OrderEvent::Placed(o) => vec![
                one(ORDERS_PLACED),
                one(&orders_to(OrderStatus::Pending.as_str())),
                (revenue(o.currency.as_str()), o.total_amount.decimal()),
            ],
            OrderEvent::Confirmed(c)
            | OrderEvent::Shipped(c)
            | OrderEvent::Delivered(c)
            | OrderEvent::Cancelled(c) => vec![one(&orders_to(c.to.as_str()))],
            OrderEvent::ShippingChanged(_) => vec![],
        },
        "task" => match TaskEvent::from_stored(t, v, p).map_err(bad)? {
            TaskEvent::Created(_) => vec![one(TASKS_CREATED)],
            TaskEvent::StatusChanged(c) if c.to == TaskStatus::Done => vec![one(TASKS_COMPLETED)],
            _ => vec![],
        },
        "aiquery" => match AiQueryEvent::from_stored(t, v, p).map_err(bad)? {
            AiQueryEvent::Submitted(_) => vec![one(AI_QUERIES)],
            AiQueryEvent::Completed(c) => vec![
                one(AI_COMPLETED),
                (AI_TOKENS.to_owned(), Decimal::from(c.usage.total_tokens)),
            ],
            AiQueryEvent::Failed(_) => vec![one(AI_FAILURES)],
            _ => vec![],
        },
        "customersync" => {
            let run = |counts: &SyncCounts| {
                let changed = counts.imported + counts.updated + counts.deleted;
                vec![
                    one(SYNC_RUNS),
                    (SYNC_RECORDS_CHANGED.to_owned(), Decimal::from(changed)),
                ]
            };
            match SyncEvent::from_stored(t, v, p).map_err(bad)? {
                // A run's counts are its totals so far: it counts once, as it ends.
                SyncEvent::Completed(c) => run(&c.counts),
                SyncEvent::Failed(f) => {
                    let mut out = run(&f.counts);
                    out.push(one(SYNC_FAILURES));
                    out
                }
                _ => vec![],
            }
        }
        _ => vec![],
    })
}

impl Projection for AnalyticsProjection {
    fn name(&self) -> &'static str {
        STREAMS
    }

    fn handles(&self, event: &EventEnvelope) -> bool {
        KINDS.contains(&event.stream_id.kind())
    }

    fn row_id(&self, event: &EventEnvelope) -> String {
        event.stream_id.as_str().to_owned()
    }

    /// The row: `{"days": {day: {count: "decimal"}}}`, what the stream added to each day.
    fn apply(
        &self,
        row: Option<&Value>,
        event: &EventEnvelope,
    ) -> Result<Option<Value>, ProjectionError> {
        let mut row = row.cloned().unwrap_or_else(|| json!({"days": {}}));
        let figures = figures(event)?;
        if figures.is_empty() {
            return Ok(Some(row));
        }
        let day = crate::revenue::day_row(event.recorded_at.date_naive());
        let days = row["days"]
            .as_object_mut()
            .ok_or_else(|| bad("an analytics row without days"))?;
        let counts = days
            .entry(day)
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .ok_or_else(|| bad("an analytics day that is not an object"))?;
        for (key, by) in figures {
            let now = counts
                .get(&key)
                .and_then(Value::as_str)
                .map(|s| s.parse::<Decimal>().map_err(bad))
                .transpose()?
                .unwrap_or_default()
                .checked_add(by)
                .ok_or_else(|| bad(format!("{key} overflows")))?;
            counts.insert(key, Value::String(now.normalize().to_string()));
        }
        Ok(Some(row))
    }

    fn tallies(&self, row: &Value) -> Vec<Tally> {
        let Some(days) = row["days"].as_object() else {
            return Vec::new();
        };
        days.iter()
            .map(|(day, counts)| {
                let mut t = Tally::new(VIEW, day.clone());
                for (key, n) in counts.as_object().into_iter().flatten() {
                    if let Some(n) = n.as_str().and_then(|s| s.parse::<Decimal>().ok()) {
                        t.count(key.clone(), n);
                    }
                }
                t
            })
            .collect()
    }

    fn tally_views(&self) -> &'static [&'static str] {
        &[VIEW]
    }

    /// A row only adds each new event's figures to its day: nothing an event adds depends
    /// on the stream's earlier events.
    fn additive(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::customer_sync::CustomerSyncCompleted;

    fn event(stream: &str, version: u64, event_type: &str, payload: Value) -> EventEnvelope {
        serde_json::from_value(json!({
            "event_id": "0190d0b8-0000-7000-8000-000000000001", "tenant_id": "acme",
            "stream_id": stream, "version": version, "position": version,
            "event_type": event_type, "schema_version": 1,
            "recorded_at": "2026-12-01T10:00:00.000000Z", "actor": "u",
            "command_id": "0190d0b8-0000-7000-8000-000000000002",
            "correlation_id": "0190d0b8-0000-7000-8000-000000000003", "causation_id": null,
            "payload": payload, "hash": ""
        }))
        .expect("envelope")
    }

    #[test]
    fn a_sync_run_counts_once_as_it_ends_with_the_records_it_changed() {
        let counts = SyncCounts {
            fetched: 9,
            imported: 3,
            updated: 2,
            deleted: 1,
            unchanged: 3,
            cases_updated: 0,
            documents_synced: 0,
        };
        let done = SyncEvent::Completed(CustomerSyncCompleted {
            counts,
            watermark: None,
            at: chrono::Utc::now(),
        });
        let stream = "customersync-0190d0b8-0000-7000-8000-0000000000aa";
        let e = event(stream, 3, done.event_type(), done.to_payload());
        let p = AnalyticsProjection;
        assert!(p.handles(&e));
        let row = p.apply(None, &e).expect("applies").expect("a row");
        let tallies = p.tallies(&row);
        assert_eq!(tallies.len(), 1);
        assert_eq!(tallies[0].row_id, "2026-12-01");
        assert_eq!(tallies[0].get(SYNC_RUNS), Decimal::ONE);
        assert_eq!(tallies[0].get(SYNC_RECORDS_CHANGED), Decimal::from(6));
        // A second event of the stream adds to what the row holds; an event that is
        // not a figure leaves it as it was.
        let again = p.apply(Some(&row), &e).expect("applies").expect("a row");
        assert_eq!(p.tallies(&again)[0].get(SYNC_RUNS), Decimal::from(2));
        let progressed = event(
            stream,
            2,
            "CustomerSyncProgressed",
            json!({"counts": counts, "watermark": null, "at": "2026-12-01T10:00:00Z"}),
        );
        assert_eq!(
            p.apply(Some(&row), &progressed).expect("applies"),
            Some(row)
        );
    }

    #[test]
    fn an_unreadable_payload_is_refused_not_counted_as_zero() {
        let e = event("order-x", 1, "OrderPlaced", json!({"total_amount": "x"}));
        assert!(AnalyticsProjection.apply(None, &e).is_err());
    }
}
