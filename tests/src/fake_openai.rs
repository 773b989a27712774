//! A local stand-in for the OpenAI chat-completions API, speaking its real JSON: replies
//! shaped as `chat.completion` objects, failures as `{"error": {message, type, param,
//! code}}` with the real statuses and `Retry-After`. What it does depends on the prompt:
//!
//! | prompt starts with   | answer |
//! | -------------------- | ------ |
//! | `rate-limit-once`    | 429 `rate_limit_exceeded` with `Retry-After: 1`, then success |
//! | `insufficient-quota` | 429 `insufficient_quota` |
//! | `server-error`       | 500, every time |
//! | `slow-once`          | the first call answers after 3 s, later ones at once |
//! | `slow`               | answers after 3 s |
//! | `malformed`          | 200 with a body that is not a completion |
//! | `bad-request`        | 400 `invalid_request_error` |
//! | `heavy`              | success, using 1,000,000 tokens |
//! | anything else        | success: `echo: <prompt>`, 10 + 5 tokens |
//!
//! A request without `Authorization: Bearer <key>` is 401 `invalid_api_key`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone)]
pub struct FakeOpenAi {
    pub base_url: String,
    pub key: String,
    calls: Arc<Mutex<HashMap<String, u32>>>,
}

impl FakeOpenAi {
    /// Starts the server on a loopback port, for the life of the test's runtime.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let fake = Self {
            base_url: format!("http://{addr}/v1"),
            key: "sk-test-fake-key-0123456789".to_owned(),
            calls: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(complete))
            .with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        fake
    }

    /// How many calls a prompt got.
    pub fn calls(&self, prompt: &str) -> u32 {
        self.calls
            .lock()
            .expect("calls")
            .get(prompt)
            .copied()
            .unwrap_or(0)
    }
}

fn error(status: StatusCode, message: &str, kind: &str, code: Option<&str>) -> Response {
    (
        status,
        Json(json!({"error": {"message": message, "type": kind, "param": null, "code": code}})),
    )
        .into_response()
}

fn completion(model: &str, answer: &str, prompt_tokens: u64, completion_tokens: u64) -> Response {
    Json(json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_764_547_200,
        "model": format!("{model}-2026-01-01"),
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": answer, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens
        },
        "system_fingerprint": "fp_fake"
    }))
    .into_response()
}

async fn complete(
    State(fake): State<FakeOpenAi>,
    headers: HeaderMap,
    body: Json<Value>,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if auth != format!("Bearer {}", fake.key) {
        return error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided.",
            "invalid_request_error",
            Some("invalid_api_key"),
        );
    }
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    let prompt = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned();
    let n = {
        let mut calls = fake.calls.lock().expect("calls");
        let n = calls.entry(prompt.clone()).or_default();
        *n += 1;
        *n
    };
    let ok = || completion(&model, &format!("echo: {prompt}"), 10, 5);
    if prompt.starts_with("rate-limit-once") {
        if n == 1 {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "Rate limit reached for requests",
                "requests",
                Some("rate_limit_exceeded"),
            );
            r.headers_mut()
                .insert("retry-after", "1".parse().expect("value"));
            return r;
        }
        ok()
    } else if prompt.starts_with("insufficient-quota") {
        error(
            StatusCode::TOO_MANY_REQUESTS,
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            Some("insufficient_quota"),
        )
    } else if prompt.starts_with("server-error") {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server had an error while processing your request.",
            "server_error",
            None,
        )
    } else if prompt.starts_with("slow-once") {
        if n == 1 {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        ok()
    } else if prompt.starts_with("slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
        ok()
    } else if prompt.starts_with("malformed") {
        (
            StatusCode::OK,
            [("content-type", "application/json")],
            "{\"id\": \"chatcmpl-fake\", \"choices\": ",
        )
            .into_response()
    } else if prompt.starts_with("bad-request") {
        error(
            StatusCode::BAD_REQUEST,
            "Invalid value for 'model'.",
            "invalid_request_error",
            Some("model_not_found"),
        )
    } else if prompt.starts_with("heavy") {
        completion(&model, "a long answer", 400_000, 600_000)
    } else {
        ok()
    }
}
