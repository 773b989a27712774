//! The Message aggregate (seed 002's `send` action): an email queued QUEUED and sent by the
//! mail worker in attempts, as `commands::attempts::drive` runs them: each attempt claimed
//! with MessageSendStarted at the stream's expected version (SENDING), ended by
//! MessageSent (SENT, with the server's reply), by MessageAttemptFailed with when the next
//! attempt comes (a 4xx reply, a connection error), or by MessageFailed (FAILED: a 5xx
//! reply, at once, or the last attempt). A message whose body an AI query writes names it
//! and waits, QUEUED, until MessageComposed records the answer as its body (or is
//! abandoned, FAILED, when the query fails); such a message has the query's id.

use crate::aggregate::{Aggregate, CommandContext};
use crate::ids::{UserId, ValidationError};
use crate::rules::TextRule;
use crate::user::Email;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An email's subject: one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject(String);

impl Subject {
    pub const RULE: TextRule = TextRule {
        not_blank: true,
        no_control: true,
        ..TextRule::chars(
            1,
            200,
            "The email's subject: one line of 1 to 200 characters.",
        )
    };

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        Self::RULE.check("subject", value)?;
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::rules::text_serde!(Subject);
crate::rules::text_schema!(Subject, "Subject");

/// An email's body: plain text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body(String);

impl Body {
    pub const RULE: TextRule = TextRule {
        not_blank: true,
        ..TextRule::chars(
            1,
            100_000,
            "The email's body, plain text: 1 to 100,000 characters.",
        )
    };

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        Self::RULE.check("body", value)?;
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::rules::text_serde!(Body);
crate::rules::text_schema!(Body, "Body");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = MessageStatus))]
#[serde(rename_all = "UPPERCASE")]
pub enum MessageStatus {
    Queued,
    Sending,
    Sent,
    Failed,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Sending => "SENDING",
            Self::Sent => "SENT",
            Self::Failed => "FAILED",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Sent | Self::Failed)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageCommand {
    /// A new message: with its body, or with the AI query that is to write it.
    Queue {
        message_id: String,
        recipient: Email,
        subject: Subject,
        body: Option<Body>,
        /// The AI query that writes the body, if one does.
        ai_query_id: Option<String>,
    },
    /// The AI query's answer becomes the body of a message queued without one.
    Compose { body: Body },
    /// A message that cannot be sent at all (its AI query failed): FAILED with `reason`.
    Abandon { reason: String },
    /// Claims attempt `attempt`, which must be the next one.
    Start { attempt: u32 },
    /// The server accepted the message in attempt `attempt`.
    Sent { attempt: u32, reply: String },
    /// Attempt `attempt` failed with `reply`; another comes after `retry_at` when set, else
    /// the message has failed for good.
    Fail {
        attempt: u32,
        reply: String,
        retry_at: Option<DateTime<Utc>>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageQueued {
    pub message_id: String,
    pub recipient: Email,
    pub subject: Subject,
    /// Absent while an AI query writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Body>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai_query_id: Option<String>,
    pub queued_by: UserId,
    #[serde(with = "crate::time::rfc3339")]
    pub queued_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageComposed {
    pub body: Body,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageSendStarted {
    pub attempt: u32,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageSent {
    pub attempt: u32,
    /// The server's reply to the end of the data.
    pub reply: String,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageAttemptFailed {
    pub attempt: u32,
    pub reply: String,
    #[serde(with = "crate::time::rfc3339")]
    pub retry_at: DateTime<Utc>,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageFailed {
    pub attempt: u32,
    pub reply: String,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

crate::domain_events!(MessageEvent, "message" {
    Queued(MessageQueued) = "MessageQueued",
    Composed(MessageComposed) = "MessageComposed",
    Started(MessageSendStarted) = "MessageSendStarted",
    Sent(MessageSent) = "MessageSent",
    AttemptFailed(MessageAttemptFailed) = "MessageAttemptFailed",
    Failed(MessageFailed) = "MessageFailed",
});

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("the message already exists")]
    AlreadyExists,
    #[error("no such message")]
    NotFound,
    #[error("the message is {}", .0.as_str())]
    Finished(MessageStatus),
    /// Someone else holds this attempt, or the attempt named is not the current one.
    #[error("attempt {attempt} is not the message's next or current attempt (it has had {had})")]
    NotThisAttempt { attempt: u32, had: u32 },
    #[error("the message has a body already")]
    AlreadyComposed,
    #[error("the message has no body yet: its AI query is still writing it")]
    NotComposed,
    #[error("a message needs a body, or an AI query to write it")]
    NoBody,
}

impl From<crate::attempt::WrongAttempt> for MessageError {
    fn from(w: crate::attempt::WrongAttempt) -> Self {
        Self::NotThisAttempt {
            attempt: w.attempt,
            had: w.had,
        }
    }
}

/// A message as folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub queued: Option<MessageQueued>,
    /// The body to send: queued with the message, or composed by its AI query.
    pub body: Option<Body>,
    pub status: Option<MessageStatus>,
    /// Attempts claimed so far.
    pub attempts: u32,
    /// Whether the last claimed attempt has ended.
    pub attempt_open: bool,
    pub sent_at: Option<DateTime<Utc>>,
    /// The server's last reply (or the connection's error).
    pub reply: Option<String>,
    pub retry_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl Message {
    fn live(&self) -> Result<MessageStatus, MessageError> {
        match self.status {
            None => Err(MessageError::NotFound),
            Some(s) if s.is_final() => Err(MessageError::Finished(s)),
            Some(s) => Ok(s),
        }
    }

    /// The attempt named must be the one open now.
    fn current(&self, attempt: u32) -> Result<(), MessageError> {
        self.live()?;
        crate::attempt::check_current(self.attempts, self.attempt_open, attempt)?;
        Ok(())
    }
}

impl Aggregate for Message {
    const KIND: &'static str = "message";
    type Command = MessageCommand;
    type Event = MessageEvent;
    type Error = MessageError;

    fn decide(
        &self,
        command: &MessageCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<MessageEvent>, MessageError> {
        match command {
            MessageCommand::Queue {
                message_id,
                recipient,
                subject,
                body,
                ai_query_id,
            } => {
                if self.queued.is_some() {
                    return Err(MessageError::AlreadyExists);
                }
                if body.is_none() && ai_query_id.is_none() {
                    return Err(MessageError::NoBody);
                }
                Ok(vec![MessageEvent::Queued(MessageQueued {
                    message_id: message_id.clone(),
                    recipient: recipient.clone(),
                    subject: subject.clone(),
                    body: body.clone(),
                    ai_query_id: ai_query_id.clone(),
                    queued_by: ctx.actor.user_id.clone(),
                    queued_at: ctx.now,
                })])
            }
            MessageCommand::Compose { body } => {
                self.live()?;
                if self.body.is_some() {
                    return Err(MessageError::AlreadyComposed);
                }
                Ok(vec![MessageEvent::Composed(MessageComposed {
                    body: body.clone(),
                    at: ctx.now,
                })])
            }
            MessageCommand::Abandon { reason } => {
                self.live()?;
                Ok(vec![MessageEvent::Failed(MessageFailed {
                    attempt: self.attempts,
                    reply: reason.clone(),
                    at: ctx.now,
                })])
            }
            MessageCommand::Start { attempt } => {
                self.live()?;
                if self.body.is_none() {
                    return Err(MessageError::NotComposed);
                }
                crate::attempt::check_next(self.attempts, *attempt)?;
                Ok(vec![MessageEvent::Started(MessageSendStarted {
                    attempt: *attempt,
                    at: ctx.now,
                })])
            }
            MessageCommand::Sent { attempt, reply } => {
                self.current(*attempt)?;
                Ok(vec![MessageEvent::Sent(MessageSent {
                    attempt: *attempt,
                    reply: reply.clone(),
                    at: ctx.now,
                })])
            }
            MessageCommand::Fail {
                attempt,
                reply,
                retry_at,
            } => {
                self.current(*attempt)?;
                Ok(vec![match retry_at {
                    Some(retry_at) => MessageEvent::AttemptFailed(MessageAttemptFailed {
                        attempt: *attempt,
                        reply: reply.clone(),
                        retry_at: *retry_at,
                        at: ctx.now,
                    }),
                    None => MessageEvent::Failed(MessageFailed {
                        attempt: *attempt,
                        reply: reply.clone(),
                        at: ctx.now,
                    }),
                }])
            }
        }
    }

    fn apply(&mut self, event: &MessageEvent) {
        match event {
            MessageEvent::Queued(e) => {
                self.status = Some(MessageStatus::Queued);
                self.updated_at = Some(e.queued_at);
                self.body.clone_from(&e.body);
                self.queued = Some(e.clone());
            }
            MessageEvent::Composed(e) => {
                self.body = Some(e.body.clone());
                self.updated_at = Some(e.at);
            }
            MessageEvent::Started(e) => {
                self.status = Some(MessageStatus::Sending);
                self.attempts = e.attempt;
                self.attempt_open = true;
                self.retry_at = None;
                self.updated_at = Some(e.at);
            }
            MessageEvent::Sent(e) => {
                self.status = Some(MessageStatus::Sent);
                self.attempt_open = false;
                self.reply = Some(e.reply.clone());
                self.sent_at = Some(e.at);
                self.updated_at = Some(e.at);
            }
            MessageEvent::AttemptFailed(e) => {
                self.attempt_open = false;
                self.reply = Some(e.reply.clone());
                self.retry_at = Some(e.retry_at);
                self.updated_at = Some(e.at);
            }
            MessageEvent::Failed(e) => {
                self.status = Some(MessageStatus::Failed);
                self.attempt_open = false;
                self.reply = Some(e.reply.clone());
                self.updated_at = Some(e.at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DomainEvent;
    use crate::aggregate::{Actor, Role};

    fn ctx() -> CommandContext {
        CommandContext {
            actor: Actor {
                user_id: UserId::parse("clerk").unwrap(),
                role: Role::Member,
            },
            now: Utc::now(),
        }
    }

    fn run(m: &mut Message, c: MessageCommand) -> Result<Vec<MessageEvent>, MessageError> {
        let events = m.decide(&c, &ctx())?;
        for e in &events {
            let stored = MessageEvent::from_stored(e.event_type(), 1, &e.to_payload()).unwrap();
            m.apply(&stored);
        }
        Ok(events)
    }

    fn queued() -> Message {
        let mut m = Message::default();
        run(
            &mut m,
            MessageCommand::Queue {
                message_id: "m1".into(),
                recipient: Email::parse("Ayesha@Karachi.test").unwrap(),
                subject: Subject::parse("Your statement").unwrap(),
                body: Some(Body::parse("Attached.").unwrap()),
                ai_query_id: None,
            },
        )
        .unwrap();
        m
    }

    #[test]
    fn a_message_is_sent_in_claimed_attempts() {
        let mut m = queued();
        assert_eq!(m.status, Some(MessageStatus::Queued));
        assert_eq!(
            m.queued.as_ref().unwrap().recipient.as_str(),
            "ayesha@karachi.test"
        );
        run(&mut m, MessageCommand::Start { attempt: 1 }).unwrap();
        assert_eq!(
            run(&mut m, MessageCommand::Start { attempt: 1 }),
            Err(MessageError::NotThisAttempt { attempt: 1, had: 1 }),
            "an attempt is claimed once"
        );
        let retry_at = Utc::now();
        run(
            &mut m,
            MessageCommand::Fail {
                attempt: 1,
                reply: "451 4.7.1 try again later".into(),
                retry_at: Some(retry_at),
            },
        )
        .unwrap();
        assert_eq!(m.status, Some(MessageStatus::Sending));
        assert_eq!(m.retry_at, Some(retry_at));
        run(&mut m, MessageCommand::Start { attempt: 2 }).unwrap();
        run(
            &mut m,
            MessageCommand::Sent {
                attempt: 2,
                reply: "250 2.0.0 Ok: queued".into(),
            },
        )
        .unwrap();
        assert_eq!(m.status, Some(MessageStatus::Sent));
        assert!(m.sent_at.is_some());
        assert_eq!(
            run(&mut m, MessageCommand::Start { attempt: 3 }),
            Err(MessageError::Finished(MessageStatus::Sent))
        );
    }

    #[test]
    fn a_permanent_failure_ends_the_message() {
        let mut m = queued();
        run(&mut m, MessageCommand::Start { attempt: 1 }).unwrap();
        run(
            &mut m,
            MessageCommand::Fail {
                attempt: 1,
                reply: "550 5.1.1 no such user".into(),
                retry_at: None,
            },
        )
        .unwrap();
        assert_eq!(m.status, Some(MessageStatus::Failed));
        assert_eq!(m.reply.as_deref(), Some("550 5.1.1 no such user"));
    }

    #[test]
    fn a_message_written_by_an_ai_query_waits_for_its_body() {
        let mut m = Message::default();
        let queue = |ai_query_id: Option<&str>| MessageCommand::Queue {
            message_id: "q1".into(),
            recipient: Email::parse("ayesha@karachi.test").unwrap(),
            subject: Subject::parse("Your summary").unwrap(),
            body: None,
            ai_query_id: ai_query_id.map(str::to_owned),
        };
        assert_eq!(run(&mut m, queue(None)), Err(MessageError::NoBody));
        run(&mut m, queue(Some("q1"))).unwrap();
        assert_eq!(
            run(&mut m, MessageCommand::Start { attempt: 1 }),
            Err(MessageError::NotComposed)
        );
        let body = Body::parse("Dear Ayesha, ...").unwrap();
        run(&mut m, MessageCommand::Compose { body: body.clone() }).unwrap();
        assert_eq!(m.body, Some(body.clone()));
        assert_eq!(
            run(&mut m, MessageCommand::Compose { body }),
            Err(MessageError::AlreadyComposed)
        );
        run(&mut m, MessageCommand::Start { attempt: 1 }).unwrap();
        let mut abandoned = Message::default();
        run(&mut abandoned, queue(Some("q1"))).unwrap();
        run(
            &mut abandoned,
            MessageCommand::Abandon {
                reason: "the AI query failed".into(),
            },
        )
        .unwrap();
        assert_eq!(abandoned.status, Some(MessageStatus::Failed));
    }

    #[test]
    fn a_subject_is_one_line() {
        assert!(Subject::parse("Hello\r\nBcc: everyone@example.com").is_err());
        assert!(Subject::parse("  ").is_err());
        assert!(Body::parse("line one\nline two").is_ok());
    }
}
