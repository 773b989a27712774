//! The AI queries read model: one row per query, as `GET /ai/query/{id}` and
//! `GET /ai/queries` serve it, folded through the aggregate's own `apply`.

use crate::ports::ProjectionError;
use chrono::{DateTime, Utc};
use domain::UserId;
use domain::ai_query::{
    AiQuery, AiQueryEvent, AiQueryStatus, AiQuerySubmitted, ModelName, Prompt, TokenUsage,
};
use serde::{Deserialize, Serialize};

pub const VIEW: &str = "ai_queries";

/// A query as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = AIQuery))]
pub struct AiQueryView {
    pub query_id: String,
    pub tenant_id: String,
    pub status: AiQueryStatus,
    pub prompt: String,
    /// The model's answer, once COMPLETED.
    pub answer: Option<String>,
    /// The model asked for; once COMPLETED, the model that answered.
    pub model: String,
    /// The model asked for.
    pub requested_model: String,
    /// Tokens used, once COMPLETED.
    pub usage: Option<TokenUsage>,
    /// How long the answering call took, in milliseconds.
    pub latency_ms: Option<u64>,
    pub submitted_by: String,
    #[serde(with = "domain::time::rfc3339")]
    pub submitted_at: DateTime<Utc>,
    /// When the first attempt began.
    #[serde(default, with = "domain::time::rfc3339::option")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended, COMPLETED or FAILED.
    #[serde(default, with = "domain::time::rfc3339::option")]
    pub completed_at: Option<DateTime<Utc>>,
    /// Calls of the model so far.
    pub attempts: u32,
    /// Why it FAILED, or why the last attempt failed while another is to come.
    pub error: Option<String>,
    /// When the next attempt comes, while one is awaited after a failure.
    #[serde(default, with = "domain::time::rfc3339::option")]
    pub retry_at: Option<DateTime<Utc>>,
    #[serde(with = "domain::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
    pub version: u64,
}

impl AiQueryView {
    pub fn from_state(tenant_id: &str, q: &AiQuery, version: u64) -> Option<Self> {
        let s = q.submitted.as_ref()?;
        Some(Self {
            query_id: s.query_id.clone(),
            tenant_id: tenant_id.to_owned(),
            status: q.status?,
            prompt: s.prompt.as_str().to_owned(),
            answer: q.answer.clone(),
            model: q
                .model_used
                .clone()
                .unwrap_or_else(|| s.model.as_str().to_owned()),
            requested_model: s.model.as_str().to_owned(),
            usage: q.usage,
            latency_ms: q.latency_ms,
            submitted_by: s.submitted_by.to_string(),
            submitted_at: s.submitted_at,
            started_at: q.started_at,
            completed_at: q.completed_at,
            attempts: q.attempts,
            error: q.error.clone(),
            retry_at: q.retry_at,
            updated_at: q.updated_at.unwrap_or(s.submitted_at),
            version,
        })
    }

    /// The aggregate state this row shows. An attempt is open while PROCESSING with no
    /// retry awaited (a failed attempt sets `retry_at`, a claim clears it).
    fn state(&self) -> Result<AiQuery, ProjectionError> {
        let bad = |e: &dyn std::fmt::Display| ProjectionError(format!("unreadable query row: {e}"));
        let completed = self.status == AiQueryStatus::Completed;
        Ok(AiQuery {
            submitted: Some(AiQuerySubmitted {
                query_id: self.query_id.clone(),
                prompt: Prompt::parse(&self.prompt).map_err(|e| bad(&e))?,
                model: ModelName::parse(&self.requested_model).map_err(|e| bad(&e))?,
                submitted_by: UserId::parse(&self.submitted_by).map_err(|e| bad(&e))?,
                submitted_at: self.submitted_at,
            }),
            status: Some(self.status),
            attempts: self.attempts,
            attempt_open: self.status == AiQueryStatus::Processing && self.retry_at.is_none(),
            started_at: self.started_at,
            completed_at: self.completed_at,
            answer: self.answer.clone(),
            model_used: completed.then(|| self.model.clone()),
            usage: self.usage,
            latency_ms: self.latency_ms,
            error: self.error.clone(),
            retry_at: self.retry_at,
            updated_at: Some(self.updated_at),
        })
    }
}

crate::state_projection!(AiQueriesProjection, AiQueryView);

impl crate::ports::StateView for AiQueryView {
    type Aggregate = AiQuery;
    const VIEW: &'static str = VIEW;

    fn starts(e: &AiQueryEvent) -> bool {
        matches!(e, AiQueryEvent::Submitted(_))
    }

    fn of_state(tenant_id: &str, state: &AiQuery, version: u64) -> Option<Self> {
        Self::from_state(tenant_id, state, version)
    }

    fn into_state(self) -> Result<AiQuery, ProjectionError> {
        self.state()
    }
}
