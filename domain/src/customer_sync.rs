//! Customer syncs from Salesforce (seed 000's manual and scheduled sync, seed 001's
//! retries and graceful degradation). A run is its own stream (`CustomerSync`): started,
//! progressed page by page, completed or failed with its counts and reason. The tenant's
//! `SyncSlot` lets one run at a time and keeps the watermark: the (SystemModstamp, Id) of
//! the last record a run wrote, from which the next incremental run reads, so a failed run
//! keeps what it wrote and the next one resumes there.

use crate::aggregate::{Aggregate, CommandContext, TailState};
use crate::ids::UserId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where an incremental read resumes: the last record written, by (SystemModstamp, Id).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Watermark {
    #[serde(with = "crate::time::rfc3339")]
    pub system_modstamp: DateTime<Utc>,
    pub id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Every Account, and every deletion.
    Full,
    /// What changed since the watermark (with a short look-back).
    Incremental,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = SyncStatus))]
#[serde(rename_all = "UPPERCASE")]
pub enum SyncStatus {
    Running,
    Completed,
    Failed,
}

impl SyncStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
        }
    }
}

/// What a run did with the records it read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SyncCounts {
    /// Records read from Salesforce (deletions included).
    pub fetched: u64,
    pub imported: u64,
    pub updated: u64,
    pub deleted: u64,
    /// Read again with nothing changed: no event written.
    pub unchanged: u64,
    /// Portal cases that agents changed in Salesforce (status, new comments).
    #[serde(default)]
    pub cases_updated: u64,
    /// Files linked to customers, new or changed.
    #[serde(default)]
    pub documents_synced: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncCommand {
    Start {
        sync_id: String,
        mode: SyncMode,
        since: Option<Watermark>,
    },
    Progress {
        counts: SyncCounts,
        watermark: Option<Watermark>,
    },
    Complete {
        counts: SyncCounts,
        watermark: Option<Watermark>,
    },
    Fail {
        error: String,
        counts: SyncCounts,
        watermark: Option<Watermark>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerSyncStarted {
    pub sync_id: String,
    pub mode: SyncMode,
    pub since: Option<Watermark>,
    pub started_by: UserId,
    #[serde(with = "crate::time::rfc3339")]
    pub started_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerSyncProgressed {
    pub counts: SyncCounts,
    pub watermark: Option<Watermark>,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerSyncCompleted {
    pub counts: SyncCounts,
    pub watermark: Option<Watermark>,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerSyncFailed {
    pub error: String,
    pub counts: SyncCounts,
    pub watermark: Option<Watermark>,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

crate::domain_events!(SyncEvent, "customer sync" {
    Started(CustomerSyncStarted) = "CustomerSyncStarted",
    Progressed(CustomerSyncProgressed) = "CustomerSyncProgressed",
    Completed(CustomerSyncCompleted) = "CustomerSyncCompleted",
    Failed(CustomerSyncFailed) = "CustomerSyncFailed",
});

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("the sync already exists")]
    AlreadyExists,
    #[error("no such sync")]
    NotFound,
    #[error("the sync has ended ({})", .0.as_str())]
    Ended(SyncStatus),
}

/// A run as folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerSync {
    pub started: Option<CustomerSyncStarted>,
    pub status: Option<SyncStatus>,
    pub counts: SyncCounts,
    pub watermark: Option<Watermark>,
    pub error: Option<String>,
    pub completed_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl Aggregate for CustomerSync {
    const KIND: &'static str = "customersync";
    type Command = SyncCommand;
    type Event = SyncEvent;
    type Error = SyncError;

    fn decide(&self, c: &SyncCommand, ctx: &CommandContext) -> Result<Vec<SyncEvent>, SyncError> {
        if let SyncCommand::Start {
            sync_id,
            mode,
            since,
        } = c
        {
            if self.started.is_some() {
                return Err(SyncError::AlreadyExists);
            }
            return Ok(vec![SyncEvent::Started(CustomerSyncStarted {
                sync_id: sync_id.clone(),
                mode: *mode,
                since: since.clone(),
                started_by: ctx.actor.user_id.clone(),
                started_at: ctx.now,
            })]);
        }
        match self.status {
            None => return Err(SyncError::NotFound),
            Some(SyncStatus::Running) => {}
            Some(s) => return Err(SyncError::Ended(s)),
        }
        Ok(vec![match c {
            SyncCommand::Start { .. } => return Err(SyncError::AlreadyExists),
            SyncCommand::Progress { counts, watermark } => {
                SyncEvent::Progressed(CustomerSyncProgressed {
                    counts: *counts,
                    watermark: watermark.clone(),
                    at: ctx.now,
                })
            }
            SyncCommand::Complete { counts, watermark } => {
                SyncEvent::Completed(CustomerSyncCompleted {
                    counts: *counts,
                    watermark: watermark.clone(),
                    at: ctx.now,
                })
            }
            SyncCommand::Fail {
                error,
                counts,
                watermark,
            } => SyncEvent::Failed(CustomerSyncFailed {
                error: error.clone(),
                counts: *counts,
                watermark: watermark.clone(),
                at: ctx.now,
            }),
        }])
    }

    fn apply(&mut self, e: &SyncEvent) {
        match e {
            SyncEvent::Started(s) => {
                self.status = Some(SyncStatus::Running);
                self.watermark = s.since.clone();
                self.updated_at = Some(s.started_at);
                self.started = Some(s.clone());
            }
            SyncEvent::Progressed(p) => {
                self.counts = p.counts;
                self.watermark = p.watermark.clone();
                self.updated_at = Some(p.at);
            }
            SyncEvent::Completed(d) => {
                self.status = Some(SyncStatus::Completed);
                self.counts = d.counts;
                self.watermark = d.watermark.clone();
                self.completed_at = Some(d.at);
                self.updated_at = Some(d.at);
            }
            SyncEvent::Failed(f) => {
                self.status = Some(SyncStatus::Failed);
                self.counts = f.counts;
                self.watermark = f.watermark.clone();
                self.error = Some(f.error.clone());
                self.completed_at = Some(f.at);
                self.updated_at = Some(f.at);
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotCommand {
    /// Takes the slot for `sync_id`, unless a run holds it that started less than
    /// `stale_after` ago.
    Take {
        sync_id: String,
        stale_after: chrono::Duration,
    },
    /// Moves the watermark on, while `sync_id` holds the slot.
    Advance {
        sync_id: String,
        watermark: Watermark,
    },
    /// Frees the slot `sync_id` holds.
    /// The run ends; `completed` when it read everything (not failed).
    Release { sync_id: String, completed: bool },
}

/// Every slot event holds the slot's whole state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotState {
    pub running: Option<String>,
    #[serde(default, with = "crate::time::rfc3339::option")]
    pub running_since: Option<DateTime<Utc>>,
    pub watermark: Option<Watermark>,
    /// When the last run that read everything ended: how fresh the read models are.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::time::rfc3339::option"
    )]
    pub last_completed_at: Option<DateTime<Utc>>,
    /// When the last run (ended or not) took the slot: when a schedule is next due.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::time::rfc3339::option"
    )]
    pub last_taken_at: Option<DateTime<Utc>>,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

crate::domain_events!(SlotEvent, "sync slot" {
    Taken(SlotState) = "SyncSlotTaken",
    Advanced(SlotState) = "SyncSlotAdvanced",
    Released(SlotState) = "SyncSlotReleased",
});

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    #[error("sync {0} is running; one sync per tenant at a time")]
    Busy(String),
    #[error("sync {0} does not hold the slot")]
    NotHeld(String),
}

/// The tenant's sync slot (`syncslot-salesforce`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncSlot {
    pub running: Option<String>,
    pub running_since: Option<DateTime<Utc>>,
    pub watermark: Option<Watermark>,
    pub last_completed_at: Option<DateTime<Utc>>,
    pub last_taken_at: Option<DateTime<Utc>>,
}

impl SyncSlot {
    /// Whether a run every `period` is due at `now`: the slot is free (or held by a run
    /// that has gone stale) and the last run took it at least `period` ago.
    pub fn due(
        &self,
        now: DateTime<Utc>,
        period: chrono::Duration,
        stale_after: chrono::Duration,
    ) -> bool {
        let free = match self.running_since {
            Some(since) if self.running.is_some() => now - since >= stale_after,
            _ => true,
        };
        free && self.last_taken_at.is_none_or(|at| now - at >= period)
    }

    fn state(&self, at: DateTime<Utc>) -> SlotState {
        SlotState {
            running: self.running.clone(),
            running_since: self.running_since,
            watermark: self.watermark.clone(),
            last_completed_at: self.last_completed_at,
            last_taken_at: self.last_taken_at,
            at,
        }
    }
}

impl Aggregate for SyncSlot {
    const KIND: &'static str = "syncslot";
    type Command = SlotCommand;
    type Event = SlotEvent;
    type Error = SlotError;

    fn decide(&self, c: &SlotCommand, ctx: &CommandContext) -> Result<Vec<SlotEvent>, SlotError> {
        let mut next = self.clone();
        let event = match c {
            SlotCommand::Take {
                sync_id,
                stale_after,
            } => {
                if let (Some(running), Some(since)) = (&self.running, self.running_since)
                    && ctx.now - since < *stale_after
                {
                    return Err(SlotError::Busy(running.clone()));
                }
                next.running = Some(sync_id.clone());
                next.running_since = Some(ctx.now);
                next.last_taken_at = Some(ctx.now);
                SlotEvent::Taken
            }
            SlotCommand::Advance { sync_id, watermark } => {
                if self.running.as_ref() != Some(sync_id) {
                    return Err(SlotError::NotHeld(sync_id.clone()));
                }
                if self.watermark.as_ref().is_some_and(|w| w >= watermark) {
                    return Ok(vec![]);
                }
                next.watermark = Some(watermark.clone());
                SlotEvent::Advanced
            }
            SlotCommand::Release { sync_id, completed } => {
                if self.running.as_ref() != Some(sync_id) {
                    return Err(SlotError::NotHeld(sync_id.clone()));
                }
                next.running = None;
                next.running_since = None;
                if *completed {
                    next.last_completed_at = Some(ctx.now);
                }
                SlotEvent::Released
            }
        };
        Ok(vec![event(next.state(ctx.now))])
    }

    fn apply(&mut self, e: &SlotEvent) {
        *self = Self::from_last(e);
    }
}

impl TailState for SyncSlot {
    fn from_last(e: &SlotEvent) -> Self {
        let (SlotEvent::Taken(s) | SlotEvent::Advanced(s) | SlotEvent::Released(s)) = e;
        Self {
            running: s.running.clone(),
            running_since: s.running_since,
            watermark: s.watermark.clone(),
            last_completed_at: s.last_completed_at,
            last_taken_at: s.last_taken_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn a_scheduled_run_is_due_a_period_after_the_last_one_took_the_slot() {
        let t0 = Utc::now();
        let (hour, stale) = (Duration::hours(1), Duration::hours(6));
        let mut slot = SyncSlot::default();
        assert!(slot.due(t0, hour, stale), "never run: due at once");
        slot.running = Some("run-1".into());
        slot.running_since = Some(t0);
        slot.last_taken_at = Some(t0);
        assert!(
            !slot.due(t0 + Duration::hours(2), hour, stale),
            "still running"
        );
        assert!(slot.due(t0 + Duration::hours(7), hour, stale), "stale");
        slot.running = None;
        slot.running_since = None;
        assert!(!slot.due(t0 + Duration::minutes(59), hour, stale));
        assert!(slot.due(t0 + Duration::minutes(60), hour, stale));
    }
}
