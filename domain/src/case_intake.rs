//! A customer's case intake: the sliding-hour limit on new cases (seed 001's "rate
//! limiting on case creation"). Each admitted case appends CaseAdmitted, carrying the
//! times of the cases admitted in the hour before it, so the stream's last event is its
//! whole state and the limit holds exactly under concurrency (every admission is an
//! append at the stream's version), on either backend, across restarts.

use crate::aggregate::{Aggregate, CommandContext, TailState};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// The window the limit counts in.
pub fn window() -> Duration {
    Duration::hours(1)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admit {
    pub case_id: String,
    /// Cases a customer may open in any hour.
    pub per_hour: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseAdmitted {
    pub case_id: String,
    /// When each case admitted in the hour up to this one was, this one's included.
    pub recent: Vec<DateTime<Utc>>,
}

crate::domain_events!(CaseIntakeEvent, "case intake" {
    Admitted(CaseAdmitted) = "CaseAdmitted",
});

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "this customer opened {limit} cases in the last hour; the next may be opened in {retry_after_secs} s"
)]
pub struct TooManyCases {
    pub limit: u32,
    pub retry_after_secs: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaseIntake {
    pub recent: Vec<DateTime<Utc>>,
}

impl Aggregate for CaseIntake {
    const KIND: &'static str = "caseintake";
    type Command = Admit;
    type Event = CaseIntakeEvent;
    type Error = TooManyCases;

    fn decide(
        &self,
        c: &Admit,
        ctx: &CommandContext,
    ) -> Result<Vec<CaseIntakeEvent>, TooManyCases> {
        let since = ctx.now - window();
        let mut recent: Vec<_> = self.recent.iter().copied().filter(|t| *t > since).collect();
        if recent.len() >= c.per_hour as usize {
            let oldest = recent.iter().min().copied().unwrap_or(ctx.now);
            let wait = (oldest + window() - ctx.now).num_milliseconds().max(0);
            return Err(TooManyCases {
                limit: c.per_hour,
                retry_after_secs: u64::try_from(wait).unwrap_or(0).div_ceil(1000).max(1),
            });
        }
        recent.push(ctx.now);
        Ok(vec![CaseIntakeEvent::Admitted(CaseAdmitted {
            case_id: c.case_id.clone(),
            recent,
        })])
    }

    fn apply(&mut self, event: &CaseIntakeEvent) {
        let CaseIntakeEvent::Admitted(e) = event;
        self.recent.clone_from(&e.recent);
    }
}

impl TailState for CaseIntake {
    fn from_last(event: &CaseIntakeEvent) -> Self {
        let mut s = Self::default();
        s.apply(event);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{Actor, Role};
    use crate::ids::UserId;

    fn at(now: DateTime<Utc>) -> CommandContext {
        CommandContext {
            actor: Actor {
                user_id: UserId::parse("c").unwrap(),
                role: Role::Customer,
            },
            now,
        }
    }

    #[test]
    fn the_hour_admits_the_limit_then_says_when_the_next_fits() {
        let start = Utc::now();
        let mut intake = CaseIntake::default();
        for i in 0..3 {
            let admit = Admit {
                case_id: format!("c{i}"),
                per_hour: 3,
            };
            let now = start + Duration::minutes(i * 10);
            for e in intake.decide(&admit, &at(now)).unwrap() {
                intake = CaseIntake::from_last(&e);
            }
        }
        let admit = Admit {
            case_id: "c4".into(),
            per_hour: 3,
        };
        let refused = intake
            .decide(&admit, &at(start + Duration::minutes(30)))
            .unwrap_err();
        assert_eq!(refused.limit, 3);
        assert_eq!(refused.retry_after_secs, 30 * 60);
        // An hour after the first, one place is free again.
        let later = start + Duration::minutes(60) + Duration::seconds(1);
        let events = intake.decide(&admit, &at(later)).unwrap();
        let CaseIntakeEvent::Admitted(e) = &events[0];
        assert_eq!(e.recent.len(), 3, "the first fell out of the window");
    }
}
