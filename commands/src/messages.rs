//! Email on the one pipeline. SendMessage queues a message if its recipient is not
//! suppressed and the day's `messages_per_day` has room (a unit of it is taken in the same
//! append); SendGeneratedMessage does the same for a body an AI query is to write,
//! submitting the query with it. The mail worker's steps (AdvanceMessage) claim and end
//! attempts; a permanent refusal suppresses the recipient in the same append, and
//! LiftSuppression (an ADMIN) ends that.

use crate::ai::{AiError, SubmitAiQuery};
use crate::handler::{CommandError, CommandHandler, CommandMeta};
use crate::pipeline::{Command, Tx};
use crate::tenancy::active_tenant;
use chrono::{DateTime, Utc};
use domain::message::{Body, Message, MessageCommand, MessageError, Subject};
use domain::quota::{day_of, next_day};
use domain::suppression::{Suppression, SuppressionCommand, SuppressionError};
use domain::tenant::TenantError;
use domain::user::Email;
use domain::{Aggregate, EventEnvelope, StreamId, Tier};
use std::sync::Arc;

/// Why an email command was refused.
#[derive(Debug, thiserror::Error)]
pub enum MessageCommandError {
    #[error(transparent)]
    Message(#[from] MessageError),
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error(transparent)]
    Suppression(#[from] SuppressionError),
    #[error(transparent)]
    Ai(#[from] AiError),
    #[error(
        "recipient: {recipient} is suppressed since {since}: a message to it was refused for good ({reply}); an ADMIN can lift it"
    )]
    Suppressed {
        recipient: String,
        reply: String,
        since: DateTime<Utc>,
    },
    #[error(
        "the tenant has queued its {limit} emails for today (the {tier} tier's messages_per_day); more fit from {resets_at}",
        tier = .tier.as_str()
    )]
    DailyLimit {
        limit: u32,
        tier: Tier,
        resets_at: DateTime<Utc>,
    },
}

impl From<std::convert::Infallible> for MessageCommandError {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}

fn lift<E: std::error::Error + 'static>(e: CommandError<E>) -> CommandError<MessageCommandError>
where
    MessageCommandError: From<E>,
{
    e.map_rejected(MessageCommandError::from)
}

fn rejected(e: impl Into<MessageCommandError>) -> CommandError<MessageCommandError> {
    CommandError::Rejected(e.into())
}

pub fn message_stream(id: &str) -> StreamId {
    StreamId::for_aggregate(Message::KIND, id)
}

/// The stream of a recipient's suppression in its tenant.
pub fn suppression_stream(recipient: &Email) -> StreamId {
    StreamId::for_aggregate(Suppression::KIND, recipient.reservation_id())
}

/// Whether `recipient` is suppressed in the tenant, and why.
pub async fn suppression_of(
    handler: &CommandHandler,
    tenant: &domain::TenantId,
    recipient: &Email,
) -> Result<Suppression, CommandError<MessageCommandError>> {
    let (s, _) = handler
        .tail_state::<Suppression>(tenant, &suppression_stream(recipient))
        .await
        .map_err(lift)?;
    Ok(s)
}

/// SendMessage: a new message, QUEUED for the mail worker.
pub struct SendMessage {
    pub message_id: String,
    /// The caller's tier, for a tenant that was never signed up.
    pub tier: Tier,
    pub recipient: Email,
    pub subject: Subject,
    /// `None` when `ai_query_id`'s answer is to be the body.
    pub body: Option<Body>,
    pub ai_query_id: Option<String>,
}

impl Command for SendMessage {
    type Output = Message;
    type Error = MessageCommandError;
    const NAME: &'static str = "message";

    async fn decide(&self, tx: &mut Tx<'_>) -> Result<Message, CommandError<MessageCommandError>> {
        let tenant = active_tenant::<MessageCommandError>(tx, self.tier).await?;
        let (suppression, _) = tx
            .load_tail::<Suppression>(&suppression_stream(&self.recipient))
            .await
            .map_err(lift)?;
        if let Some(s) = suppression.suppressed {
            return Err(rejected(MessageCommandError::Suppressed {
                recipient: s.recipient.as_str().to_owned(),
                reply: s.reply,
                since: s.at,
            }));
        }
        let now = tx.ctx().now;
        let limit = tenant.limits().messages_per_day;
        let today = day_of(now);
        if crate::quota::take::<MessageCommandError>(
            tx,
            ("messages_per_day", limit, &today),
            &self.message_id,
        )
        .await?
        .is_none()
        {
            return Err(rejected(MessageCommandError::DailyLimit {
                limit,
                tier: tenant.tier,
                resets_at: next_day(now),
            }));
        }
        let mut message = Message::default();
        let events = message
            .decide(
                &MessageCommand::Queue {
                    message_id: self.message_id.clone(),
                    recipient: self.recipient.clone(),
                    subject: self.subject.clone(),
                    body: self.body.clone(),
                    ai_query_id: self.ai_query_id.clone(),
                },
                tx.ctx(),
            )
            .map_err(rejected)?;
        tx.write::<Message>(&message_stream(&self.message_id), &events);
        for e in &events {
            message.apply(e);
        }
        Ok(message)
    }

    async fn replayed(
        &self,
        handler: &CommandHandler,
        meta: &CommandMeta,
        events: &[Arc<EventEnvelope>],
    ) -> Result<Message, CommandError<MessageCommandError>> {
        handler
            .replayed_of_kind::<Message>(meta, events)
            .await
            .map_err(lift)
    }
}

/// An AI query and the message its answer is to be the body of, in one append: the
/// query's checks (prompt length, the month's tokens) and the message's (suppression, the
/// day's messages) all pass, or nothing is written. The message has the query's id.
pub struct SendGeneratedMessage {
    pub query: SubmitAiQuery,
    pub recipient: Email,
    pub subject: Subject,
}

impl SendGeneratedMessage {
    fn message(&self) -> SendMessage {
        SendMessage {
            message_id: self.query.query_id.clone(),
            tier: self.query.tier,
            recipient: self.recipient.clone(),
            subject: self.subject.clone(),
            body: None,
            ai_query_id: Some(self.query.query_id.clone()),
        }
    }
}

impl Command for SendGeneratedMessage {
    type Output = Message;
    type Error = MessageCommandError;
    const NAME: &'static str = "message";

    async fn decide(&self, tx: &mut Tx<'_>) -> Result<Message, CommandError<MessageCommandError>> {
        self.query.decide(tx).await.map_err(lift)?;
        self.message().decide(tx).await
    }

    async fn replayed(
        &self,
        handler: &CommandHandler,
        meta: &CommandMeta,
        events: &[Arc<EventEnvelope>],
    ) -> Result<Message, CommandError<MessageCommandError>> {
        self.message().replayed(handler, meta, events).await
    }
}

/// A worker's step on a message (`Start`, `Sent`, `Fail`, `Compose`, `Abandon`). With
/// `suppress`, a final `Fail` (the server refused the message for good) also suppresses
/// its recipient. Fails with `NotThisAttempt` when another worker got there first.
pub struct AdvanceMessage {
    pub message_id: String,
    pub command: MessageCommand,
    pub suppress: bool,
}

impl Command for AdvanceMessage {
    type Output = Message;
    type Error = MessageCommandError;
    const NAME: &'static str = "message";

    async fn decide(&self, tx: &mut Tx<'_>) -> Result<Message, CommandError<MessageCommandError>> {
        let stream = message_stream(&self.message_id);
        let (mut message, _) = tx.load::<Message>(&stream).await.map_err(lift)?;
        let events = message.decide(&self.command, tx.ctx()).map_err(rejected)?;
        // A final failure (no retry) the server gave for good suppresses the recipient.
        if let (
            true,
            MessageCommand::Fail {
                retry_at: None,
                reply,
                ..
            },
            Some(queued),
        ) = (self.suppress, &self.command, &message.queued)
        {
            let recipient = queued.recipient.clone();
            let at = suppression_stream(&recipient);
            let (s, _) = tx.load_tail::<Suppression>(&at).await.map_err(lift)?;
            let reply = reply.clone();
            let suppressed = s
                .decide(
                    &SuppressionCommand::Suppress {
                        recipient,
                        message_id: self.message_id.clone(),
                        reply,
                    },
                    tx.ctx(),
                )
                .map_err(rejected)?;
            tx.write::<Suppression>(&at, &suppressed);
        }
        tx.write::<Message>(&stream, &events);
        for e in &events {
            message.apply(e);
        }
        Ok(message)
    }
}

/// An ADMIN lets a suppressed recipient receive mail again.
pub struct LiftSuppression {
    pub recipient: Email,
}

impl Command for LiftSuppression {
    type Output = ();
    type Error = MessageCommandError;
    const NAME: &'static str = "suppression";

    async fn decide(&self, tx: &mut Tx<'_>) -> Result<(), CommandError<MessageCommandError>> {
        let stream = suppression_stream(&self.recipient);
        let (s, _) = tx.load_tail::<Suppression>(&stream).await.map_err(lift)?;
        let events = s
            .decide(
                &SuppressionCommand::Lift {
                    recipient: self.recipient.clone(),
                },
                tx.ctx(),
            )
            .map_err(rejected)?;
        tx.write::<Suppression>(&stream, &events);
        Ok(())
    }
}
