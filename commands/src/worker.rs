//! A background worker driven by events: which events give it work, and how it does the
//! work of one. The feeding is the caller's, one way per backend: the log tail in process
//! (`api::workers::run_worker`), the worker's SQS queue on AWS (`infra::aws::QueueWorker`).
//! Delivery is at least once, so `handle` must be safe to run again for the same event.

use domain::EventEnvelope;

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
