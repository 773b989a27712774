//! Request extractors that turn bad input into precise problems: JSON bodies (keeping the
//! raw bytes for idempotency hashing), `Idempotency-Key`, `If-Match` and
//! `X-Consistency-Token`.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use domain::ConsistencyToken;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

/// Largest accepted request body.
pub const BODY_LIMIT: usize = 64 * 1024;

/// A JSON body: malformed JSON is 400, a body of the wrong shape is 422 naming the field.
pub struct JsonBody<T> {
    pub value: T,
    pub bytes: Bytes,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                let m = m.trim().to_ascii_lowercase();
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            });
        if !is_json {
            return Err(ApiError::UnsupportedMediaType(
                "send the body as Content-Type: application/json".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit: BODY_LIMIT }
            } else {
                ApiError::BadRequest(format!("cannot read the body: {e}"))
            }
        })?;
        let value = parse(&bytes)?;
        Ok(Self { value, bytes })
    }
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Syntax first, so that a syntax error is never reported as a shape error.
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        return Err(ApiError::MalformedJson(format!(
            "the body is not valid JSON: {e}"
        )));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let field = if path == "." {
            // serde reports a missing or unknown field in the message, not the path.
            backticked(&inner).unwrap_or_else(|| "body".to_owned())
        } else {
            path
        };
        ApiError::Validation {
            detail: format!("{field}: {inner}"),
            field,
        }
    })
}

fn backticked(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_owned())
}

/// The `Idempotency-Key` header, if sent.
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(v) = parts.headers.get("idempotency-key") else {
            return Ok(Self(None));
        };
        let key = v
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|k| !k.is_empty() && k.len() <= 255)
            .ok_or_else(|| {
                ApiError::BadRequest(
                    "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
                )
            })?;
        Ok(Self(Some(key.to_owned())))
    }
}

impl IdempotencyKey {
    /// The key with the hash of what it guards: the route, the caller and the body.
    pub fn with_request(
        self,
        route: &str,
        user: &str,
        body: &[u8],
    ) -> Option<commands::Idempotency> {
        self.0.map(|key| {
            let mut h = Sha256::new();
            for part in [route.as_bytes(), user.as_bytes(), body] {
                h.update((part.len() as u64).to_be_bytes());
                h.update(part);
            }
            commands::Idempotency {
                key,
                request_hash: hex::encode(h.finalize()),
            }
        })
    }
}

/// `If-Match: "<version>"`, if sent.
pub struct IfMatch(pub Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(v) = parts.headers.get(header::IF_MATCH) else {
            return Ok(Self(None));
        };
        let version = v
            .to_str()
            .ok()
            .map(|s| s.trim().trim_start_matches("W/").trim_matches('"'))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                ApiError::BadRequest(r#"If-Match must be a version, as in If-Match: "3""#.into())
            })?;
        Ok(Self(Some(version)))
    }
}

pub const CONSISTENCY_HEADER: &str = "x-consistency-token";

/// `X-Consistency-Token`, if sent: the query waits for that write.
pub struct Consistency(pub Option<ConsistencyToken>);

impl<S: Send + Sync> FromRequestParts<S> for Consistency {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(v) = parts.headers.get(CONSISTENCY_HEADER) else {
            return Ok(Self(None));
        };
        let token = v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                ApiError::BadRequest("X-Consistency-Token is not a token this server issued".into())
            })?;
        Ok(Self(Some(token)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        title: String,
        n: Option<u32>,
    }

    #[test]
    fn syntax_errors_are_malformed_json() {
        assert!(matches!(
            parse::<Body>(b"{\"title\": "),
            Err(ApiError::MalformedJson(_))
        ));
    }

    #[test]
    fn shape_errors_name_the_field() {
        let field = |b: &[u8]| match parse::<Body>(b) {
            Err(ApiError::Validation { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        };
        assert_eq!(field(br#"{"n": 1}"#), "title");
        assert_eq!(field(br#"{"title": 5}"#), "title");
        assert_eq!(field(br#"{"title": "x", "n": -1}"#), "n");
        assert_eq!(field(br#"{"title": "x", "extra": 1}"#), "extra");
    }
}
