//! A background worker driven by events: which events give it work, and how it does the
//! work of one. The feeding is the caller's, one way per backend: the log tail in process
//! (`api::workers::run_worker`), the worker's SQS queue on AWS (`infra::aws::QueueWorker`).
//! Delivery is at least once, so `handle` must be safe to run again for the same event.

use domain::EventEnvelope;
use std::time::Duration;

/// Why an event's work is not done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkFailure {
    /// Try again later (a store or service that failed).
    #[error("{0}")]
    Retry(String),
    /// It can never be done (an unreadable stream): set aside as a dead letter.
    #[error("{0}")]
    Poison(String),
}

#[async_trait::async_trait]
pub trait EventWorker: Send + Sync {
    /// Names the worker: its checkpoint, its logs.
    fn name(&self) -> &'static str;
    fn starts_work(&self, event: &EventEnvelope) -> bool;
    async fn handle(&self, event: &EventEnvelope) -> Result<(), WorkFailure>;

    /// A scheduled tick (an EventBridge schedule on AWS): periodic work; none by default.
    async fn tick(&self) -> Result<(), WorkFailure> {
        Ok(())
    }
}

/// A command failure as work: the store's and contention's are worth retrying, the rest
/// (a rejection, an unreadable stream) are not.
pub fn failure<E: std::error::Error + 'static>(e: crate::CommandError<E>) -> WorkFailure {
    use crate::CommandError as C;
    match e {
        C::Store(crate::StoreError::Retryable(m)) => WorkFailure::Retry(m),
        e @ C::Contended(_) => WorkFailure::Retry(e.to_string()),
        e => WorkFailure::Poison(e.to_string()),
    }
}

/// How many attempts, how long each, and how long between them.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    /// How long one call may take before it counts as a retryable failure.
    pub timeout: Duration,
    /// The first pause; each next one doubles, up to `max_backoff`, with full jitter.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// The longest `Retry-After` honoured.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            timeout: Duration::from_secs(60),
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The pause after failed attempt `attempt` (1-based).
    pub fn pause(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max_retry_after);
        }
        let window = self
            .base_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_backoff);
        // Full jitter, but never less than a tenth of the window.
        let ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::random_range(ms / 10..=ms.max(1)))
    }
}
