//! The Case aggregate (seed 001's support cases): a customer's contact (or staff for them)
//! opens a case, NEW; staff move it through WORKING, ESCALATED and CLOSED with comments;
//! its delivery to the tenant's Salesforce org ends delivered (with the Salesforce Id) or
//! failed (with the reason no retry can fix). Changes made by agents in Salesforce come in
//! through the sync as CaseUpdated with source `salesforce`.

use crate::aggregate::{Aggregate, CommandContext};
use crate::ids::{UserId, ValidationError};
use crate::rules::TextRule;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub const SUBJECT_MAX_CHARS: usize = 255;
/// The longest description: 32 KiB of UTF-8.
pub const DESCRIPTION_MAX_BYTES: usize = 32 * 1024;
pub const COMMENT_MAX_CHARS: usize = 4000;

/// What the case is about: 1-255 characters, no control characters, kept trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseSubject(String);

impl CaseSubject {
    pub const RULE: TextRule = TextRule {
        no_control: true,
        not_blank: true,
        ..TextRule::chars(
            1,
            SUBJECT_MAX_CHARS,
            "What the case is about; surrounding whitespace is removed.",
        )
    };

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        Self::RULE.check("subject", value)?;
        Ok(Self(value.trim().to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::rules::text_serde!(CaseSubject);
crate::rules::text_schema!(CaseSubject, "CaseSubject");

/// The customer's account of the problem: free text of at most 32 KiB (UTF-8).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CaseDescription(String);

impl CaseDescription {
    pub const RULE: TextRule = TextRule::chars(
        0,
        DESCRIPTION_MAX_BYTES,
        "Free text, at most 32 KiB (32,768 bytes) of UTF-8.",
    );

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        Self::RULE.check("description", value)?;
        if value.len() > DESCRIPTION_MAX_BYTES {
            return Err(ValidationError::new(
                "description",
                format!(
                    "{} bytes of UTF-8; at most {DESCRIPTION_MAX_BYTES} (32 KiB)",
                    value.len()
                ),
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::rules::text_serde!(CaseDescription);
crate::rules::text_schema!(CaseDescription, "CaseDescription");

/// A comment on a case: 1-4000 characters, not blank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseComment(String);

impl CaseComment {
    pub const RULE: TextRule = TextRule {
        not_blank: true,
        ..TextRule::chars(1, COMMENT_MAX_CHARS, "A comment on the case.")
    };

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        Self::RULE.check("comment", value)?;
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::rules::text_serde!(CaseComment);
crate::rules::text_schema!(CaseComment, "CaseComment");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum CasePriority {
    Low,
    #[default]
    Medium,
    High,
}

impl CasePriority {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "low" => Some(Self::Low),
            "medium" => Some(Self::Medium),
            "high" => Some(Self::High),
            _ => None,
        }
    }

    /// Salesforce's picklist value of Case.Priority.
    pub fn salesforce(self) -> &'static str {
        match self {
            Self::Low => "Low",
            Self::Medium => "Medium",
            Self::High => "High",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "UPPERCASE")]
pub enum CaseStatus {
    #[default]
    New,
    Working,
    Escalated,
    Closed,
}

impl CaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "NEW",
            Self::Working => "WORKING",
            Self::Escalated => "ESCALATED",
            Self::Closed => "CLOSED",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "NEW" => Some(Self::New),
            "WORKING" => Some(Self::Working),
            "ESCALATED" => Some(Self::Escalated),
            "CLOSED" => Some(Self::Closed),
            _ => None,
        }
    }

    /// Salesforce's standard Case.Status picklist value.
    pub fn salesforce(self) -> &'static str {
        match self {
            Self::New => "New",
            Self::Working => "Working",
            Self::Escalated => "Escalated",
            Self::Closed => "Closed",
        }
    }

    /// The status a Salesforce Case.Status value stands for (ignoring case).
    pub fn from_salesforce(value: &str) -> Option<Self> {
        Self::parse(&value.to_ascii_uppercase())
    }
}

/// Where a change was made: in Chronicle (the portal, the staff API) or by an agent in
/// Salesforce (read by the sync).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = CaseChangeSource))]
#[serde(rename_all = "lowercase")]
pub enum Source {
    #[default]
    Chronicle,
    Salesforce,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseCommand {
    Open {
        case_id: String,
        customer_id: String,
        subject: CaseSubject,
        description: CaseDescription,
        priority: CasePriority,
    },
    /// A staff change: a new status, a comment, or both.
    Update {
        status: Option<CaseStatus>,
        comment: Option<CaseComment>,
    },
    /// What an agent changed in Salesforce, as the sync read it: the status there, the
    /// comments it has, and when the Case was last modified there. Only what differs from
    /// this case becomes an event, so a change Chronicle made itself is not echoed back;
    /// a status older than the last change made in Chronicle (not yet delivered) is not
    /// taken.
    Reconcile {
        status: Option<CaseStatus>,
        comments: Vec<RemoteComment>,
        modified_at: DateTime<Utc>,
    },
    /// Salesforce has the case (created or updated by the upsert), under this Id.
    MarkDelivered { salesforce_id: String },
    /// Salesforce refused the case for a reason no retry can fix.
    MarkDeliveryFailed { reason: String },
}

/// A comment of the Case in Salesforce (a CaseComment record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteComment {
    pub salesforce_id: String,
    pub body: String,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseOpened {
    pub case_id: String,
    pub customer_id: String,
    pub subject: CaseSubject,
    pub description: CaseDescription,
    pub priority: CasePriority,
    pub opened_by: UserId,
    #[serde(with = "crate::time::rfc3339")]
    pub opened_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseUpdated {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<CaseStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The Salesforce Id of a comment read from Salesforce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salesforce_comment_id: Option<String>,
    pub by: UserId,
    #[serde(default)]
    pub source: Source,
    #[serde(with = "crate::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseDelivered {
    pub salesforce_id: String,
    #[serde(with = "crate::time::rfc3339")]
    pub delivered_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseDeliveryFailed {
    pub reason: String,
    #[serde(with = "crate::time::rfc3339")]
    pub failed_at: DateTime<Utc>,
}

crate::domain_events!(CaseEvent, "case" {
    Opened(CaseOpened) = "CaseOpened",
    Updated(CaseUpdated) = "CaseUpdated",
    Delivered(CaseDelivered) = "CaseDelivered",
    DeliveryFailed(CaseDeliveryFailed) = "CaseDeliveryFailed",
});

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaseError {
    #[error("the case already exists")]
    AlreadyExists,
    #[error("no such case")]
    NotFound,
}

/// One comment on a case, from either side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommentEntry {
    pub body: String,
    pub by: String,
    pub source: Source,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salesforce_id: Option<String>,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

/// Where the case stands with Salesforce.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = CaseDelivery))]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum Delivery {
    /// Not yet in Salesforce (a delivery is under way or waits for Salesforce to answer).
    #[default]
    Pending,
    Delivered {
        salesforce_id: String,
        #[serde(with = "crate::time::rfc3339")]
        at: DateTime<Utc>,
    },
    Failed {
        reason: String,
        #[serde(with = "crate::time::rfc3339")]
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Case {
    pub opened: Option<CaseOpened>,
    pub status: CaseStatus,
    pub comments: Vec<CommentEntry>,
    pub delivery: Delivery,
    pub updated_at: Option<DateTime<Utc>>,
    /// The last change made in Chronicle (the opening, a staff change).
    pub changed_here_at: Option<DateTime<Utc>>,
}

impl Case {
    fn knows_comment(&self, salesforce_id: &str) -> bool {
        self.comments
            .iter()
            .any(|c| c.salesforce_id.as_deref() == Some(salesforce_id))
    }
}

impl Aggregate for Case {
    const KIND: &'static str = "case";
    type Command = CaseCommand;
    type Event = CaseEvent;
    type Error = CaseError;

    fn decide(
        &self,
        command: &CaseCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<CaseEvent>, CaseError> {
        let by = ctx.actor.user_id.clone();
        if let CaseCommand::Open {
            case_id,
            customer_id,
            subject,
            description,
            priority,
        } = command
        {
            if self.opened.is_some() {
                return Err(CaseError::AlreadyExists);
            }
            return Ok(vec![CaseEvent::Opened(CaseOpened {
                case_id: case_id.clone(),
                customer_id: customer_id.clone(),
                subject: subject.clone(),
                description: description.clone(),
                priority: *priority,
                opened_by: by,
                opened_at: ctx.now,
            })]);
        }
        if self.opened.is_none() {
            return Err(CaseError::NotFound);
        }
        let updated = |status, comment, salesforce_comment_id, source| {
            CaseEvent::Updated(CaseUpdated {
                status,
                comment,
                salesforce_comment_id,
                by: by.clone(),
                source,
                updated_at: ctx.now,
            })
        };
        Ok(match command {
            CaseCommand::Open { .. } => unreachable!("decided above"),
            CaseCommand::Update { status, comment } => {
                let status = status.filter(|s| *s != self.status);
                if status.is_none() && comment.is_none() {
                    return Ok(Vec::new());
                }
                let comment = comment.as_ref().map(|c| c.as_str().to_owned());
                vec![updated(status, comment, None, Source::Chronicle)]
            }
            CaseCommand::Reconcile {
                status,
                comments,
                modified_at,
            } => {
                let mut events = Vec::new();
                let newer = self.changed_here_at.is_none_or(|here| *modified_at > here);
                if let Some(s) = status.filter(|s| *s != self.status && newer) {
                    events.push(updated(Some(s), None, None, Source::Salesforce));
                }
                for c in comments
                    .iter()
                    .filter(|c| !self.knows_comment(&c.salesforce_id))
                {
                    // A comment Chronicle wrote comes back with the same text: not new.
                    let ours = self
                        .comments
                        .iter()
                        .any(|o| o.source == Source::Chronicle && o.body == c.body);
                    if !ours {
                        events.push(updated(
                            None,
                            Some(c.body.clone()),
                            Some(c.salesforce_id.clone()),
                            Source::Salesforce,
                        ));
                    }
                }
                events
            }
            CaseCommand::MarkDelivered { salesforce_id } => match &self.delivery {
                Delivery::Delivered {
                    salesforce_id: s, ..
                } if s == salesforce_id => Vec::new(),
                _ => vec![CaseEvent::Delivered(CaseDelivered {
                    salesforce_id: salesforce_id.clone(),
                    delivered_at: ctx.now,
                })],
            },
            CaseCommand::MarkDeliveryFailed { reason } => match &self.delivery {
                Delivery::Pending => vec![CaseEvent::DeliveryFailed(CaseDeliveryFailed {
                    reason: reason.clone(),
                    failed_at: ctx.now,
                })],
                _ => Vec::new(),
            },
        })
    }

    fn apply(&mut self, event: &CaseEvent) {
        match event {
            CaseEvent::Opened(e) => {
                self.status = CaseStatus::New;
                self.updated_at = Some(e.opened_at);
                self.changed_here_at = Some(e.opened_at);
                self.opened = Some(e.clone());
            }
            CaseEvent::Updated(e) => {
                if let Some(s) = e.status {
                    self.status = s;
                }
                if let Some(body) = &e.comment {
                    self.comments.push(CommentEntry {
                        body: body.clone(),
                        by: e.by.to_string(),
                        source: e.source,
                        salesforce_id: e.salesforce_comment_id.clone(),
                        at: e.updated_at,
                    });
                }
                self.updated_at = Some(e.updated_at);
                if e.source == Source::Chronicle {
                    self.changed_here_at = Some(e.updated_at);
                }
            }
            CaseEvent::Delivered(e) => {
                self.delivery = Delivery::Delivered {
                    salesforce_id: e.salesforce_id.clone(),
                    at: e.delivered_at,
                };
            }
            CaseEvent::DeliveryFailed(e) => {
                self.delivery = Delivery::Failed {
                    reason: e.reason.clone(),
                    at: e.failed_at,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{Actor, Role};

    fn ctx(who: &str) -> CommandContext {
        CommandContext {
            actor: Actor {
                user_id: UserId::parse(who).unwrap(),
                role: Role::Customer,
            },
            now: Utc::now(),
        }
    }

    fn opened() -> Case {
        let mut case = Case::default();
        let open = CaseCommand::Open {
            case_id: "c1".into(),
            customer_id: "001A".into(),
            subject: CaseSubject::parse(" Broken login ").unwrap(),
            description: CaseDescription::parse("It fails").unwrap(),
            priority: CasePriority::High,
        };
        for e in case.decide(&open, &ctx("alice")).unwrap() {
            case.apply(&e);
        }
        case
    }

    #[test]
    fn a_case_opens_new_and_only_once() {
        let case = opened();
        assert_eq!(case.status, CaseStatus::New);
        assert_eq!(case.delivery, Delivery::Pending);
        assert_eq!(
            case.opened.as_ref().unwrap().subject.as_str(),
            "Broken login"
        );
        let again = CaseCommand::Open {
            case_id: "c1".into(),
            customer_id: "001A".into(),
            subject: CaseSubject::parse("x").unwrap(),
            description: CaseDescription::default(),
            priority: CasePriority::Low,
        };
        assert_eq!(
            case.decide(&again, &ctx("alice")),
            Err(CaseError::AlreadyExists)
        );
    }

    #[test]
    fn the_description_is_bounded_in_bytes() {
        assert!(CaseDescription::parse(&"a".repeat(DESCRIPTION_MAX_BYTES)).is_ok());
        assert!(CaseDescription::parse(&"a".repeat(DESCRIPTION_MAX_BYTES + 1)).is_err());
        // 4-byte characters: far fewer characters than the limit, too many bytes.
        assert!(CaseDescription::parse(&"😀".repeat(DESCRIPTION_MAX_BYTES / 4 + 1)).is_err());
    }

    #[test]
    fn reconciling_what_chronicle_wrote_is_no_change() {
        let mut case = opened();
        let update = CaseCommand::Update {
            status: Some(CaseStatus::Working),
            comment: Some(CaseComment::parse("Looking into it").unwrap()),
        };
        for e in case.decide(&update, &ctx("agent")).unwrap() {
            case.apply(&e);
        }
        let echo = CaseCommand::Reconcile {
            modified_at: Utc::now() + chrono::Duration::seconds(1),
            status: Some(CaseStatus::Working),
            comments: vec![RemoteComment {
                salesforce_id: "00a1".into(),
                body: "Looking into it".into(),
                at: Utc::now(),
            }],
        };
        assert!(case.decide(&echo, &ctx("sf")).unwrap().is_empty());
        // Salesforce's status from before the last change here is stale: not taken.
        let stale = CaseCommand::Reconcile {
            modified_at: Utc::now() - chrono::Duration::minutes(5),
            status: Some(CaseStatus::New),
            comments: Vec::new(),
        };
        assert!(case.decide(&stale, &ctx("sf")).unwrap().is_empty());
        let theirs = CaseCommand::Reconcile {
            modified_at: Utc::now() + chrono::Duration::seconds(2),
            status: Some(CaseStatus::Escalated),
            comments: vec![RemoteComment {
                salesforce_id: "00a2".into(),
                body: "Escalated to tier 2".into(),
                at: Utc::now(),
            }],
        };
        let events = case.decide(&theirs, &ctx("sf")).unwrap();
        assert_eq!(events.len(), 2);
        for e in &events {
            case.apply(e);
        }
        assert_eq!(case.status, CaseStatus::Escalated);
        assert!(
            case.decide(&theirs, &ctx("sf")).unwrap().is_empty(),
            "seen once"
        );
    }

    #[test]
    fn delivery_ends_once() {
        let mut case = opened();
        let failed = CaseCommand::MarkDeliveryFailed {
            reason: "REQUIRED_FIELD_MISSING".into(),
        };
        for e in case.decide(&failed, &ctx("w")).unwrap() {
            case.apply(&e);
        }
        assert!(matches!(case.delivery, Delivery::Failed { .. }));
        assert!(case.decide(&failed, &ctx("w")).unwrap().is_empty());
        let mut other = opened();
        let done = CaseCommand::MarkDelivered {
            salesforce_id: "500X".into(),
        };
        for e in other.decide(&done, &ctx("w")).unwrap() {
            other.apply(&e);
        }
        assert!(other.decide(&done, &ctx("w")).unwrap().is_empty());
        assert!(other.decide(&failed, &ctx("w")).unwrap().is_empty());
    }
}
