//! Tallies: figures that a read-model row adds to a summary row of another view (an
//! order's revenue to its day's). A projection says what a row contributes
//! (`Projection::tallies`); the engine writes the difference between a row's contributions
//! before and after a batch in the same atomic commit as the row itself. Because the row's
//! write is conditional on its version, each change counts exactly once however often its
//! events are delivered, and because the changes are sums they commute: concurrent
//! projectors need no lock on the summary row.

use crate::ports::ReadModelError;
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Counts and labels of one summary row, or a change to them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tally {
    pub view: String,
    pub row_id: String,
    /// Summed. A count that comes to zero is dropped, so a row does not depend on the
    /// order in which its changes arrived.
    pub counts: BTreeMap<String, Decimal>,
    /// Names for the keys of the counts, set once: a summary row keeps the first value a
    /// change brought for a key.
    pub labels: BTreeMap<String, String>,
}

impl Tally {
    pub fn new(view: &str, row_id: impl Into<String>) -> Self {
        Self {
            view: view.to_owned(),
            row_id: row_id.into(),
            ..Self::default()
        }
    }

    /// Adds `by` to the count `key` (saturating; counts are far from the bounds).
    pub fn count(&mut self, key: impl Into<String>, by: Decimal) {
        let c = self.counts.entry(key.into()).or_default();
        *c = c.saturating_add(by);
    }

    /// Sets the label `key` unless it has one.
    pub fn label(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.labels
            .entry(key.into())
            .or_insert_with(|| value.into());
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.labels.is_empty()
    }

    /// Folds `change` in: counts add up, labels are set where absent.
    pub fn absorb(&mut self, change: &Tally) -> Result<(), ReadModelError> {
        for (k, by) in &change.counts {
            let now = self
                .counts
                .get(k)
                .copied()
                .unwrap_or_default()
                .checked_add(*by)
                .ok_or_else(|| ReadModelError::Backend(format!("tally {k} overflows")))?;
            if now.is_zero() {
                self.counts.remove(k);
            } else {
                self.counts.insert(k.clone(), now);
            }
        }
        for (k, v) in &change.labels {
            self.label(k.clone(), v.clone());
        }
        Ok(())
    }

    /// The summary row's document: `{"counts": {key: "decimal"}, "labels": {key: text}}`.
    pub fn to_doc(&self) -> Value {
        let counts: Map<String, Value> = self
            .counts
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.normalize().to_string())))
            .collect();
        json!({"counts": counts, "labels": self.labels})
    }

    pub fn from_doc(view: &str, row_id: &str, doc: &Value) -> Result<Self, ReadModelError> {
        let bad = |what: &str| {
            ReadModelError::Backend(format!("unreadable tally {view}/{row_id}: {what}"))
        };
        let mut t = Tally::new(view, row_id);
        let counts = doc.get("counts").and_then(Value::as_object);
        for (k, v) in counts.ok_or_else(|| bad("no counts"))? {
            let n = v
                .as_str()
                .and_then(|s| s.parse::<Decimal>().ok())
                .ok_or_else(|| bad(k))?;
            t.counts.insert(k.clone(), n);
        }
        let labels = doc.get("labels").and_then(Value::as_object);
        for (k, v) in labels.ok_or_else(|| bad("no labels"))? {
            t.labels
                .insert(k.clone(), v.as_str().ok_or_else(|| bad(k))?.to_owned());
        }
        Ok(t)
    }

    /// A count as read back, zero when absent.
    pub fn get(&self, key: &str) -> Decimal {
        self.counts.get(key).copied().unwrap_or_default()
    }
}

/// The changes of one commit, merged per summary row (tenant, view, row id), so that a
/// store writes each summary row once however many rows of the commit changed it.
#[derive(Debug, Default)]
pub struct Merged(BTreeMap<(String, String, String), (domain::TenantId, Tally)>);

impl Merged {
    fn key(tenant: &domain::TenantId, t: &Tally) -> (String, String, String) {
        (tenant.to_string(), t.view.clone(), t.row_id.clone())
    }

    /// Whether a change of this summary row is already here.
    pub fn has(&self, tenant: &domain::TenantId, t: &Tally) -> bool {
        self.0.contains_key(&Self::key(tenant, t))
    }

    pub fn add(&mut self, tenant: &domain::TenantId, change: &Tally) -> Result<(), ReadModelError> {
        let (_, slot) = self.0.entry(Self::key(tenant, change)).or_insert_with(|| {
            (
                tenant.clone(),
                Tally::new(&change.view, change.row_id.clone()),
            )
        });
        slot.absorb(change)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Each summary row's merged change, with its tenant.
    pub fn iter(&self) -> impl Iterator<Item = (&domain::TenantId, &Tally)> {
        self.0.values().map(|(t, c)| (t, c))
    }
}

/// What changes in the summary rows when a row's contributions go from `before` to
/// `after`: per summary row, the counts of `after` minus those of `before` (zeros left out)
/// and the labels of `after`. Summary rows with nothing to change are left out.
pub fn change(before: Vec<Tally>, after: Vec<Tally>) -> Vec<Tally> {
    let mut out: BTreeMap<(String, String), Tally> = BTreeMap::new();
    for t in after {
        let key = (t.view.clone(), t.row_id.clone());
        let slot = out
            .entry(key)
            .or_insert_with(|| Tally::new(&t.view, t.row_id.clone()));
        for (k, v) in t.counts {
            slot.count(k, v);
        }
        for (k, v) in t.labels {
            slot.label(k, v);
        }
    }
    for t in before {
        let key = (t.view.clone(), t.row_id.clone());
        let slot = out
            .entry(key)
            .or_insert_with(|| Tally::new(&t.view, t.row_id.clone()));
        for (k, v) in t.counts {
            slot.count(k, -v);
        }
    }
    out.into_values()
        .map(|mut t| {
            t.counts.retain(|_, v| !v.is_zero());
            t
        })
        .filter(|t| !t.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(row: &str, counts: &[(&str, i64)]) -> Tally {
        let mut t = Tally::new("revenue", row);
        for (k, v) in counts {
            t.count(*k, Decimal::from(*v));
        }
        t
    }

    #[test]
    fn a_change_is_after_minus_before_per_row() {
        let before = vec![tally("d1", &[("booked", 10), ("pending", 1)])];
        let after = vec![
            tally("d1", &[("booked", 10), ("cancelled", 1)]),
            tally("d2", &[("x", 3)]),
        ];
        let c = change(before, after);
        assert_eq!(c.len(), 2);
        assert_eq!(
            c[0].counts.get("booked"),
            None,
            "unchanged counts are left out"
        );
        assert_eq!(c[0].get("pending"), Decimal::from(-1));
        assert_eq!(c[0].get("cancelled"), Decimal::from(1));
        assert_eq!(c[1].get("x"), Decimal::from(3));
        assert!(change(vec![tally("d", &[("a", 1)])], vec![tally("d", &[("a", 1)])]).is_empty());
    }

    #[test]
    fn absorbing_changes_in_any_order_gives_the_same_row() {
        let changes = [
            tally("d", &[("a", 5), ("b", 1)]),
            tally("d", &[("a", -5)]),
            tally("d", &[("b", 2), ("c", 7)]),
        ];
        let mut forward = Tally::new("revenue", "d");
        let mut backward = forward.clone();
        for c in &changes {
            forward.absorb(c).expect("absorb");
        }
        for c in changes.iter().rev() {
            backward.absorb(c).expect("absorb");
        }
        assert_eq!(forward, backward);
        assert_eq!(forward.counts.get("a"), None, "a count at zero is dropped");
        let doc = forward.to_doc();
        assert_eq!(Tally::from_doc("revenue", "d", &doc).expect("doc"), forward);
    }

    #[test]
    fn a_label_is_set_once() {
        let mut row = Tally::new("v", "r");
        let (mut first, mut second) = (row.clone(), row.clone());
        first.label("p", "Alpha");
        second.label("p", "Beta");
        row.absorb(&first).expect("absorb");
        row.absorb(&second).expect("absorb");
        assert_eq!(row.labels["p"], "Alpha");
    }
}
