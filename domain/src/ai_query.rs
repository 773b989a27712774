//! The AIQuery aggregate (seed 000's asynchronous AI processing, seed 002's `generate`):
//! submitted QUEUED; a worker claims each attempt by appending AIQueryStarted with the
//! attempt's number at the stream's expected version, so two workers never run the same
//! attempt; an attempt ends completed, failed for good, or failed with a retry to come.

use crate::aggregate::{Aggregate, CommandContext};
use crate::ids::{UserId, ValidationError};
use crate::rules::{Pattern, TextRule};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The longest prompt of any tier, in characters; each tier has its own limit below it.
pub const MAX_PROMPT_CHARS: usize = 64_000;

/// What the user asks the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt(String);

impl Prompt {
    pub const RULE: TextRule = TextRule {
        not_blank: true,
        ..TextRule::chars(
            1,
            MAX_PROMPT_CHARS,
            "What to ask the model. Each tier has a lower limit (max_prompt_chars).",
        )
    };

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        Self::RULE.check("prompt", value)?;
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its length in characters, as the tier limit counts it.
    pub fn chars(&self) -> usize {
        self.0.chars().count()
    }
}

crate::rules::text_serde!(Prompt);
crate::rules::text_schema!(Prompt, "Prompt");

static MODEL: Pattern = Pattern::new(r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$");

/// A model's name, as the provider knows it (e.g. `gpt-4o-mini`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelName(String);

impl ModelName {
    pub const RULE: TextRule = TextRule {
        pattern: Some(&MODEL),
        ..TextRule::chars(
            1,
            100,
            "The model to ask; the server's default when absent.",
        )
    };

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        Self::RULE.check("model", value)?;
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::rules::text_serde!(ModelName);
crate::rules::text_schema!(ModelName, "ModelName");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = AIQueryStatus))]
#[serde(rename_all = "UPPERCASE")]
pub enum AiQueryStatus {
    Queued,
    Processing,
    Completed,
    Failed,
}

impl AiQueryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Processing => "PROCESSING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

/// Tokens a model call used, as the provider counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AiQueryCommand {
    Submit {
        query_id: String,
        prompt: Prompt,
        model: ModelName,
    },
    /// Claims attempt `attempt`, which must be the next one.
    Start { attempt: u32 },
    /// Attempt `attempt` answered.
    Complete {
        attempt: u32,
        answer: String,
        model: String,
        usage: TokenUsage,
        latency_ms: u64,
    },
    /// Attempt `attempt` failed; another comes after `retry_at` when `retry_at` is set,
    /// else the query has failed for good.
    Fail {
        attempt: u32,
        error: String,
        retry_at: Option<DateTime<Utc>>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AiQuerySubmitted {
    pub query_id: String,
    pub prompt: Prompt,
    pub model: ModelName,
    pub submitted_by: UserId,
    #[serde(with = "crate::time::rfc3339")]
    pub submitted_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AiQueryStarted {
    pub attempt: u32,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AiQueryCompleted {
    pub attempt: u32,
    pub answer: String,
    pub model: String,
    pub usage: TokenUsage,
    pub latency_ms: u64,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AiQueryAttemptFailed {
    pub attempt: u32,
    pub error: String,
    #[serde(with = "crate::time::rfc3339")]
    pub retry_at: DateTime<Utc>,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AiQueryFailed {
    pub attempt: u32,
    pub error: String,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

crate::domain_events!(AiQueryEvent, "AI query" {
    Submitted(AiQuerySubmitted) = "AIQuerySubmitted",
    Started(AiQueryStarted) = "AIQueryStarted",
    Completed(AiQueryCompleted) = "AIQueryCompleted",
    AttemptFailed(AiQueryAttemptFailed) = "AIQueryAttemptFailed",
    Failed(AiQueryFailed) = "AIQueryFailed",
});

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AiQueryError {
    #[error("the query already exists")]
    AlreadyExists,
    #[error("no such query")]
    NotFound,
    #[error("the query is {}", .0.as_str())]
    Finished(AiQueryStatus),
    /// Someone else holds this attempt, or the attempt named is not the current one.
    #[error("attempt {attempt} is not the query's next or current attempt (it has had {had})")]
    NotThisAttempt { attempt: u32, had: u32 },
}

impl From<crate::attempt::WrongAttempt> for AiQueryError {
    fn from(w: crate::attempt::WrongAttempt) -> Self {
        Self::NotThisAttempt {
            attempt: w.attempt,
            had: w.had,
        }
    }
}

/// A query as folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AiQuery {
    pub submitted: Option<AiQuerySubmitted>,
    pub status: Option<AiQueryStatus>,
    /// Attempts claimed so far.
    pub attempts: u32,
    /// Whether the last claimed attempt has ended.
    pub attempt_open: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub answer: Option<String>,
    pub model_used: Option<String>,
    pub usage: Option<TokenUsage>,
    pub latency_ms: Option<u64>,
    pub error: Option<String>,
    pub retry_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl AiQuery {
    fn live(&self) -> Result<AiQueryStatus, AiQueryError> {
        match self.status {
            None => Err(AiQueryError::NotFound),
            Some(s) if s.is_final() => Err(AiQueryError::Finished(s)),
            Some(s) => Ok(s),
        }
    }

    /// The attempt named must be the one open now.
    fn current(&self, attempt: u32) -> Result<(), AiQueryError> {
        self.live()?;
        crate::attempt::check_current(self.attempts, self.attempt_open, attempt)?;
        Ok(())
    }
}

impl Aggregate for AiQuery {
    const KIND: &'static str = "aiquery";
    type Command = AiQueryCommand;
    type Event = AiQueryEvent;
    type Error = AiQueryError;

    fn decide(
        &self,
        command: &AiQueryCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<AiQueryEvent>, AiQueryError> {
        match command {
            AiQueryCommand::Submit {
                query_id,
                prompt,
                model,
            } => {
                if self.submitted.is_some() {
                    return Err(AiQueryError::AlreadyExists);
                }
                Ok(vec![AiQueryEvent::Submitted(AiQuerySubmitted {
                    query_id: query_id.clone(),
                    prompt: prompt.clone(),
                    model: model.clone(),
                    submitted_by: ctx.actor.user_id.clone(),
                    submitted_at: ctx.now,
                })])
            }
            AiQueryCommand::Start { attempt } => {
                self.live()?;
                crate::attempt::check_next(self.attempts, *attempt)?;
                Ok(vec![AiQueryEvent::Started(AiQueryStarted {
                    attempt: *attempt,
                    at: ctx.now,
                })])
            }
            AiQueryCommand::Complete {
                attempt,
                answer,
                model,
                usage,
                latency_ms,
            } => {
                self.current(*attempt)?;
                Ok(vec![AiQueryEvent::Completed(AiQueryCompleted {
                    attempt: *attempt,
                    answer: answer.clone(),
                    model: model.clone(),
                    usage: *usage,
                    latency_ms: *latency_ms,
                    at: ctx.now,
                })])
            }
            AiQueryCommand::Fail {
                attempt,
                error,
                retry_at,
            } => {
                self.current(*attempt)?;
                Ok(vec![match retry_at {
                    Some(retry_at) => AiQueryEvent::AttemptFailed(AiQueryAttemptFailed {
                        attempt: *attempt,
                        error: error.clone(),
                        retry_at: *retry_at,
                        at: ctx.now,
                    }),
                    None => AiQueryEvent::Failed(AiQueryFailed {
                        attempt: *attempt,
                        error: error.clone(),
                        at: ctx.now,
                    }),
                }])
            }
        }
    }

    fn apply(&mut self, event: &AiQueryEvent) {
        match event {
            AiQueryEvent::Submitted(e) => {
                self.status = Some(AiQueryStatus::Queued);
                self.updated_at = Some(e.submitted_at);
                self.submitted = Some(e.clone());
            }
            AiQueryEvent::Started(e) => {
                self.status = Some(AiQueryStatus::Processing);
                self.attempts = e.attempt;
                self.attempt_open = true;
                self.started_at.get_or_insert(e.at);
                self.retry_at = None;
                self.updated_at = Some(e.at);
            }
            AiQueryEvent::Completed(e) => {
                self.status = Some(AiQueryStatus::Completed);
                self.attempt_open = false;
                self.answer = Some(e.answer.clone());
                self.model_used = Some(e.model.clone());
                self.usage = Some(e.usage);
                self.latency_ms = Some(e.latency_ms);
                self.error = None;
                self.completed_at = Some(e.at);
                self.updated_at = Some(e.at);
            }
            AiQueryEvent::AttemptFailed(e) => {
                self.attempt_open = false;
                self.error = Some(e.error.clone());
                self.retry_at = Some(e.retry_at);
                self.updated_at = Some(e.at);
            }
            AiQueryEvent::Failed(e) => {
                self.status = Some(AiQueryStatus::Failed);
                self.attempt_open = false;
                self.error = Some(e.error.clone());
                self.completed_at = Some(e.at);
                self.updated_at = Some(e.at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{Actor, Role};

    fn ctx() -> CommandContext {
        CommandContext {
            actor: Actor {
                user_id: UserId::parse("worker").expect("id"),
                role: Role::Admin,
            },
            now: Utc::now(),
        }
    }

    fn run(q: &mut AiQuery, c: AiQueryCommand) -> Result<(), AiQueryError> {
        for e in q.decide(&c, &ctx())? {
            q.apply(&e);
        }
        Ok(())
    }

    #[test]
    fn each_attempt_is_claimed_once_and_ended_once() {
        let mut q = AiQuery::default();
        run(
            &mut q,
            AiQueryCommand::Submit {
                query_id: "q".into(),
                prompt: Prompt::parse("hi").expect("prompt"),
                model: ModelName::parse("m").expect("model"),
            },
        )
        .expect("submit");
        assert_eq!(q.status, Some(AiQueryStatus::Queued));
        run(&mut q, AiQueryCommand::Start { attempt: 1 }).expect("claim 1");
        assert!(matches!(
            run(&mut q, AiQueryCommand::Start { attempt: 1 }),
            Err(AiQueryError::NotThisAttempt { .. })
        ));
        let retry = AiQueryCommand::Fail {
            attempt: 1,
            error: "429".into(),
            retry_at: Some(Utc::now()),
        };
        run(&mut q, retry.clone()).expect("retry");
        assert!(run(&mut q, retry).is_err(), "an ended attempt ends once");
        run(&mut q, AiQueryCommand::Start { attempt: 2 }).expect("claim 2");
        run(
            &mut q,
            AiQueryCommand::Complete {
                attempt: 2,
                answer: "hello".into(),
                model: "m".into(),
                usage: TokenUsage::default(),
                latency_ms: 5,
            },
        )
        .expect("complete");
        assert_eq!(q.status, Some(AiQueryStatus::Completed));
        assert_eq!(q.attempts, 2);
        assert!(matches!(
            run(&mut q, AiQueryCommand::Start { attempt: 3 }),
            Err(AiQueryError::Finished(AiQueryStatus::Completed))
        ));
    }
}
