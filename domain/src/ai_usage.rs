//! A tenant's AI token usage in one calendar month (UTC): every completed query adds its
//! tokens, in the same append as its completion. Each event holds the month's totals, so a
//! budget check is one read however many queries the month had.

use crate::aggregate::{Aggregate, CommandContext, TailState};
use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// The start of the month after the one `t` is in: when a monthly budget resets.
pub fn next_month(t: DateTime<Utc>) -> DateTime<Utc> {
    let (y, m) = if t.month() == 12 {
        (t.year() + 1, 1)
    } else {
        (t.year(), t.month() + 1)
    };
    Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().unwrap_or(t)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordUsage {
    pub query_id: String,
    pub tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AiUsageRecorded {
    pub query_id: String,
    pub tokens: u64,
    /// The month's totals after this query.
    pub total_tokens: u64,
    pub queries: u64,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

crate::domain_events!(AiUsageEvent, "AI usage" {
    Recorded(AiUsageRecorded) = "AIUsageRecorded",
});

/// The month's usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AiUsage {
    /// Tokens used by completed queries.
    pub tokens: u64,
    /// Queries completed.
    pub queries: u64,
}

impl Aggregate for AiUsage {
    const KIND: &'static str = "aiusage";
    type Command = RecordUsage;
    type Event = AiUsageEvent;
    type Error = std::convert::Infallible;

    fn decide(
        &self,
        c: &RecordUsage,
        ctx: &CommandContext,
    ) -> Result<Vec<AiUsageEvent>, Self::Error> {
        Ok(vec![AiUsageEvent::Recorded(AiUsageRecorded {
            query_id: c.query_id.clone(),
            tokens: c.tokens,
            total_tokens: self.tokens.saturating_add(c.tokens),
            queries: self.queries + 1,
            at: ctx.now,
        })])
    }

    fn apply(&mut self, event: &AiUsageEvent) {
        *self = Self::from_last(event);
    }
}

impl TailState for AiUsage {
    fn from_last(event: &AiUsageEvent) -> Self {
        match event {
            AiUsageEvent::Recorded(e) => Self {
                tokens: e.total_tokens,
                queries: e.queries,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_resets_at_the_next_month() {
        let t = Utc
            .with_ymd_and_hms(2026, 12, 31, 23, 59, 59)
            .single()
            .expect("t");
        assert_eq!(next_month(t).to_rfc3339(), "2027-01-01T00:00:00+00:00");
        let t = Utc
            .with_ymd_and_hms(2026, 2, 1, 0, 0, 0)
            .single()
            .expect("t");
        assert_eq!(next_month(t).to_rfc3339(), "2026-03-01T00:00:00+00:00");
    }
}
