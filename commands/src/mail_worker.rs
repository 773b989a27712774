//! The mail worker: sends each queued message by the attempts of `attempts::drive` (each
//! claimed with MessageSendStarted, a 4xx reply or a connection error retried with
//! backoff, a 5xx reply failing the message at once and suppressing its recipient), one
//! delivery through the `Mailer` per attempt. A message whose body an AI query writes is
//! composed when the query completes (its AIQueryCompleted gives the worker the work) and
//! abandoned when the query fails.
//!
//! The feeding of events (the log tail in process, an SQS queue on AWS) is the caller's.

use crate::ai::query_stream;
use crate::attempts::{Attempted, CallFailure, Driven, Progress, Step, Written, drive};
use crate::handler::{CommandError, CommandHandler, CommandMeta, RequestIds};
use crate::messages::{AdvanceMessage, MessageCommandError, message_stream, suppression_of};
use crate::worker::RetryPolicy;
use domain::ai_query::{AiQuery, AiQueryStatus};
use domain::message::{Body, Message, MessageCommand, MessageError, MessageStatus, Subject};
use domain::user::Email;
use domain::{Actor, Aggregate, EventEnvelope, Role, TenantId, UserId};
use std::sync::Arc;

/// One email, as the mailer sends it.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub tenant_id: TenantId,
    /// Chronicle's message id (the `Message-ID` is made of it, so a retried delivery
    /// that did arrive is recognisable as the same message).
    pub message_id: String,
    pub recipient: Email,
    pub subject: Subject,
    pub body: Body,
}

/// A mail server (the port the SMTP client implements).
#[async_trait::async_trait]
pub trait Mailer: Send + Sync {
    /// One delivery, no retries of its own: the server's reply to the message's data, or
    /// why it was not accepted (a 4xx reply or a broken connection is retryable, a 5xx
    /// reply permanent).
    async fn send(&self, mail: &Outgoing) -> Result<String, CallFailure>;
}

/// The actor of the worker's events.
pub const WORKER: &str = "system:mail-worker";

pub struct MailWorker {
    handler: CommandHandler,
    mailer: Arc<dyn Mailer>,
    policy: RetryPolicy,
    actor: Actor,
}

impl MailWorker {
    pub fn new(
        handler: CommandHandler,
        mailer: Arc<dyn Mailer>,
        policy: RetryPolicy,
    ) -> Result<Self, domain::ValidationError> {
        Ok(Self {
            handler,
            mailer,
            policy,
            actor: Actor {
                user_id: UserId::parse(WORKER)?,
                role: Role::Admin,
            },
        })
    }

    async fn message(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Message, CommandError<MessageCommandError>> {
        let (m, _) = self
            .handler
            .state::<Message>(tenant, &message_stream(id))
            .await
            .map_err(|e| e.map_rejected(MessageCommandError::from))?;
        Ok(m)
    }

    async fn advance(
        &self,
        tenant: &TenantId,
        cause: RequestIds,
        advance: AdvanceMessage,
    ) -> Result<Written, CommandError<MessageCommandError>> {
        let meta = CommandMeta::of(tenant.clone(), self.actor.clone(), cause, None);
        match self.handler.run(&meta, &advance).await {
            Ok(_) => Ok(Written::Yes),
            Err(CommandError::Rejected(MessageCommandError::Message(
                MessageError::NotThisAttempt { .. }
                | MessageError::AlreadyComposed
                | MessageError::Finished(_),
            ))) => Ok(Written::TakenOver),
            Err(e) => Err(e),
        }
    }

    /// Sends message `id` unless it is done or still waits for its body.
    pub async fn deliver(
        &self,
        tenant: &TenantId,
        id: &str,
        cause: RequestIds,
    ) -> Result<Option<Driven>, CommandError<MessageCommandError>> {
        let m = self.message(tenant, id).await?;
        if m.queued.is_none() || m.body.is_none() {
            return Ok(None);
        }
        let job = MessageJob {
            worker: self,
            tenant,
            message_id: id,
            cause,
        };
        drive(&job, &self.policy).await.map(Some)
    }

    /// Makes query `query_id`'s answer the body of the message waiting for it (a message
    /// of the same id), or fails that message when the query failed; then sends it.
    pub async fn compose(
        &self,
        tenant: &TenantId,
        query_id: &str,
        cause: RequestIds,
    ) -> Result<Option<Driven>, CommandError<MessageCommandError>> {
        let m = self.message(tenant, query_id).await?;
        let waiting = m
            .queued
            .as_ref()
            .is_some_and(|q| q.ai_query_id.as_deref() == Some(query_id));
        if !waiting {
            return Ok(None);
        }
        if m.body.is_none() && !m.status.is_some_and(MessageStatus::is_final) {
            let (q, _) = self
                .handler
                .state::<AiQuery>(tenant, &query_stream(query_id))
                .await
                .map_err(|e| e.map_rejected(|e| MessageCommandError::Ai(e.into())))?;
            let command = match (q.status, q.answer) {
                (Some(AiQueryStatus::Completed), Some(answer)) => match Body::parse(&answer) {
                    Ok(body) => MessageCommand::Compose { body },
                    Err(e) => MessageCommand::Abandon {
                        reason: format!("the AI query's answer cannot be the body: {e}"),
                    },
                },
                (Some(AiQueryStatus::Failed), _) => MessageCommand::Abandon {
                    reason: format!(
                        "the AI query that was to write the body failed: {}",
                        q.error.unwrap_or_default()
                    ),
                },
                // Not answered yet: its completion brings the worker back.
                _ => return Ok(None),
            };
            let advance = AdvanceMessage {
                message_id: query_id.to_owned(),
                command,
                suppress: false,
            };
            self.advance(tenant, cause.next(), advance).await?;
        }
        self.deliver(tenant, query_id, cause.next()).await
    }
}

/// One message, as `drive` works it.
struct MessageJob<'a> {
    worker: &'a MailWorker,
    tenant: &'a TenantId,
    message_id: &'a str,
    cause: RequestIds,
}

#[async_trait::async_trait]
impl Attempted for MessageJob<'_> {
    type Job = Outgoing;
    type Reply = String;
    type Error = MessageCommandError;
    const WHAT: &'static str = "message";

    fn tenant(&self) -> &TenantId {
        self.tenant
    }

    fn id(&self) -> &str {
        self.message_id
    }

    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.worker.handler.now()
    }

    async fn load(&self) -> Result<(Progress, Outgoing), CommandError<MessageCommandError>> {
        let m = self.worker.message(self.tenant, self.message_id).await?;
        let (Some(status), Some(queued), Some(body)) = (m.status, m.queued, m.body) else {
            return Err(CommandError::Rejected(MessageError::NotComposed.into()));
        };
        let progress = Progress {
            finished: status.is_final(),
            attempts: m.attempts,
            retry_at: m.retry_at,
        };
        Ok((
            progress,
            Outgoing {
                tenant_id: self.tenant.clone(),
                message_id: queued.message_id,
                recipient: queued.recipient,
                subject: queued.subject,
                body,
            },
        ))
    }

    async fn call(&self, mail: &Outgoing) -> Result<String, CallFailure> {
        // Suppressed since it was queued (another message to it was refused): not sent.
        match suppression_of(&self.worker.handler, self.tenant, &mail.recipient).await {
            Ok(s) => {
                if let Some(s) = s.suppressed {
                    return Err(CallFailure::Permanent {
                        reason: format!(
                            "not sent: the recipient is suppressed since {} ({})",
                            s.at, s.reply
                        ),
                    });
                }
            }
            Err(e) => {
                return Err(CallFailure::Retryable {
                    reason: format!("the suppression list could not be read: {e}"),
                    retry_after: None,
                });
            }
        }
        self.worker.mailer.send(mail).await
    }

    async fn write(
        &self,
        step: Step<String>,
    ) -> Result<Written, CommandError<MessageCommandError>> {
        let (command, suppress) = match step {
            Step::Claim { attempt } => (MessageCommand::Start { attempt }, false),
            Step::Complete { attempt, reply, .. } => {
                (MessageCommand::Sent { attempt, reply }, false)
            }
            Step::Retry {
                attempt,
                error,
                retry_at,
            } => (
                MessageCommand::Fail {
                    attempt,
                    reply: error,
                    retry_at: Some(retry_at),
                },
                false,
            ),
            Step::Fail {
                attempt,
                error,
                permanent,
            } => (
                MessageCommand::Fail {
                    attempt,
                    reply: error,
                    retry_at: None,
                },
                permanent,
            ),
        };
        let advance = AdvanceMessage {
            message_id: self.message_id.to_owned(),
            command,
            suppress,
        };
        self.worker
            .advance(self.tenant, self.cause.next(), advance)
            .await
    }
}

const QUEUED: &str = "MessageQueued";
const ANSWERED: [&str; 2] = ["AIQueryCompleted", "AIQueryFailed"];

#[async_trait::async_trait]
impl crate::worker::EventWorker for MailWorker {
    fn name(&self) -> &'static str {
        "mail-worker"
    }

    /// A queued message, or the end of an AI query (that may write a message's body).
    fn starts_work(&self, event: &EventEnvelope) -> bool {
        let kind = event.stream_id.kind();
        (kind == Message::KIND && event.event_type == QUEUED)
            || (kind == AiQuery::KIND && ANSWERED.contains(&event.event_type.as_str()))
    }

    async fn handle(&self, event: &EventEnvelope) -> Result<(), crate::worker::WorkFailure> {
        let cause = RequestIds::caused_by(event);
        let (tenant, id) = (&event.tenant_id, event.stream_id.instance());
        let done = if event.stream_id.kind() == Message::KIND {
            self.deliver(tenant, id, cause).await
        } else {
            self.compose(tenant, id, cause).await
        }
        .map_err(crate::worker::failure)?;
        if let Some(outcome) = done {
            tracing::info!(tenant_id = %tenant, message_id = id, ?outcome, "message done");
        }
        Ok(())
    }
}
