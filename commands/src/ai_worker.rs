//! The AI worker: drives one query to COMPLETED or FAILED by the attempts of
//! `attempts::drive` (each claimed with AIQueryStarted at the stream's expected version,
//! a retryable failure recorded with when the next attempt comes, a final AIQueryFailed
//! after the last), calling the model once per attempt.
//!
//! The feeding of queries (the log tail in process, an SQS queue on AWS) is the caller's.

use crate::ai::{AdvanceAiQuery, AiError, query_stream};
use crate::attempts::{Attempted, CallFailure, Driven, Progress, Step, Written, drive};
use crate::handler::{CommandError, CommandHandler, CommandMeta, RequestIds};
use domain::ai_query::{AiQuery, AiQueryCommand, AiQueryError, AiQuerySubmitted, TokenUsage};
use domain::{Actor, Aggregate, EventEnvelope, Role, TenantId, UserId};
use std::sync::Arc;

/// What the model answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelReply {
    pub answer: String,
    /// The model that answered, as the provider names it.
    pub model: String,
    pub usage: TokenUsage,
}

/// A chat model (the port the OpenAI client implements).
#[async_trait::async_trait]
pub trait LanguageModel: Send + Sync {
    /// One call, no retries of its own.
    async fn complete(&self, model: &str, prompt: &str) -> Result<ModelReply, CallFailure>;
}

pub use crate::worker::RetryPolicy;

pub struct AiWorker {
    handler: CommandHandler,
    model: Arc<dyn LanguageModel>,
    policy: RetryPolicy,
    actor: Actor,
}

/// The event type of a submission.
const SUBMITTED: &str = "AIQuerySubmitted";

/// The actor of the worker's events.
pub const WORKER: &str = "system:ai-worker";

impl AiWorker {
    pub fn new(
        handler: CommandHandler,
        model: Arc<dyn LanguageModel>,
        policy: RetryPolicy,
    ) -> Result<Self, domain::ValidationError> {
        Ok(Self {
            handler,
            model,
            policy,
            actor: Actor {
                user_id: UserId::parse(WORKER)?,
                role: Role::Admin,
            },
        })
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Runs the query `event` submitted, under the submitting request's correlation id
    /// and with the event as causation.
    pub async fn run_submitted(
        &self,
        event: &EventEnvelope,
    ) -> Result<Driven, CommandError<AiError>> {
        let cause = RequestIds::caused_by(event);
        self.process(&event.tenant_id, event.stream_id.instance(), cause)
            .await
    }

    /// Drives the query to a final status. `cause` carries the submitting request's
    /// correlation id and the submitted event as causation.
    pub async fn process(
        &self,
        tenant: &TenantId,
        query_id: &str,
        cause: RequestIds,
    ) -> Result<Driven, CommandError<AiError>> {
        let job = QueryJob {
            worker: self,
            tenant,
            query_id,
            cause,
        };
        drive(&job, &self.policy).await
    }
}

/// One query, as `drive` works it.
struct QueryJob<'a> {
    worker: &'a AiWorker,
    tenant: &'a TenantId,
    query_id: &'a str,
    cause: RequestIds,
}

#[async_trait::async_trait]
impl Attempted for QueryJob<'_> {
    type Job = AiQuerySubmitted;
    type Reply = ModelReply;
    type Error = AiError;
    const WHAT: &'static str = "AI query";

    fn tenant(&self) -> &TenantId {
        self.tenant
    }

    fn id(&self) -> &str {
        self.query_id
    }

    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.worker.handler.now()
    }

    async fn load(&self) -> Result<(Progress, AiQuerySubmitted), CommandError<AiError>> {
        let (q, _) = self
            .worker
            .handler
            .state::<AiQuery>(self.tenant, &query_stream(self.query_id))
            .await
            .map_err(|e| e.map_rejected(AiError::from))?;
        let (Some(status), Some(submitted)) = (q.status, q.submitted) else {
            return Err(CommandError::Rejected(AiQueryError::NotFound.into()));
        };
        let progress = Progress {
            finished: status.is_final(),
            attempts: q.attempts,
            retry_at: q.retry_at,
        };
        Ok((progress, submitted))
    }

    async fn call(&self, submitted: &AiQuerySubmitted) -> Result<ModelReply, CallFailure> {
        self.worker
            .model
            .complete(submitted.model.as_str(), submitted.prompt.as_str())
            .await
    }

    async fn write(&self, step: Step<ModelReply>) -> Result<Written, CommandError<AiError>> {
        let command = match step {
            Step::Claim { attempt } => AiQueryCommand::Start { attempt },
            Step::Complete {
                attempt,
                reply,
                latency_ms,
            } => AiQueryCommand::Complete {
                attempt,
                answer: reply.answer,
                model: reply.model,
                usage: reply.usage,
                latency_ms,
            },
            Step::Retry {
                attempt,
                error,
                retry_at,
            } => AiQueryCommand::Fail {
                attempt,
                error,
                retry_at: Some(retry_at),
            },
            Step::Fail { attempt, error, .. } => AiQueryCommand::Fail {
                attempt,
                error,
                retry_at: None,
            },
        };
        let meta = CommandMeta::of(
            self.tenant.clone(),
            self.worker.actor.clone(),
            self.cause.next(),
            None,
        );
        let advance = AdvanceAiQuery {
            query_id: self.query_id.to_owned(),
            command,
        };
        match self.worker.handler.run(&meta, &advance).await {
            Ok(_) => Ok(Written::Yes),
            Err(CommandError::Rejected(AiError::Query(AiQueryError::NotThisAttempt {
                ..
            }))) => Ok(Written::TakenOver),
            Err(e) => Err(e),
        }
    }
}

#[async_trait::async_trait]
impl crate::worker::EventWorker for AiWorker {
    fn name(&self) -> &'static str {
        "ai-worker"
    }

    /// A query's submission.
    fn starts_work(&self, event: &EventEnvelope) -> bool {
        event.stream_id.kind() == AiQuery::KIND && event.event_type == SUBMITTED
    }

    async fn handle(&self, event: &EventEnvelope) -> Result<(), crate::worker::WorkFailure> {
        let processed = self
            .run_submitted(event)
            .await
            .map_err(crate::worker::failure)?;
        tracing::info!(tenant_id = %event.tenant_id, query_id = event.stream_id.instance(), outcome = ?processed, "AI query done");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pauses_grow_to_the_cap_and_retry_after_is_capped() {
        let p = RetryPolicy::default();
        for attempt in 1..10 {
            let pause = p.pause(attempt, None);
            assert!(pause <= p.max_backoff, "{pause:?}");
        }
        assert!(p.pause(1, None) <= Duration::from_secs(1));
        assert_eq!(
            p.pause(1, Some(Duration::from_secs(3600))),
            p.max_retry_after
        );
        assert_eq!(
            p.pause(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
    }
}
