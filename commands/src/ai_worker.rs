//! The AI worker's policy: drive one query to COMPLETED or FAILED. Each call of the model
//! is one attempt, claimed first by appending AIQueryStarted with its number at the
//! stream's expected version (two workers never run the same attempt). A retryable
//! failure (rate limit, 5xx, timeout, connection) records AIQueryAttemptFailed with when
//! the next attempt comes: exponential backoff with jitter, or the provider's
//! `Retry-After` up to a cap. After the last attempt, or on a failure no retry can fix,
//! AIQueryFailed. A worker that finds an attempt left open (its worker stopped) claims the
//! next one, so unfinished queries resume after a restart.
//!
//! The feeding of queries (the log tail in process, an SQS queue on AWS) is the caller's.

use crate::ai::{AdvanceAiQuery, AiError, query_stream};
use crate::handler::{CommandError, CommandHandler, CommandMeta, RequestIds};
use domain::ai_query::{AiQuery, AiQueryCommand, AiQueryError, AiQueryStatus, TokenUsage};
use domain::{Actor, Aggregate, EventEnvelope, Role, TenantId, UserId};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the model answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelReply {
    pub answer: String,
    /// The model that answered, as the provider names it.
    pub model: String,
    pub usage: TokenUsage,
}

/// Why a call of the model failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelFailure {
    /// Another attempt may succeed (rate limited, 5xx, timeout, connection).
    #[error("{reason}")]
    Retryable {
        reason: String,
        /// The provider's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// No retry can fix it (400, 401, 403, 404, quota used up, an unreadable answer).
    #[error("{reason}")]
    Permanent { reason: String },
}

/// A chat model (the port the OpenAI client implements).
#[async_trait::async_trait]
pub trait LanguageModel: Send + Sync {
    /// One call, no retries of its own.
    async fn complete(&self, model: &str, prompt: &str) -> Result<ModelReply, ModelFailure>;
}

pub use crate::worker::RetryPolicy;

/// How a `process` call left the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processed {
    /// It reached this final status (now, or before this call).
    Final(AiQueryStatus),
    /// Another worker claimed its next attempt; that worker carries it on.
    TakenOver,
}

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
    ) -> Result<Processed, CommandError<AiError>> {
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
    ) -> Result<Processed, CommandError<AiError>> {
        let stream = query_stream(query_id);
        loop {
            let (q, _) = self
                .handler
                .state::<AiQuery>(tenant, &stream)
                .await
                .map_err(|e| e.map_rejected(AiError::from))?;
            let Some(status) = q.status else {
                return Err(CommandError::Rejected(AiQueryError::NotFound.into()));
            };
            if status.is_final() {
                return Ok(Processed::Final(status));
            }
            if let Some(at) = q.retry_at {
                let wait = (at - self.handler.now()).to_std().unwrap_or_default();
                tokio::time::sleep(wait).await;
            }
            if q.attempts >= self.policy.max_attempts {
                // The last attempt was left open by a worker that stopped.
                let end = AiQueryCommand::Fail {
                    attempt: q.attempts,
                    error: "the worker stopped during the last attempt".into(),
                    retry_at: None,
                };
                return self.advance(tenant, query_id, cause, end).await;
            }
            let attempt = q.attempts + 1;
            let claim = AiQueryCommand::Start { attempt };
            match self.advance(tenant, query_id, cause, claim).await {
                Ok(_) => {}
                Err(CommandError::Rejected(AiError::Query(AiQueryError::NotThisAttempt {
                    ..
                }))) => return Ok(Processed::TakenOver),
                Err(e) => return Err(e),
            }
            let Some(submitted) = q.submitted.as_ref() else {
                return Err(CommandError::Rejected(AiQueryError::NotFound.into()));
            };
            let started = Instant::now();
            let call = self
                .model
                .complete(submitted.model.as_str(), submitted.prompt.as_str());
            let result = match tokio::time::timeout(self.policy.timeout, call).await {
                Ok(r) => r,
                Err(_) => Err(ModelFailure::Retryable {
                    reason: format!(
                        "the model did not answer within {} s",
                        self.policy.timeout.as_secs()
                    ),
                    retry_after: None,
                }),
            };
            let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let end = match result {
                Ok(reply) => AiQueryCommand::Complete {
                    attempt,
                    answer: reply.answer,
                    model: reply.model,
                    usage: reply.usage,
                    latency_ms,
                },
                Err(ModelFailure::Retryable {
                    reason,
                    retry_after,
                }) if attempt < self.policy.max_attempts => {
                    let pause = self.policy.pause(attempt, retry_after);
                    tracing::warn!(
                        tenant_id = %tenant, query_id, attempt, error = %reason,
                        pause_ms = pause.as_millis() as u64, "model call failed; retrying"
                    );
                    AiQueryCommand::Fail {
                        attempt,
                        error: reason,
                        retry_at: Some(
                            self.handler.now()
                                + chrono::Duration::from_std(pause).unwrap_or_default(),
                        ),
                    }
                }
                Err(failure) => {
                    let error = match failure {
                        ModelFailure::Retryable { reason, .. } => {
                            format!("{reason} (after {attempt} attempts)")
                        }
                        ModelFailure::Permanent { reason } => reason,
                    };
                    tracing::warn!(tenant_id = %tenant, query_id, attempt, %error, "AI query failed");
                    AiQueryCommand::Fail {
                        attempt,
                        error,
                        retry_at: None,
                    }
                }
            };
            let retrying = matches!(
                end,
                AiQueryCommand::Fail {
                    retry_at: Some(_),
                    ..
                }
            );
            match self.advance(tenant, query_id, cause, end).await {
                Ok(_) if retrying => continue,
                Err(CommandError::Rejected(AiError::Query(AiQueryError::NotThisAttempt {
                    ..
                }))) => return Ok(Processed::TakenOver),
                other => return other,
            }
        }
    }

    /// Runs one step as the worker; `Final` of the status it leaves (PROCESSING after a
    /// claim or a failed attempt).
    async fn advance(
        &self,
        tenant: &TenantId,
        query_id: &str,
        cause: RequestIds,
        command: AiQueryCommand,
    ) -> Result<Processed, CommandError<AiError>> {
        let meta = CommandMeta::of(tenant.clone(), self.actor.clone(), cause.next(), None);
        let ran = self
            .handler
            .run(
                &meta,
                &AdvanceAiQuery {
                    query_id: query_id.to_owned(),
                    command,
                },
            )
            .await?;
        Ok(Processed::Final(
            ran.output.status.unwrap_or(AiQueryStatus::Processing),
        ))
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
