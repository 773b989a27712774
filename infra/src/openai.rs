//! The OpenAI chat-completions client (`async-openai`), as the AI worker's `LanguageModel`.
//! Any compatible server works (`OPENAI_BASE_URL`). Each call is one attempt: the crate's
//! own retries are replaced by a plain service of ours (`with_http_service`), which also
//! keeps the `Retry-After` of a refused call for the worker's backoff. The key travels only
//! in the request's header; it is never logged.

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use async_openai::types::chat::{
    ChatCompletionRequestUserMessage, CreateChatCompletionRequestArgs,
};
use commands::ai_worker::{LanguageModel, ModelReply};
use commands::attempts::CallFailure;
use domain::ai_query::TokenUsage;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The OpenAI API, when `OPENAI_BASE_URL` is not set.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Where the model is and how to reach it.
#[derive(Clone)]
pub struct OpenAiSettings {
    pub api_key: String,
    pub base_url: String,
    /// One call's limit, also enforced by the worker.
    pub timeout: Duration,
}

impl std::fmt::Debug for OpenAiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiSettings")
            .field("api_key", &"<redacted>")
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .finish()
    }
}

pub struct OpenAiModel {
    config: OpenAIConfig,
    http: reqwest::Client,
}

impl OpenAiModel {
    pub fn new(settings: &OpenAiSettings) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .build()?;
        let config = OpenAIConfig::new()
            .with_api_key(settings.api_key.clone())
            .with_api_base(settings.base_url.trim_end_matches('/'));
        Ok(Self { config, http })
    }

    /// A client whose requests go straight to the server once, noting `Retry-After`.
    fn client(&self, retry_after: Arc<Mutex<Option<Duration>>>) -> Client<OpenAIConfig> {
        let http = self.http.clone();
        let send = tower::service_fn(move |factory: HttpRequestFactory| {
            let (http, slot) = (http.clone(), retry_after.clone());
            async move {
                let request = factory.build().await?;
                let response = http.execute(request).await.map_err(OpenAIError::Reqwest)?;
                let after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(Duration::from_secs_f64);
                *slot.lock().unwrap_or_else(PoisonError::into_inner) = after;
                Ok::<_, OpenAIError>(response)
            }
        });
        Client::with_config(self.config.clone())
            .with_http_client(self.http.clone())
            .with_http_service(send)
    }
}

#[async_trait::async_trait]
impl LanguageModel for OpenAiModel {
    async fn complete(&self, model: &str, prompt: &str) -> Result<ModelReply, CallFailure> {
        let retry_after = Arc::new(Mutex::new(None));
        let client = self.client(retry_after.clone());
        let request = CreateChatCompletionRequestArgs::default()
            .model(model)
            .messages([ChatCompletionRequestUserMessage::from(prompt).into()])
            .build()
            .map_err(|e| CallFailure::Permanent {
                reason: format!("the request could not be built: {e}"),
            })?;
        let reply = client.chat().create(request).await;
        let after = *retry_after.lock().unwrap_or_else(PoisonError::into_inner);
        let reply = reply.map_err(|e| classify(e, after))?;
        let answer = reply
            .choices
            .first()
            .and_then(|c| c.message.content.clone())
            .ok_or_else(|| CallFailure::Permanent {
                reason: "the model's reply had no answer".into(),
            })?;
        let usage = reply
            .usage
            .map_or_else(TokenUsage::default, |u| TokenUsage {
                prompt_tokens: u64::from(u.prompt_tokens),
                completion_tokens: u64::from(u.completion_tokens),
                total_tokens: u64::from(u.total_tokens),
            });
        Ok(ModelReply {
            answer,
            model: reply.model,
            usage,
        })
    }
}

/// Which failures another attempt may fix: rate limits (but not a used-up quota), 5xx,
/// 408/409, timeouts and connection errors. 400, 401, 403, 404 and the rest fail at once,
/// as does an answer that cannot be read.
fn classify(e: OpenAIError, retry_after: Option<Duration>) -> CallFailure {
    match e {
        OpenAIError::ApiError(r) => {
            let status = r.status_code.as_u16();
            let code = r.api_error.code.as_deref().unwrap_or_default();
            let mut message = r.api_error.message.clone();
            if message.len() > 300 {
                let cut = (0..=300)
                    .rev()
                    .find(|i| message.is_char_boundary(*i))
                    .unwrap_or(0);
                message.truncate(cut);
            }
            let reason = if code.is_empty() {
                format!("the model answered {status}: {message}")
            } else {
                format!("the model answered {status} ({code}): {message}")
            };
            let retryable = match status {
                429 => code != "insufficient_quota",
                408 | 409 => true,
                s => s >= 500,
            };
            if retryable {
                CallFailure::Retryable {
                    reason,
                    retry_after,
                }
            } else {
                CallFailure::Permanent { reason }
            }
        }
        OpenAIError::Reqwest(e) => CallFailure::Retryable {
            reason: if e.is_timeout() {
                "the model did not answer in time".to_owned()
            } else if e.is_connect() {
                "the model's server could not be reached".to_owned()
            } else {
                format!("the call to the model failed: {e}")
            },
            retry_after: None,
        },
        OpenAIError::JSONDeserialize(e, _) => CallFailure::Permanent {
            reason: format!("the model's reply could not be read: {e}"),
        },
        other => CallFailure::Permanent {
            reason: format!("the call to the model failed: {other}"),
        },
    }
}
