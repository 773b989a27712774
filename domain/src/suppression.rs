//! A tenant's suppression of one email recipient: after a mail server refused a message to
//! them for good (a 5xx reply), nothing more is sent to that address until an ADMIN lifts
//! it. One stream per recipient (named by `Email::reservation_id`), whose last event holds
//! its whole state.

use crate::aggregate::{Aggregate, CommandContext, TailState};
use crate::ids::UserId;
use crate::user::Email;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SuppressionCommand {
    /// The server refused `message_id` for good with `reply`.
    Suppress {
        recipient: Email,
        message_id: String,
        reply: String,
    },
    /// An ADMIN lets the recipient receive mail again.
    Lift { recipient: Email },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientSuppressed {
    pub recipient: Email,
    /// The message the server refused.
    pub message_id: String,
    /// The server's reply.
    pub reply: String,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuppressionLifted {
    pub recipient: Email,
    pub lifted_by: UserId,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

crate::domain_events!(SuppressionEvent, "suppression" {
    Suppressed(RecipientSuppressed) = "RecipientSuppressed",
    Lifted(SuppressionLifted) = "SuppressionLifted",
});

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SuppressionError {
    #[error("the recipient is not suppressed")]
    NotSuppressed,
}

/// Whether a recipient is suppressed, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Suppression {
    pub suppressed: Option<RecipientSuppressed>,
}

impl Aggregate for Suppression {
    const KIND: &'static str = "suppression";
    type Command = SuppressionCommand;
    type Event = SuppressionEvent;
    type Error = SuppressionError;

    fn decide(
        &self,
        command: &SuppressionCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<SuppressionEvent>, SuppressionError> {
        match command {
            // Suppressed already: the first refusal stands, nothing new is said.
            SuppressionCommand::Suppress { .. } if self.suppressed.is_some() => Ok(vec![]),
            SuppressionCommand::Suppress {
                recipient,
                message_id,
                reply,
            } => Ok(vec![SuppressionEvent::Suppressed(RecipientSuppressed {
                recipient: recipient.clone(),
                message_id: message_id.clone(),
                reply: reply.clone(),
                at: ctx.now,
            })]),
            SuppressionCommand::Lift { recipient } => {
                if self.suppressed.is_none() {
                    return Err(SuppressionError::NotSuppressed);
                }
                Ok(vec![SuppressionEvent::Lifted(SuppressionLifted {
                    recipient: recipient.clone(),
                    lifted_by: ctx.actor.user_id.clone(),
                    at: ctx.now,
                })])
            }
        }
    }

    fn apply(&mut self, event: &SuppressionEvent) {
        *self = Self::from_last(event);
    }
}

impl TailState for Suppression {
    fn from_last(event: &SuppressionEvent) -> Self {
        match event {
            SuppressionEvent::Suppressed(e) => Self {
                suppressed: Some(e.clone()),
            },
            SuppressionEvent::Lifted(_) => Self { suppressed: None },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{Actor, Role};

    fn ctx() -> CommandContext {
        CommandContext {
            actor: Actor {
                user_id: UserId::parse("root").unwrap(),
                role: Role::Admin,
            },
            now: Utc::now(),
        }
    }

    #[test]
    fn a_refusal_suppresses_once_and_a_lift_ends_it() {
        let recipient = Email::parse("gone@bank.test").unwrap();
        let mut s = Suppression::default();
        let lift = SuppressionCommand::Lift {
            recipient: recipient.clone(),
        };
        assert_eq!(
            s.decide(&lift, &ctx()),
            Err(SuppressionError::NotSuppressed)
        );
        let suppress = |id: &str| SuppressionCommand::Suppress {
            recipient: recipient.clone(),
            message_id: id.into(),
            reply: "550 5.1.1 no such user".into(),
        };
        let events = s.decide(&suppress("m1"), &ctx()).unwrap();
        assert_eq!(events.len(), 1);
        s.apply(&events[0]);
        assert_eq!(s.suppressed.as_ref().unwrap().message_id, "m1");
        assert!(s.decide(&suppress("m2"), &ctx()).unwrap().is_empty());
        let events = s.decide(&lift, &ctx()).unwrap();
        s.apply(&events[0]);
        assert_eq!(s, Suppression::default());
    }
}
