//! AI queries on the one pipeline: SubmitAIQuery (checked against the tier's prompt limit
//! and the month's token budget), and the worker's commands: claim an attempt, end it. A
//! completion writes the query's AIQueryCompleted and the month's usage in one append, so
//! the budget counts every completed query exactly once.

use crate::handler::{CommandError, CommandHandler, CommandMeta};
use crate::pipeline::{Command, Tx};
use crate::tenancy::active_tenant;
use chrono::{DateTime, Utc};
use domain::ai_query::{AiQuery, AiQueryCommand, AiQueryError, ModelName, Prompt};
use domain::ai_usage::{AiUsage, RecordUsage, next_month};
use domain::quota::month_of;
use domain::tenant::TenantError;
use domain::{Aggregate, EventEnvelope, StreamId, TenantId, Tier};
use std::sync::Arc;

/// Why an AI command was refused.
#[derive(Debug, thiserror::Error)]
pub enum AiError {
    #[error(transparent)]
    Query(#[from] AiQueryError),
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error(
        "prompt: {chars} characters; the {tier} tier allows {limit} (max_prompt_chars)",
        tier = .tier.as_str()
    )]
    PromptTooLong {
        chars: usize,
        limit: u32,
        tier: Tier,
    },
    #[error(
        "the tenant's AI budget of {budget} tokens this month is used up ({used} used); it resets at {resets_at}"
    )]
    QuotaExceeded {
        budget: u64,
        used: u64,
        resets_at: DateTime<Utc>,
    },
}

impl From<std::convert::Infallible> for AiError {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}

fn lift<E: std::error::Error + 'static>(e: CommandError<E>) -> CommandError<AiError>
where
    AiError: From<E>,
{
    e.map_rejected(AiError::from)
}

fn rejected(e: impl Into<AiError>) -> CommandError<AiError> {
    CommandError::Rejected(e.into())
}

pub fn query_stream(id: &str) -> StreamId {
    StreamId::for_aggregate(AiQuery::KIND, id)
}

/// The stream of the tenant's usage in the month `at` is in.
pub fn usage_stream(at: DateTime<Utc>) -> StreamId {
    StreamId::for_aggregate(AiUsage::KIND, month_of(at))
}

/// The tenant's AI usage in the month `at` is in.
pub async fn month_usage(
    handler: &CommandHandler,
    tenant: &TenantId,
    at: DateTime<Utc>,
) -> Result<AiUsage, CommandError<AiError>> {
    let (usage, _) = handler
        .tail_state::<AiUsage>(tenant, &usage_stream(at))
        .await
        .map_err(lift)?;
    Ok(usage)
}

/// SubmitAIQuery: a new query, QUEUED, if the prompt fits the tier and the month's budget
/// has tokens left.
pub struct SubmitAiQuery {
    pub query_id: String,
    /// The caller's tier, for a tenant that was never signed up.
    pub tier: Tier,
    pub prompt: Prompt,
    pub model: ModelName,
}

impl Command for SubmitAiQuery {
    type Output = AiQuery;
    type Error = AiError;
    const NAME: &'static str = "aiquery";

    async fn decide(&self, tx: &mut Tx<'_>) -> Result<AiQuery, CommandError<AiError>> {
        let tenant = active_tenant::<AiError>(tx, self.tier).await?;
        let limits = tenant.limits();
        let chars = self.prompt.chars();
        if chars > limits.max_prompt_chars as usize {
            return Err(rejected(AiError::PromptTooLong {
                chars,
                limit: limits.max_prompt_chars,
                tier: tenant.tier,
            }));
        }
        let now = tx.ctx().now;
        // Read, not written: a completion racing this check may take the month a little
        // past its budget, never more than the queries already admitted.
        let (usage, _) = tx
            .load_tail::<AiUsage>(&usage_stream(now))
            .await
            .map_err(lift)?;
        if usage.tokens >= limits.ai_tokens_per_month {
            return Err(rejected(AiError::QuotaExceeded {
                budget: limits.ai_tokens_per_month,
                used: usage.tokens,
                resets_at: next_month(now),
            }));
        }
        let mut query = AiQuery::default();
        let events = query
            .decide(
                &AiQueryCommand::Submit {
                    query_id: self.query_id.clone(),
                    prompt: self.prompt.clone(),
                    model: self.model.clone(),
                },
                tx.ctx(),
            )
            .map_err(rejected)?;
        tx.write::<AiQuery>(&query_stream(&self.query_id), &events);
        for e in &events {
            query.apply(e);
        }
        Ok(query)
    }

    async fn replayed(
        &self,
        handler: &CommandHandler,
        meta: &CommandMeta,
        events: &[Arc<EventEnvelope>],
    ) -> Result<AiQuery, CommandError<AiError>> {
        handler
            .replayed_of_kind::<AiQuery>(meta, events)
            .await
            .map_err(lift)
    }
}

/// A worker's step on a query: claim the next attempt (`Start`), or end the current one
/// (`Complete`, `Fail`). A completion adds its tokens to the month's usage in the same
/// append. Fails with `NotThisAttempt` when another worker got there first.
pub struct AdvanceAiQuery {
    pub query_id: String,
    pub command: AiQueryCommand,
}

impl Command for AdvanceAiQuery {
    type Output = AiQuery;
    type Error = AiError;
    const NAME: &'static str = "aiquery";

    fn attempts(&self) -> Option<u32> {
        // The usage stream is shared by the tenant's completions.
        Some(crate::commerce::PATIENT)
    }

    async fn decide(&self, tx: &mut Tx<'_>) -> Result<AiQuery, CommandError<AiError>> {
        let stream = query_stream(&self.query_id);
        let (mut query, _) = tx.load::<AiQuery>(&stream).await.map_err(lift)?;
        let events = query.decide(&self.command, tx.ctx()).map_err(rejected)?;
        if let AiQueryCommand::Complete { usage, .. } = &self.command {
            let month = usage_stream(tx.ctx().now);
            let (used, _) = tx.load_tail::<AiUsage>(&month).await.map_err(lift)?;
            let recorded = used
                .decide(
                    &RecordUsage {
                        query_id: self.query_id.clone(),
                        tokens: usage.total_tokens,
                    },
                    tx.ctx(),
                )
                .map_err(lift_infallible)?;
            tx.write::<AiUsage>(&month, &recorded);
        }
        tx.write::<AiQuery>(&stream, &events);
        for e in &events {
            query.apply(e);
        }
        Ok(query)
    }
}

fn lift_infallible(e: std::convert::Infallible) -> CommandError<AiError> {
    match e {}
}
