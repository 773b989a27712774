//! The messages read model: one row per email, as `GET /messages/{id}` and `GET /messages`
//! serve it, folded through the aggregate's own `apply`.

use crate::ports::ProjectionError;
use chrono::{DateTime, Utc};
use domain::UserId;
use domain::message::{Body, Message, MessageEvent, MessageQueued, MessageStatus, Subject};
use domain::user::Email;
use serde::{Deserialize, Serialize};

pub const VIEW: &str = "messages";

/// An email as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessageView {
    pub message_id: String,
    pub tenant_id: String,
    /// QUEUED (waiting to be sent, or for its AI query to write the body), SENDING (an
    /// attempt under way, or the next one awaited after a failure), SENT or FAILED.
    pub status: MessageStatus,
    pub recipient: String,
    pub subject: String,
    /// The text sent; absent while an AI query writes it.
    pub body: Option<String>,
    /// The AI query whose answer is the body, when one writes it.
    pub ai_query_id: Option<String>,
    /// Deliveries tried so far.
    pub attempts: u32,
    /// The mail server's last reply: its acceptance once SENT, else why the last attempt
    /// failed (or why the message could not be sent).
    pub reply: Option<String>,
    /// When the next attempt comes, after a failed one.
    #[serde(default, with = "domain::time::rfc3339::option")]
    pub retry_at: Option<DateTime<Utc>>,
    #[serde(default, with = "domain::time::rfc3339::option")]
    pub sent_at: Option<DateTime<Utc>>,
    pub queued_by: String,
    #[serde(with = "domain::time::rfc3339")]
    pub queued_at: DateTime<Utc>,
    #[serde(with = "domain::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
    pub version: u64,
}

impl MessageView {
    pub fn from_state(tenant_id: &str, m: &Message, version: u64) -> Option<Self> {
        let q = m.queued.as_ref()?;
        Some(Self {
            message_id: q.message_id.clone(),
            tenant_id: tenant_id.to_owned(),
            status: m.status?,
            recipient: q.recipient.as_str().to_owned(),
            subject: q.subject.as_str().to_owned(),
            body: m.body.as_ref().map(|b| b.as_str().to_owned()),
            ai_query_id: q.ai_query_id.clone(),
            attempts: m.attempts,
            reply: m.reply.clone(),
            retry_at: m.retry_at,
            sent_at: m.sent_at,
            queued_by: q.queued_by.to_string(),
            queued_at: q.queued_at,
            updated_at: m.updated_at.unwrap_or(q.queued_at),
            version,
        })
    }

    /// The aggregate state this row shows. An attempt is open while SENDING with no retry
    /// awaited (a failed attempt sets `retry_at`, a claim clears it).
    fn state(&self) -> Result<Message, ProjectionError> {
        let bad =
            |e: &dyn std::fmt::Display| ProjectionError(format!("unreadable message row: {e}"));
        let body = self
            .body
            .as_deref()
            .map(Body::parse)
            .transpose()
            .map_err(|e| bad(&e))?;
        Ok(Message {
            queued: Some(MessageQueued {
                message_id: self.message_id.clone(),
                recipient: Email::parse(&self.recipient).map_err(|e| bad(&e))?,
                subject: Subject::parse(&self.subject).map_err(|e| bad(&e))?,
                // A body an AI query wrote came later than the message.
                body: if self.ai_query_id.is_some() {
                    None
                } else {
                    body.clone()
                },
                ai_query_id: self.ai_query_id.clone(),
                queued_by: UserId::parse(&self.queued_by).map_err(|e| bad(&e))?,
                queued_at: self.queued_at,
            }),
            body,
            status: Some(self.status),
            attempts: self.attempts,
            attempt_open: self.status == MessageStatus::Sending && self.retry_at.is_none(),
            sent_at: self.sent_at,
            reply: self.reply.clone(),
            retry_at: self.retry_at,
            updated_at: Some(self.updated_at),
        })
    }
}

crate::state_projection!(MessagesProjection, MessageView);

impl crate::ports::StateView for MessageView {
    type Aggregate = Message;
    const VIEW: &'static str = VIEW;

    fn starts(e: &MessageEvent) -> bool {
        matches!(e, MessageEvent::Queued(_))
    }

    fn of_state(tenant_id: &str, state: &Message, version: u64) -> Option<Self> {
        Self::from_state(tenant_id, state, version)
    }

    fn into_state(self) -> Result<Message, ProjectionError> {
        self.state()
    }
}
