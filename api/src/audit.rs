//! `/audit` (DESIGN §7), for ADMINs: the tenant's timeline of events with the same
//! filters as `chronicle audit timeline`, an aggregate's state as of a version or a time
//! (folded by the same domain code as live commands), and the digest of the tenant's
//! history that an auditor keeps outside the system.

use crate::app::{AppState, Routes};
use crate::error::{ApiError, Problem};
use crate::extract::{PathId, QueryParams};
use crate::query::{Cursor, PageLimit};
use crate::tokens::Principal;
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use commands::audit::{ChainCheck, HistoryDigest, TimelineFilter, check_tenant, timeline_page};
use commands::{EventStore, FeedCursor};
use domain::{Aggregate, DomainEvent, EventEnvelope, StreamId, TenantId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// As of when to fold a stream: up to a version, up to a time, both, or (neither) now.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsOf {
    pub version: Option<u64>,
    pub time: Option<DateTime<Utc>>,
}

/// `A`'s state after `events` (one stream, in order), with its version.
fn fold<A: Aggregate>(events: &[EventEnvelope]) -> Result<(A, u64), ApiError> {
    let mut state = A::default();
    for e in events {
        let event = A::Event::from_stored(&e.event_type, e.schema_version, &e.payload)
            .map_err(ApiError::internal)?;
        state.apply(&event);
    }
    Ok((state, events.last().map_or(0, |e| e.version)))
}

macro_rules! shown {
    ($agg:ty, $view:ty, $tenant:expr, $events:expr) => {{
        let (state, version) = fold::<$agg>($events)?;
        serde_json::to_value(<$view>::from_state($tenant, &state, version))
            .map_err(ApiError::internal)?
    }};
}

/// The state of `stream` of `tenant` as of `at`, as the read models show such state (null
/// once deleted), with the version and time it is as of.
pub async fn state_at(
    store: &dyn EventStore,
    tenant: &TenantId,
    stream: &StreamId,
    at: AsOf,
) -> Result<Value, ApiError> {
    if domain::user::is_private(stream) {
        return Err(ApiError::Forbidden(
            "a private stream (credentials, sessions, invitations, connections) is not shown"
                .into(),
        ));
    }
    let mut events = Vec::new();
    let mut from = 1;
    loop {
        let page = store.read_stream(tenant, stream, from, 1000).await?;
        let Some(last) = page.last() else { break };
        from = last.version + 1;
        let done = page.len() < 1000;
        for e in page {
            let admit = at.version.is_none_or(|v| e.version <= v)
                && at.time.is_none_or(|t| e.recorded_at <= t);
            if admit {
                events.push(e);
            }
        }
        if done || events.last().map(|e| e.version) != Some(from - 1) {
            break;
        }
    }
    if events.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no event of {stream} as of that point"
        )));
    }
    let t = tenant.as_str();
    let state = match stream.kind() {
        "task" => shown!(domain::task::Task, projections::tasks::TaskView, t, &events),
        "product" => shown!(
            domain::product::Product,
            projections::products::ProductView,
            t,
            &events
        ),
        "order" => shown!(
            domain::order::Order,
            projections::orders::OrderView,
            t,
            &events
        ),
        "user" => shown!(domain::user::User, projections::users::UserView, t, &events),
        "aiquery" => shown!(
            domain::ai_query::AiQuery,
            projections::ai_queries::AiQueryView,
            t,
            &events
        ),
        "customer" => shown!(
            domain::customer::Customer,
            projections::customers::CustomerView,
            t,
            &events
        ),
        "customersync" => shown!(
            domain::customer_sync::CustomerSync,
            projections::customer_syncs::SyncView,
            t,
            &events
        ),
        "case" => shown!(domain::case::Case, projections::cases::CaseView, t, &events),
        "tenant" => {
            let (s, _) = fold::<domain::tenant::Tenant>(&events)?;
            json!({
                "company_name": s.company_name.as_ref().map(|n| n.as_str()),
                "tier": s.tier.as_str(),
                "status": s.status.as_str(),
                "users": s.seats.len(),
                "settings": s.settings.as_value(),
            })
        }
        other => {
            return Err(ApiError::NotFound(format!(
                "streams of kind {other} have no state to show"
            )));
        }
    };
    let last = events.last().map(|e| (e.version, e.recorded_at));
    Ok(json!({
        "stream_id": stream.as_str(),
        "version": last.map(|l| l.0),
        "as_of": last.map(|l| domain::envelope::format_time(&l.1)),
        "state": state,
    }))
}

/// Feeds every event of the log (every tenant's, in position order; up to `until` when
/// given) to `check`, page by page.
pub async fn check_log(
    log: &dyn projections::EventFeed,
    until: Option<u64>,
    check: &mut ChainCheck,
) -> Result<(), projections::ReadModelError> {
    let mut after = 0;
    loop {
        let page = log.read_after(after, commands::audit::PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.position;
        for e in page
            .iter()
            .filter(|e| until.is_none_or(|u| e.position <= u))
        {
            check.add(e);
        }
    }
}

/// An event as the timeline shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEvent {
    event_id: String,
    position: u64,
    stream_id: String,
    version: u64,
    event_type: String,
    recorded_at: String,
    actor: String,
    command_id: String,
    correlation_id: String,
    causation_id: Option<String>,
    #[schema(value_type = Object)]
    payload: Value,
}

impl From<EventEnvelope> for AuditEvent {
    fn from(e: EventEnvelope) -> Self {
        Self {
            event_id: e.event_id.to_string(),
            position: e.position,
            stream_id: e.stream_id.to_string(),
            version: e.version,
            event_type: e.event_type,
            recorded_at: domain::envelope::format_time(&e.recorded_at),
            actor: e.actor,
            command_id: e.command_id.to_string(),
            correlation_id: e.correlation_id.to_string(),
            causation_id: e.causation_id.map(|c| c.to_string()),
            payload: e.payload,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Only this stream's events (e.g. `task-0192…`).
    #[param(inline)]
    stream: Option<StreamId>,
    /// Recorded at or after (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<DateTime<Utc>>,
    /// Recorded at or before (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    until: Option<DateTime<Utc>>,
    /// Only this actor's (a user id, or `system:<worker>`).
    #[param(inline)]
    actor: Option<UserId>,
    /// Only events of this type (e.g. `TaskCreated`).
    #[param(inline)]
    r#type: Option<UserId>,
    #[param(inline)]
    limit: Option<PageLimit>,
    #[param(inline)]
    cursor: Option<Cursor>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// In the order they happened; a page holds the filter's matches among the next
    /// `limit` events, so it may hold fewer, even none: go on while `next_cursor` is set.
    items: Vec<AuditEvent>,
    next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/audit/events", tag = "audit", operation_id = "AuditEvents",
    params(EventParams),
    responses((status = 200, body = AuditPage),
        (status = 422, body = Problem, description = "an invalid parameter, or a cursor that is no next_cursor of this list")),
    security(("bearer" = ["ADMIN"])))]
pub async fn events(
    State(state): State<AppState>,
    principal: Principal,
    QueryParams(p): QueryParams<EventParams>,
) -> Result<Json<AuditPage>, ApiError> {
    let filter = TimelineFilter {
        stream: p.stream,
        since: p.since,
        until: p.until,
        actor: p.actor.map(|a| a.to_string()),
        event_type: p.r#type.map(|t| t.to_string()),
    };
    let after = p
        .cursor
        .map_or_else(FeedCursor::start, |c| FeedCursor(c.position()));
    let limit = p.limit.map_or(100, PageLimit::get);
    let (events, next) = timeline_page(
        state.commands.store().as_ref(),
        &principal.tenant_id,
        &filter,
        &after,
        limit,
    )
    .await
    .map_err(|e| match e {
        // Any cursor of the grammar is accepted by the parameter; only the store can tell
        // one that names no place in the feed.
        commands::StoreError::Invalid(_) => ApiError::Validation {
            field: "cursor".into(),
            detail: "cursor: not a next_cursor of this list".into(),
        },
        other => other.into(),
    })?;
    Ok(Json(AuditPage {
        items: events
            .into_iter()
            .filter(|e| !domain::user::is_private(&e.stream_id))
            .map(AuditEvent::from)
            .collect(),
        next_cursor: next.map(|c| Cursor::encode(&c.0)),
    }))
}

/// Without either, the state now; with both, as of whichever comes first.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StateParams {
    /// As of this time (RFC 3339): the events recorded up to it.
    #[param(value_type = Option<String>, format = DateTime)]
    at: Option<DateTime<Utc>>,
    /// As of this version of the stream.
    #[param(inline)]
    version: Option<domain::ids::StreamVersion>,
}

#[utoipa::path(get, path = "/audit/streams/{stream_id}/state", tag = "audit", operation_id = "AuditState",
    params(("stream_id" = String, Path, description = "e.g. task-0192…"), StateParams),
    responses((status = 200, description = "the state as of that point", body = Object),
        (status = 404, body = Problem, description = "no such stream in the tenant, none of its events by then, or a kind with no state to show")),
    security(("bearer" = ["ADMIN"])))]
pub async fn stream_state(
    State(state): State<AppState>,
    principal: Principal,
    PathId(stream_id): PathId,
    QueryParams(p): QueryParams<StateParams>,
) -> Result<Json<Value>, ApiError> {
    let stream =
        StreamId::parse(stream_id).map_err(|_| ApiError::NotFound("no such stream".into()))?;
    let at = AsOf {
        version: p.version.map(domain::ids::StreamVersion::get),
        time: p.at,
    };
    Ok(Json(
        state_at(
            state.commands.store().as_ref(),
            &principal.tenant_id,
            &stream,
            at,
        )
        .await?,
    ))
}

#[utoipa::path(get, path = "/audit/digest", tag = "audit", operation_id = "AuditDigest",
    responses((status = 200, body = HistoryDigestView, description = "keep it outside the system; `chronicle audit verify --digest` checks the history against it")),
    security(("bearer" = ["ADMIN"])))]
pub async fn digest(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<HistoryDigest>, ApiError> {
    let mut check = ChainCheck::default();
    check_tenant(
        state.commands.store().as_ref(),
        &principal.tenant_id,
        None,
        &mut check,
    )
    .await?;
    Ok(Json(check.digest(Some(&principal.tenant_id))))
}

/// The digest's shape, for the document.
#[derive(utoipa::ToSchema)]
#[schema(as = HistoryDigest)]
#[allow(dead_code)]
pub struct HistoryDigestView {
    tenant_id: Option<String>,
    events: u64,
    streams: u64,
    head_position: u64,
    /// A Merkle root (SHA-256, hex) over every stream's head.
    root: String,
}

/// The routes of `/audit`, each declared once by its handler's `#[utoipa::path]`.
pub fn routes() -> Routes {
    Routes::new()
        .routes(utoipa_axum::routes!(events))
        .routes(utoipa_axum::routes!(stream_state))
        .routes(utoipa_axum::routes!(digest))
}
