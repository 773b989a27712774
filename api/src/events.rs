//! `GET /events/stream`: the tenant's events as Server-Sent Events, live, each sent once
//! the read models show it (a client that re-reads a resource on an event finds the change),
//! filtered by what the caller may see:
//! - private streams (credentials, sessions, invitations, connections) never;
//! - an ADMIN (or OWNER): every other event of the tenant;
//! - a MEMBER: tasks, products and orders; customers, accounts, cases and documents of the
//!   customers they see (all, or under `customer_access: assigned` only those whose agent
//!   they are); transactions when they see every customer; the AI queries and messages
//!   they submitted; nothing else (fail closed);
//! - a CUSTOMER: only their own customer's cases and documents, without payloads (the
//!   portal routes serve what a customer may read of them).
//!
//! Each page of events ends with an `id:` (the feed cursor after it, base64url). A client
//! that reconnects with `Last-Event-ID` (browsers' EventSource does it by itself) resumes
//! after it: delivery is at least once, and `event_id` tells a repeat. Without one the
//! stream starts at the tenant's newest event. A comment line every 15 s keeps idle
//! connections open. A tenant holds at most `MAX_STREAMS_PER_TENANT` streams at once.
//!
//! An idle stream does not poll the log: it waits for the tenant's read models to change
//! (`AppState::changes`), fed by the projectors' commits on the embedded backend and by
//! the views table's DynamoDB stream on AWS (`infra::aws::view_changes`), then reads the
//! log after its cursor. It looks anyway every `UNFED_POLL` while nothing feeds the changes
//! (an AWS views table without its stream) and every `FED_RECHECK` otherwise.

use crate::app::{AppState, Routes};
use crate::error::{ApiError, Problem};
use crate::extract::QueryParams;
use crate::query::Cursor;
use crate::scope::{ClientScope, sees_customer, sees_row};
use crate::tokens::Principal;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use commands::store::{EventStore, FeedCursor};
use domain::{ConsistencyToken, EventEnvelope, Role, TenantId};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Streams one tenant may hold open at once.
pub const MAX_STREAMS_PER_TENANT: usize = 64;

/// Events read from the log per step.
const PAGE: usize = 200;

/// How often an idle stream looks for new events while nothing tells it of changes.
const UNFED_POLL: Duration = Duration::from_millis(200);

/// How often an idle stream looks for new events that no change told it of (a change that
/// no projector commit made: a private stream's, or a lost stream record).
const FED_RECHECK: Duration = Duration::from_secs(10);

/// How long one wait for the read models lasts before it is tried again.
const APPLIED_WAIT: Duration = Duration::from_secs(5);

/// The open streams per tenant.
#[derive(Debug, Default)]
pub struct OpenStreams {
    open: Mutex<HashMap<TenantId, usize>>,
}

/// One open stream: counted while it lives.
struct Slot {
    streams: Arc<OpenStreams>,
    tenant: TenantId,
}

impl OpenStreams {
    fn take(self: &Arc<Self>, tenant: &TenantId) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(tenant.clone()).or_default();
        if *n >= MAX_STREAMS_PER_TENANT {
            return None;
        }
        *n += 1;
        Some(Slot {
            streams: self.clone(),
            tenant: tenant.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .streams
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.tenant);
            }
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamParams {
    /// Resume after this event id (as `Last-Event-ID` does; the header wins).
    #[param(inline)]
    after: Option<Cursor>,
}

/// One event as the stream sends it (the SSE `data`, with `event:` its type).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = StreamedEvent)]
pub struct StreamedEvent {
    event_id: String,
    event_type: String,
    stream_id: String,
    version: u64,
    recorded_at: chrono::DateTime<chrono::Utc>,
    /// Who acted (a user id, or `system:…` for a worker).
    actor: String,
    /// The event's payload; absent for a CUSTOMER.
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<serde_json::Value>,
}

#[utoipa::path(get, path = "/events/stream", tag = "events", operation_id = "StreamEvents",
    params(StreamParams,
        ("Last-Event-ID" = Option<String>, Header, description = "the `id` of the last event received: the stream resumes after it")),
    responses(
        (status = 200, content_type = "text/event-stream", body = StreamedEvent,
            description = "Server-Sent Events: `event:` the event type, `data:` the event as JSON, `id:` on the last event of each page; a comment every 15 s"),
        (status = 422, body = Problem, description = "the resume id is not one this stream issued"),
        (status = 429, body = Problem, description = "the tenant has the most streams open it may")),
    security(("bearer" = ["ADMIN", "MEMBER", "CUSTOMER"])))]
pub async fn stream(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    QueryParams(params): QueryParams<StreamParams>,
) -> Result<Response, ApiError> {
    let resume = match headers.get("last-event-id") {
        Some(v) => Some(Cursor::parse(
            "Last-Event-ID",
            v.to_str().unwrap_or_default(),
        )?),
        None => params.after,
    };
    let store = state.commands.store().clone();
    let cursor = match resume {
        Some(c) => {
            let cursor = FeedCursor(c.position());
            // A cursor this store cannot read is refused now, not mid-stream.
            store
                .read_tenant_feed(&principal.tenant_id, &cursor, 1)
                .await
                .map_err(|_| ApiError::Validation {
                    field: "Last-Event-ID".into(),
                    detail: "not an event id this stream issued".into(),
                })?;
            cursor
        }
        None => store.tenant_feed_end(&principal.tenant_id).await?,
    };
    let Some(slot) = state.streams.take(&principal.tenant_id) else {
        return Err(ApiError::RateLimited {
            limit: MAX_STREAMS_PER_TENANT as u32,
            retry_after_secs: 5,
        });
    };
    tracing::info!(tenant_id = %principal.tenant_id, user_id = %principal.actor.user_id, "event stream opened");
    let changes = state.changes.subscribe(&principal.tenant_id);
    let reader = Reader {
        changes,
        state,
        principal,
        store,
        cursor,
        pending: VecDeque::new(),
        _slot: slot,
    };
    let events = futures::stream::unfold(reader, |mut r| async move {
        let next = r.next().await;
        Some((Ok::<Event, Infallible>(next), r))
    });
    Ok(Sse::new(events)
        .keep_alive(
            KeepAlive::new()
                .interval(Duration::from_secs(15))
                .text("heartbeat"),
        )
        .into_response())
}

struct Reader {
    changes: projections::changes::Subscription,
    state: AppState,
    principal: Principal,
    store: Arc<dyn EventStore>,
    cursor: FeedCursor,
    pending: VecDeque<Event>,
    _slot: Slot,
}

impl Reader {
    /// The next event to send, waiting for one.
    async fn next(&mut self) -> Event {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return e;
            }
            if let Err(e) = self.fill().await {
                tracing::warn!(tenant_id = %self.principal.tenant_id, error = %e, "event stream read failed; retrying");
                tokio::time::sleep(UNFED_POLL * 5).await;
            }
        }
    }

    /// Reads the next page, once the read models show it, into `pending`.
    async fn fill(&mut self) -> Result<(), ApiError> {
        // Seen before the read: a change while reading makes the wait below return at once.
        self.changes.seen();
        let page = self
            .store
            .read_tenant_feed(&self.principal.tenant_id, &self.cursor, PAGE)
            .await?;
        let Some(last) = page.events.last() else {
            let wait = if self.state.changes.is_fed() {
                FED_RECHECK
            } else {
                UNFED_POLL
            };
            self.changes.wait(wait).await;
            return Ok(());
        };
        let token = ConsistencyToken {
            position: last.position,
            version: last.version,
            stream_id: last.stream_id.clone(),
        };
        let freshness = &self.state.freshness;
        while !freshness
            .wait_for(&self.principal.tenant_id, &token, APPLIED_WAIT)
            .await
        {
            if !freshness.is_running() {
                tokio::time::sleep(UNFED_POLL).await;
            }
        }
        let mut sent = Vec::new();
        for e in &page.events {
            if let Some(shown) = self.shown(e).await? {
                sent.push((e.event_type.clone(), shown));
            }
        }
        let id = Cursor::encode(&page.next.0);
        self.cursor = page.next;
        // The page's last event carries the resume id; a page the caller sees nothing of
        // still moves it, on a comment.
        if sent.is_empty() {
            self.pending.push_back(Event::default().comment("").id(id));
            return Ok(());
        }
        let n = sent.len();
        for (i, (kind, shown)) in sent.into_iter().enumerate() {
            let data = serde_json::to_string(&shown).unwrap_or_default();
            let mut event = Event::default().event(kind).data(data);
            if i + 1 == n {
                event = event.id(id.clone());
            }
            self.pending.push_back(event);
        }
        Ok(())
    }

    /// The event as the caller may see it, or `None`.
    async fn shown(&self, e: &EventEnvelope) -> Result<Option<StreamedEvent>, ApiError> {
        if !self.sees(e).await? {
            return Ok(None);
        }
        Ok(Some(StreamedEvent {
            event_id: e.event_id.to_string(),
            event_type: e.event_type.clone(),
            stream_id: e.stream_id.to_string(),
            version: e.version,
            recorded_at: e.recorded_at,
            actor: e.actor.clone(),
            payload: (self.principal.actor.role != Role::Customer).then(|| e.payload.clone()),
        }))
    }

    /// Whether the caller may see `e` (see the module's table).
    async fn sees(&self, e: &EventEnvelope) -> Result<bool, ApiError> {
        if domain::user::is_private(&e.stream_id) {
            return Ok(false);
        }
        let p = &self.principal;
        let kind = e.stream_id.kind();
        let id = e.stream_id.instance();
        let row = |view: &'static str| async move {
            Ok::<_, ApiError>(
                self.state
                    .views
                    .get(view, &p.tenant_id, id)
                    .await?
                    .and_then(|r| r.doc),
            )
        };
        match p.actor.role {
            Role::Owner | Role::Admin => Ok(true),
            Role::Customer => {
                let view = match kind {
                    "case" => projections::cases::VIEW,
                    "document" => projections::documents::VIEW,
                    _ => return Ok(false),
                };
                let own = p.customer_id.as_deref();
                Ok(row(view)
                    .await?
                    .is_some_and(|d| own.is_some() && d["customer_id"].as_str() == own))
            }
            Role::Member => match kind {
                "task" | "product" | "order" => Ok(true),
                "customer" => Ok(row(projections::customers::VIEW)
                    .await?
                    .is_some_and(|d| sees_customer(p, &d))),
                "account" | "case" | "document" => {
                    let view = match kind {
                        "account" => projections::accounts::VIEW,
                        "case" => projections::cases::VIEW,
                        _ => projections::documents::VIEW,
                    };
                    match row(view).await? {
                        Some(d) => sees_row(&self.state, p, &d).await,
                        None => Ok(false),
                    }
                }
                "transaction" => Ok(p.scope == ClientScope::All),
                "aiquery" => Ok(row(projections::ai_queries::VIEW)
                    .await?
                    .is_some_and(|d| d["submitted_by"].as_str() == Some(p.actor.user_id.as_str()))),
                "message" => Ok(row(projections::messages::VIEW)
                    .await?
                    .is_some_and(|d| d["queued_by"].as_str() == Some(p.actor.user_id.as_str()))),
                _ => Ok(false),
            },
        }
    }
}

/// The routes of `/events`, each declared once by its handler's `#[utoipa::path]`.
pub fn routes() -> Routes {
    Routes::new().routes(utoipa_axum::routes!(stream))
}
