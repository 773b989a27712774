//! One error type for the HTTP layer and its status table. Every error is an RFC 9457
//! `application/problem+json` body with a stable `type`; internal causes are logged, never
//! sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use commands::ai::AiError;
use commands::cases::CaseCommandError;
use commands::commerce::CommerceError;
use commands::customers::CrmCommandError;
use commands::{AccessError, CommandError, StoreError};
use domain::ValidationError;
use domain::ai_query::AiQueryError;
use domain::case::CaseError;
use domain::customer_sync::SyncError;
use domain::order::OrderError;
use domain::product::ProductError;
use domain::task::TaskError;
use domain::tenant::TenantError;
use domain::user::{InvitationError, UserError};
use projections::ReadModelError;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    MalformedJson(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{detail}")]
    Validation { field: String, detail: String },
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{detail}")]
    Unauthenticated { detail: String, challenge: String },
    #[error("{0}")]
    Forbidden(String),
    #[error("the tenant is suspended; its users cannot act until an operator reactivates it")]
    TenantSuspended,
    #[error("the tenant is deleted")]
    TenantDeleted,
    /// A feature the tenant's tier does not include: 403 naming it.
    #[error("{detail}")]
    FeatureUnavailable {
        feature: &'static str,
        detail: String,
    },
    /// A tier limit: 403 naming the limit and its value.
    #[error("{detail}")]
    LimitReached {
        limit: &'static str,
        value: u32,
        detail: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Gone(String),
    #[error("this method is not allowed on this path")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("the resource is at version {actual}, not {expected}")]
    PreconditionFailed { expected: u64, actual: u64 },
    #[error("the Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    #[error(
        "the tenant's rate limit of {limit} requests per second is used up; retry in {retry_after_secs} s"
    )]
    RateLimited { limit: u32, retry_after_secs: u64 },
    #[error("too many sign-in attempts for this account; retry in {retry_after_secs} s")]
    TooManyAttempts { retry_after_secs: u64 },
    /// A customer opened the tier's `cases_per_customer_per_hour`: 429 with `Retry-After`.
    #[error("{detail}")]
    TooManyCases {
        limit: u32,
        retry_after_secs: u64,
        detail: String,
    },
    #[error("{0}")]
    Unavailable(String),
    /// A capability the server was started without (no AI provider): 503, no retry hint.
    #[error("{0}")]
    NotConfigured(String),
    /// A metered budget of the tier used up until `resets_at`: 429.
    #[error("{detail}")]
    QuotaExceeded {
        budget: u64,
        used: u64,
        resets_at: chrono::DateTime<chrono::Utc>,
        detail: String,
    },
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            Self::MalformedJson(_) => (S::BAD_REQUEST, "malformed-json", "Malformed JSON"),
            Self::BadRequest(_) => (S::BAD_REQUEST, "bad-request", "Bad request"),
            Self::Validation { .. } => (
                S::UNPROCESSABLE_ENTITY,
                "validation-failed",
                "Validation failed",
            ),
            Self::PayloadTooLarge { .. } => (
                S::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
            ),
            Self::UnsupportedMediaType(_) => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            Self::Unauthenticated { .. } => (S::UNAUTHORIZED, "unauthenticated", "Unauthenticated"),
            Self::Forbidden(_) => (S::FORBIDDEN, "forbidden", "Forbidden"),
            Self::TenantSuspended => (S::FORBIDDEN, "tenant-suspended", "Tenant suspended"),
            Self::TenantDeleted => (S::FORBIDDEN, "tenant-deleted", "Tenant deleted"),
            Self::LimitReached { .. } => (S::FORBIDDEN, "limit-reached", "Tier limit reached"),
            Self::FeatureUnavailable { .. } => (
                S::FORBIDDEN,
                "feature-unavailable",
                "Feature not in the tier",
            ),
            Self::NotFound(_) => (S::NOT_FOUND, "not-found", "Not found"),
            Self::Gone(_) => (S::GONE, "gone", "Gone"),
            Self::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            Self::Conflict(_) => (S::CONFLICT, "conflict", "Conflict"),
            Self::PreconditionFailed { .. } => (
                S::PRECONDITION_FAILED,
                "precondition-failed",
                "Precondition failed",
            ),
            Self::IdempotencyKeyReused => (
                S::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency key reused",
            ),
            Self::RateLimited { .. } => (S::TOO_MANY_REQUESTS, "rate-limited", "Too many requests"),
            Self::TooManyAttempts { .. } => (
                S::TOO_MANY_REQUESTS,
                "too-many-attempts",
                "Too many sign-in attempts",
            ),
            Self::TooManyCases { .. } => (
                S::TOO_MANY_REQUESTS,
                "too-many-cases",
                "Too many cases this hour",
            ),
            Self::Unavailable(_) => (S::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable"),
            Self::NotConfigured(_) => (S::SERVICE_UNAVAILABLE, "not-configured", "Not configured"),
            Self::QuotaExceeded { .. } => {
                (S::TOO_MANY_REQUESTS, "quota-exceeded", "Quota exceeded")
            }
            Self::Internal(_) => (
                S::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal server error",
            ),
        }
    }

    pub fn validation(e: ValidationError) -> Self {
        Self::Validation {
            field: e.field.to_owned(),
            detail: e.to_string(),
        }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }
}

/// An RFC 9457 problem, as the OpenAPI document describes error bodies.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Stable URI of the kind of problem, e.g. `urn:chronicle:problem:validation-failed`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What went wrong, for a person.
    pub detail: String,
    /// The offending input, on validation failures.
    pub field: Option<String>,
    /// The tier feature, on `feature-unavailable` (e.g. `custom_branding`).
    pub feature: Option<String>,
    /// The tier limit, on `limit-reached` (e.g. `max_users`).
    pub limit: Option<String>,
    /// The limit's value for the tenant's tier, on `limit-reached`.
    pub value: Option<u32>,
    /// The month's budget, on `quota-exceeded` (AI tokens).
    pub budget: Option<u64>,
    /// How much of it is used, on `quota-exceeded`.
    pub used: Option<u64>,
    /// When the budget resets, on `quota-exceeded`.
    pub resets_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The problem `type` URI for a slug.
pub fn problem_type(slug: &str) -> String {
    format!("urn:chronicle:problem:{slug}")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, slug, title) = self.parts();
        let detail = match &self {
            Self::Internal(cause) => {
                tracing::error!(error = %cause, "internal error");
                "an internal error occurred; it has been logged".to_owned()
            }
            Self::Unavailable(cause) => {
                tracing::warn!(error = %cause, "unavailable");
                cause.clone()
            }
            other => other.to_string(),
        };
        let mut body = json!({
            "type": problem_type(slug),
            "title": title,
            "status": status.as_u16(),
            "detail": detail,
        });
        if let Self::Validation { field, .. } = &self {
            body["field"] = json!(field);
        }
        if let Self::LimitReached { limit, value, .. } = &self {
            body["limit"] = json!(limit);
            body["value"] = json!(value);
        }
        if let Self::TooManyCases { limit, .. } = &self {
            body["limit"] = json!("cases_per_customer_per_hour");
            body["value"] = json!(limit);
        }
        if let Self::FeatureUnavailable { feature, .. } = &self {
            body["feature"] = json!(feature);
        }
        if let Self::QuotaExceeded {
            budget,
            used,
            resets_at,
            ..
        } = &self
        {
            body["budget"] = json!(budget);
            body["used"] = json!(used);
            body["resets_at"] = json!(resets_at);
        }
        let mut response = (status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match &self {
            Self::Unauthenticated { challenge, .. } => {
                if let Ok(v) = HeaderValue::from_str(challenge) {
                    headers.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            Self::RateLimited {
                limit,
                retry_after_secs,
            } => {
                for (name, value) in [
                    ("retry-after", retry_after_secs.to_string()),
                    ("ratelimit-limit", limit.to_string()),
                    ("ratelimit-remaining", "0".to_owned()),
                    ("ratelimit-reset", retry_after_secs.to_string()),
                ] {
                    if let Ok(v) = HeaderValue::from_str(&value) {
                        headers.insert(name, v);
                    }
                }
            }
            Self::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Self::TooManyAttempts { retry_after_secs }
            | Self::TooManyCases {
                retry_after_secs, ..
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            Self::QuotaExceeded { resets_at, .. } => {
                let secs = (*resets_at - chrono::Utc::now()).num_seconds().max(1);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            _ => {}
        }
        response
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self::validation(e)
    }
}

impl From<ReadModelError> for ApiError {
    fn from(e: ReadModelError) -> Self {
        match e {
            ReadModelError::Unavailable(m) => Self::Unavailable(m),
            other => Self::internal(other),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Retryable(m) => Self::Unavailable(m),
            StoreError::IdempotencyMismatch { .. } => Self::IdempotencyKeyReused,
            other => Self::internal(other),
        }
    }
}

impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> Self {
        match e {
            TaskError::NotFound => Self::NotFound("no such task".into()),
            TaskError::AlreadyExists => Self::Conflict("the task already exists".into()),
            e @ TaskError::Deleted => Self::Gone(e.to_string()),
            TaskError::NotAllowed(why) => Self::Forbidden(why.into()),
        }
    }
}

impl From<ProductError> for ApiError {
    fn from(e: ProductError) -> Self {
        match e {
            ProductError::NotFound => Self::NotFound("no such product".into()),
            e @ ProductError::Deleted => Self::Gone(e.to_string()),
            e @ ProductError::NotAllowed => Self::Forbidden(e.to_string()),
            e @ ProductError::AlreadyExists => Self::Conflict(e.to_string()),
            e @ (ProductError::InsufficientStock { .. } | ProductError::TooMuchStock) => {
                Self::Validation {
                    field: "delta".into(),
                    detail: format!("delta: {e}"),
                }
            }
        }
    }
}

impl From<OrderError> for ApiError {
    fn from(e: OrderError) -> Self {
        match e {
            OrderError::NotFound => Self::NotFound("no such order".into()),
            e @ (OrderError::InvalidTransition { .. } | OrderError::AlreadyExists) => {
                Self::Conflict(e.to_string())
            }
            OrderError::NotAllowed(why) => Self::Forbidden(why.into()),
        }
    }
}

impl From<AiQueryError> for ApiError {
    fn from(e: AiQueryError) -> Self {
        match e {
            AiQueryError::NotFound => Self::NotFound("no such query".into()),
            e => Self::Conflict(e.to_string()),
        }
    }
}

impl From<commands::sftp::SftpError> for ApiError {
    fn from(e: commands::sftp::SftpError) -> Self {
        use commands::sftp::SftpError as S;
        use domain::sftp::SftpImportError;
        match e {
            S::Connection(c) => Self::NotFound(c.to_string()),
            S::Import(SftpImportError::NotFound) => Self::NotFound("no such import".into()),
            e => Self::Conflict(e.to_string()),
        }
    }
}

impl From<commands::messages::MessageCommandError> for ApiError {
    fn from(e: commands::messages::MessageCommandError) -> Self {
        use commands::messages::MessageCommandError as M;
        use domain::message::MessageError;
        match e {
            M::Message(MessageError::NotFound) => Self::NotFound("no such message".into()),
            M::Message(e @ MessageError::NoBody) => Self::Validation {
                field: "body".into(),
                detail: e.to_string(),
            },
            M::Message(e) => Self::Conflict(e.to_string()),
            M::Tenant(t) => t.into(),
            M::Ai(a) => a.into(),
            M::Suppression(s) => Self::NotFound(s.to_string()),
            e @ M::Suppressed { .. } => Self::Validation {
                field: "recipient".into(),
                detail: e.to_string(),
            },
            M::DailyLimit {
                limit, resets_at, ..
            } => Self::QuotaExceeded {
                budget: u64::from(limit),
                used: u64::from(limit),
                resets_at,
                detail: e.to_string(),
            },
        }
    }
}

impl From<AiError> for ApiError {
    fn from(e: AiError) -> Self {
        match e {
            AiError::Query(q) => q.into(),
            AiError::Tenant(t) => t.into(),
            e @ AiError::PromptTooLong { .. } => Self::Validation {
                field: "prompt".into(),
                detail: e.to_string(),
            },
            AiError::QuotaExceeded {
                budget,
                used,
                resets_at,
            } => Self::QuotaExceeded {
                budget,
                used,
                resets_at,
                detail: e.to_string(),
            },
        }
    }
}

impl From<CrmCommandError> for ApiError {
    fn from(e: CrmCommandError) -> Self {
        match e {
            CrmCommandError::Connection(c) => Self::Conflict(format!(
                "{c}: connect it first (PUT /salesforce/connection)"
            )),
            CrmCommandError::Sync(SyncError::NotFound) => Self::NotFound("no such sync".into()),
            e @ (CrmCommandError::Sync(_) | CrmCommandError::Slot(_)) => {
                Self::Conflict(e.to_string())
            }
            CrmCommandError::Case(c) => c.into(),
            CrmCommandError::Customer(c) => Self::NotFound(c.to_string()),
        }
    }
}

impl From<commands::agents::AgentError> for ApiError {
    fn from(e: commands::agents::AgentError) -> Self {
        use commands::agents::AgentError as A;
        match e {
            A::Customer(c) => Self::NotFound(c.to_string()),
            e @ A::NotStaff(_) => Self::Validation {
                field: "user_id".into(),
                detail: e.to_string(),
            },
            A::User(u) => Self::internal(u.to_string()),
        }
    }
}

impl From<CaseCommandError> for ApiError {
    fn from(e: CaseCommandError) -> Self {
        match e {
            CaseCommandError::Case(c) => c.into(),
            CaseCommandError::Tenant(t) => t.into(),
            CaseCommandError::TooMany(t) => Self::TooManyCases {
                limit: t.limit,
                retry_after_secs: t.retry_after_secs,
                detail: t.to_string(),
            },
            CaseCommandError::NoCustomer => Self::NotFound("no such customer".into()),
        }
    }
}

impl From<commands::documents::DocumentError> for ApiError {
    fn from(e: commands::documents::DocumentError) -> Self {
        Self::Forbidden(e.to_string())
    }
}

impl From<commands::ledger::LedgerError> for ApiError {
    fn from(e: commands::ledger::LedgerError) -> Self {
        use commands::ledger::LedgerError as L;
        match e {
            L::Account(a) => a.into(),
            L::NoCustomer => Self::NotFound("no such customer".into()),
            e @ L::NotTheAgent => Self::Forbidden(e.to_string()),
            e @ L::SameAccount => Self::Conflict(e.to_string()),
            L::Transaction(domain::transaction::TransactionError::NotFound) => {
                Self::NotFound("no such transaction".into())
            }
            L::Transaction(t) => Self::Conflict(t.to_string()),
        }
    }
}

impl From<domain::account::AccountError> for ApiError {
    fn from(e: domain::account::AccountError) -> Self {
        match e {
            domain::account::AccountError::NotFound => Self::NotFound("no such account".into()),
            other => Self::Conflict(other.to_string()),
        }
    }
}

impl From<domain::transaction::TransactionError> for ApiError {
    fn from(e: domain::transaction::TransactionError) -> Self {
        match e {
            domain::transaction::TransactionError::NotFound => {
                Self::NotFound("no such transaction".into())
            }
            other => Self::Conflict(other.to_string()),
        }
    }
}

impl From<CaseError> for ApiError {
    fn from(e: CaseError) -> Self {
        match e {
            CaseError::NotFound => Self::NotFound("no such case".into()),
            CaseError::AlreadyExists => Self::Conflict(e.to_string()),
        }
    }
}

impl From<CommerceError> for ApiError {
    fn from(e: CommerceError) -> Self {
        match e {
            CommerceError::Product(p) => p.into(),
            CommerceError::Order(o) => o.into(),
            CommerceError::Tenant(t) => t.into(),
            CommerceError::Invalid(v) => Self::validation(v),
        }
    }
}

/// A command's failure: the domain's rejection as its own error says, the rest alike for
/// every command.
impl From<std::convert::Infallible> for ApiError {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}

impl<E: std::error::Error + 'static> From<CommandError<E>> for ApiError
where
    ApiError: From<E>,
{
    fn from(e: CommandError<E>) -> Self {
        match e {
            CommandError::Rejected(e) => e.into(),
            CommandError::PreconditionFailed { expected, actual } => {
                Self::PreconditionFailed { expected, actual }
            }
            CommandError::IdempotencyMismatch => Self::IdempotencyKeyReused,
            CommandError::Contended(n) => {
                Self::Conflict(format!("changed concurrently {n} times in a row; retry"))
            }
            CommandError::Taken(what) => Self::Conflict(format!("the {what} is already taken")),
            CommandError::Corrupt(e) => Self::internal(e),
            CommandError::Store(e) => e.into(),
        }
    }
}

impl From<TenantError> for ApiError {
    fn from(e: TenantError) -> Self {
        match e {
            TenantError::NotFound => Self::NotFound("no such tenant".into()),
            TenantError::AlreadyRegistered | TenantError::LastOwner => {
                Self::Conflict(e.to_string())
            }
            TenantError::Deleted => Self::TenantDeleted,
            TenantError::Suspended => Self::TenantSuspended,
            TenantError::FeatureNotInTier { feature, .. } => Self::FeatureUnavailable {
                feature,
                detail: e.to_string(),
            },
            TenantError::LimitReached { limit, value, .. } => Self::LimitReached {
                limit,
                value,
                detail: e.to_string(),
            },
        }
    }
}

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::Invalid(v) => Self::validation(v),
            AccessError::EmailTaken => Self::Conflict(e.to_string()),
            AccessError::Tenant(t) => t.into(),
            AccessError::User(UserError::NotFound) => Self::NotFound("no such user".into()),
            AccessError::User(u @ UserError::AlreadyExists) => Self::Conflict(u.to_string()),
            AccessError::User(u @ UserError::SelfLockout) => Self::Conflict(u.to_string()),
            AccessError::User(u @ UserError::PortalRole) => Self::Validation {
                field: "role".into(),
                detail: u.to_string(),
            },
            AccessError::NoCustomer => Self::NotFound("no such customer".into()),
            e @ AccessError::NeedsOwner => Self::Forbidden(e.to_string()),
            // The code is a credential: one that opens nothing is refused, not malformed.
            AccessError::Invitation(InvitationError::Invalid) => Self::Forbidden(
                "the invitation code is not valid (unknown, used or expired)".into(),
            ),
            AccessError::Invitation(i) => Self::Conflict(i.to_string()),
            AccessError::BadCredentials => Self::Unauthenticated {
                detail: e.to_string(),
                challenge: r#"Bearer realm="chronicle""#.into(),
            },
            AccessError::BadRefreshToken => Self::Unauthenticated {
                detail: e.to_string(),
                challenge: r#"Bearer realm="chronicle", error="invalid_token""#.into(),
            },
            AccessError::IdempotencyMismatch => Self::IdempotencyKeyReused,
            AccessError::Contended(n) => {
                Self::Conflict(format!("changed concurrently {n} times in a row; retry"))
            }
            AccessError::Store(s) => s.into(),
            AccessError::Corrupt(c) => Self::internal(c),
            AccessError::Hashing(h) => Self::internal(h),
        }
    }
}
