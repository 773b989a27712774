//! Work with an effect outside Chronicle (a model call, an email), done in attempts and
//! recorded on the job's own stream. Each attempt is claimed first by a step written at
//! the stream's expected version, so two workers never run the same attempt; a retryable
//! failure (rate limit, 5xx, 4xx reply of a mail server, timeout, connection) records when
//! the next attempt comes, by exponential backoff with jitter or the service's own
//! `Retry-After` up to a cap; after the last attempt, or on a failure no retry can fix, the
//! job fails for good. A worker that finds an attempt left open (its worker stopped) claims
//! the next one, so unfinished jobs resume after a restart.
//!
//! A job says how to load it, how to make its call and how to write a step (`Attempted`);
//! `drive` is the one loop every such worker runs.

use crate::handler::CommandError;
use crate::worker::RetryPolicy;
use chrono::{DateTime, Utc};
use domain::TenantId;
use std::time::{Duration, Instant};

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallFailure {
    /// Another attempt may succeed (rate limited, 5xx, a 4xx mail reply, timeout, connection).
    #[error("{reason}")]
    Retryable {
        reason: String,
        /// The service's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// No retry can fix it (refused, unauthorized, not found, an unreadable answer).
    #[error("{reason}")]
    Permanent { reason: String },
}

/// Where a job stands, as its stream says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Completed or failed for good.
    pub finished: bool,
    /// Attempts claimed so far.
    pub attempts: u32,
    /// When the next attempt may start, after a retryable failure.
    pub retry_at: Option<DateTime<Utc>>,
}

/// A step a worker writes on a job's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<R> {
    /// Claims attempt `attempt` (the one after the last claimed).
    Claim { attempt: u32 },
    /// The attempt's call succeeded.
    Complete {
        attempt: u32,
        reply: R,
        latency_ms: u64,
    },
    /// The attempt failed; the next may start at `retry_at`.
    Retry {
        attempt: u32,
        error: String,
        retry_at: DateTime<Utc>,
    },
    /// The attempt failed, and the job with it: `permanent` when the service refused it
    /// for good (not when the attempts ran out).
    Fail {
        attempt: u32,
        error: String,
        permanent: bool,
    },
}

/// Whether a step was written, or another worker had claimed the attempt first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Yes,
    TakenOver,
}

/// How `drive` left the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driven {
    /// Completed or failed for good (now, or before this call).
    Finished,
    /// Another worker claimed its next attempt; that worker carries it on.
    TakenOver,
}

/// One job with attempts.
#[async_trait::async_trait]
pub trait Attempted: Send + Sync {
    /// What the call needs of the job, as loaded.
    type Job: Send + Sync;
    /// What a successful call gives.
    type Reply: Send;
    type Error: std::error::Error + Send + 'static;

    /// Names the kind of job in logs ("AI query", "message").
    const WHAT: &'static str;

    fn tenant(&self) -> &TenantId;
    /// The job's id, for logs.
    fn id(&self) -> &str;
    fn now(&self) -> DateTime<Utc>;

    /// The job's progress and what its call needs (a rejection when there is no such job).
    async fn load(&self) -> Result<(Progress, Self::Job), CommandError<Self::Error>>;
    /// One call, no retries of its own.
    async fn call(&self, job: &Self::Job) -> Result<Self::Reply, CallFailure>;
    /// Writes `step` on the job's stream.
    async fn write(&self, step: Step<Self::Reply>) -> Result<Written, CommandError<Self::Error>>;
}

/// Drives `job` to its end: claims each attempt, makes its call (within the policy's
/// timeout) and records how it ended, pausing between attempts as the policy says.
pub async fn drive<A: Attempted>(
    job: &A,
    policy: &RetryPolicy,
) -> Result<Driven, CommandError<A::Error>> {
    let written = |w: Written| match w {
        Written::Yes => None,
        Written::TakenOver => Some(Driven::TakenOver),
    };
    loop {
        let (progress, work) = job.load().await?;
        if progress.finished {
            return Ok(Driven::Finished);
        }
        if let Some(at) = progress.retry_at {
            let wait = (at - job.now()).to_std().unwrap_or_default();
            tokio::time::sleep(wait).await;
        }
        if progress.attempts >= policy.max_attempts {
            // The last attempt was left open by a worker that stopped.
            let end = Step::Fail {
                attempt: progress.attempts,
                error: "the worker stopped during the last attempt".into(),
                permanent: false,
            };
            return Ok(written(job.write(end).await?).unwrap_or(Driven::Finished));
        }
        let attempt = progress.attempts + 1;
        if let Some(taken) = written(job.write(Step::Claim { attempt }).await?) {
            return Ok(taken);
        }
        let started = Instant::now();
        let result = match tokio::time::timeout(policy.timeout, job.call(&work)).await {
            Ok(r) => r,
            Err(_) => Err(CallFailure::Retryable {
                reason: format!("no answer within {} s", policy.timeout.as_secs()),
                retry_after: None,
            }),
        };
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (tenant_id, id, what) = (job.tenant(), job.id(), A::WHAT);
        let end = match result {
            Ok(reply) => Step::Complete {
                attempt,
                reply,
                latency_ms,
            },
            Err(CallFailure::Retryable {
                reason,
                retry_after,
            }) if attempt < policy.max_attempts => {
                let pause = policy.pause(attempt, retry_after);
                tracing::warn!(
                    %tenant_id, id, attempt, error = %reason,
                    pause_ms = pause.as_millis() as u64, "{what}: the call failed; retrying"
                );
                Step::Retry {
                    attempt,
                    error: reason,
                    retry_at: job.now() + chrono::Duration::from_std(pause).unwrap_or_default(),
                }
            }
            Err(failure) => {
                let (error, permanent) = match failure {
                    CallFailure::Retryable { reason, .. } => {
                        (format!("{reason} (after {attempt} attempts)"), false)
                    }
                    CallFailure::Permanent { reason } => (reason, true),
                };
                tracing::warn!(%tenant_id, id, attempt, %error, "{what} failed");
                Step::Fail {
                    attempt,
                    error,
                    permanent,
                }
            }
        };
        let retrying = matches!(end, Step::Retry { .. });
        if let Some(taken) = written(job.write(end).await?) {
            return Ok(taken);
        }
        if !retrying {
            return Ok(Driven::Finished);
        }
    }
}
