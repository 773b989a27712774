//! Request extractors that turn bad input into precise problems: JSON bodies (keeping the
//! raw bytes for idempotency hashing), query strings, path ids, `Idempotency-Key`,
//! `If-Match` and `X-Consistency-Token`. Each header's extractor documents itself
//! (`IntoParams`) from the rule it checks.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use commands::RequestIds;
use domain::{ConsistencyToken, Pattern, TextRule};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use utoipa::IntoParams;
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};

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
    // Every body is an object; serde would also read a struct from an array of its fields.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::Validation {
            field: "body".into(),
            detail: "body: must be a JSON object".into(),
        });
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de)
        .map_err(|e| shape_error(e.path().to_string(), e.into_inner().to_string()))
}

/// A value of the wrong shape at `path`: 422 naming the field.
fn shape_error(path: String, inner: String) -> ApiError {
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
}

fn backticked(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_owned())
}

/// A header's grammar, stated once for the extractor that checks it and for the document.
struct HeaderRule {
    name: &'static str,
    rule: TextRule,
}

impl HeaderRule {
    /// The header's value: `None` when absent, 400 naming the header when malformed.
    fn value<'a>(&self, parts: &'a Parts) -> Result<Option<&'a str>, ApiError> {
        let Some(v) = parts.headers.get(self.name) else {
            return Ok(None);
        };
        v.to_str()
            .ok()
            .filter(|v| self.rule.check("header", v).is_ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError::BadRequest(format!("{} must be {}", self.name, self.rule.description))
            })
    }

    fn parameter(&self) -> Vec<Parameter> {
        vec![
            ParameterBuilder::new()
                .name(self.name)
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(self.rule.description))
                .schema(Some(self.rule.schema()))
                .build(),
        ]
    }
}

static IDEMPOTENCY_KEY_PATTERN: Pattern = Pattern::new(r"^[!-~]+$");
const IDEMPOTENCY_KEY: HeaderRule = HeaderRule {
    name: "Idempotency-Key",
    rule: TextRule {
        pattern: Some(&IDEMPOTENCY_KEY_PATTERN),
        ..TextRule::chars(
            1,
            255,
            "1 to 255 visible ASCII characters; a retry with the same key and request answers the first result",
        )
    },
};

/// The `Idempotency-Key` header, if sent.
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(IDEMPOTENCY_KEY.value(parts)?.map(str::to_owned)))
    }
}

impl IntoParams for IdempotencyKey {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        IDEMPOTENCY_KEY.parameter()
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

static IF_MATCH_PATTERN: Pattern = Pattern::new(r#"^(?:W/)?"[0-9]{1,19}"$|^[0-9]{1,19}$"#);
const IF_MATCH: HeaderRule = HeaderRule {
    name: "If-Match",
    rule: TextRule {
        pattern: Some(&IF_MATCH_PATTERN),
        ..TextRule::chars(
            1,
            23,
            r#"the version the change expects, as the ETag gave it: "3" (412 when the resource is at another version)"#,
        )
    },
};

/// `If-Match: "<version>"`, if sent.
pub struct IfMatch(pub Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(v) = IF_MATCH.value(parts)? else {
            return Ok(Self(None));
        };
        let digits = v.trim_start_matches("W/").trim_matches('"');
        // Up to 19 digits always fit a u64.
        let version = digits
            .parse()
            .map_err(|_| ApiError::BadRequest("If-Match is out of range".into()))?;
        Ok(Self(Some(version)))
    }
}

impl IntoParams for IfMatch {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        IF_MATCH.parameter()
    }
}

pub const CONSISTENCY_HEADER: &str = "x-consistency-token";
const CONSISTENCY: HeaderRule = HeaderRule {
    name: "X-Consistency-Token",
    rule: ConsistencyToken::RULE,
};

/// `X-Consistency-Token`, if sent: the query waits for that write.
pub struct Consistency(pub Option<ConsistencyToken>);

impl<S: Send + Sync> FromRequestParts<S> for Consistency {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(v) = CONSISTENCY.value(parts)? else {
            return Ok(Self(None));
        };
        let token = v
            .parse()
            .map_err(|e: domain::ValidationError| ApiError::BadRequest(e.to_string()))?;
        Ok(Self(Some(token)))
    }
}

impl IntoParams for Consistency {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        CONSISTENCY.parameter()
    }
}

/// The query string as `T`: a parameter of the wrong shape is 422 naming it.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Self)
            .map_err(|e| shape_error(e.path().to_string(), e.into_inner().to_string()))
    }
}

/// A field that is present: `null` is refused (or is `T`'s own null), never taken for
/// "absent". For update bodies, where an absent field stays as it is.
pub(crate) fn present<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// The ids of a command from its request: a fresh command id, and the request's
/// `X-Request-Id` (a UUID unless the client sent another) as the correlation id, so that the
/// events, the logs and the client's own records of one request can be joined.
pub struct Ids(pub RequestIds);

impl<S: Send + Sync> FromRequestParts<S> for Ids {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::of(&parts.headers))
    }
}

impl Ids {
    /// The ids of a command of the request with `headers`.
    pub fn of(headers: &axum::http::HeaderMap) -> Self {
        let command_id = uuid::Uuid::now_v7();
        let correlation_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| uuid::Uuid::try_parse(v).ok())
            .unwrap_or(command_id);
        Self(RequestIds {
            command_id,
            correlation_id,
            causation_id: None,
        })
    }
}

/// A path parameter: one that cannot be read names nothing that exists, so it is 404.
pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|_| ApiError::NotFound("no such resource".into()))
    }
}

/// The id of a path that names a resource by UUID: only the canonical form (36 characters,
/// as the server issues it) names one; anything else is simply not found (`missing`).
pub(crate) fn canonical_uuid(id: &str, missing: &str) -> Result<String, crate::error::ApiError> {
    uuid::Uuid::try_parse(id)
        .ok()
        .filter(|_| id.len() == 36)
        .map(|u| u.to_string())
        .ok_or_else(|| crate::error::ApiError::NotFound(missing.to_owned()))
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
