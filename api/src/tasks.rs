//! `/tasks`: create, list, read, update and delete tasks (seed 004). Commands answer from
//! the event store with an `X-Consistency-Token`; queries read the tasks projection and,
//! given that token, wait until it shows the write.

use crate::app::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, Problem};
use crate::extract::{Consistency, IdempotencyKey, IfMatch, JsonBody};
use crate::query::{meta, page_of, row_of, write_headers};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use commands::Executed;
use domain::task::{Task, TaskCommand, TaskDescription, TaskStatus, TaskTitle};
use domain::{StreamId, UserId};
use projections::tasks::{TaskView, VIEW};
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    title: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    assigned_to: Option<String>,
}

/// Absent leaves a field unchanged; `"assigned_to": null` unassigns.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTask {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    description: Option<String>,
    /// OPEN, IN_PROGRESS or DONE.
    #[serde(default)]
    status: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    assigned_to: Option<Option<String>>,
}

fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// OPEN, IN_PROGRESS or DONE.
    status: Option<String>,
    assigned_to: Option<String>,
    /// 1 to 100, default 50.
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskPage {
    items: Vec<TaskView>,
    next_cursor: Option<String>,
}

fn assignee(value: Option<String>) -> Result<Option<UserId>, ApiError> {
    value
        .map(|a| {
            UserId::parse(a).map_err(|e| {
                ApiError::validation(domain::ValidationError::new("assigned_to", e.reason))
            })
        })
        .transpose()
}

fn task_stream(id: &str) -> Result<StreamId, ApiError> {
    // An id that cannot exist is simply not found.
    let uuid = Uuid::parse_str(id).map_err(|_| ApiError::NotFound("no such task".into()))?;
    Ok(StreamId::for_aggregate("task", uuid))
}

/// The response headers of a command: the consistency token and the ETag.
fn command_headers(done: &Executed<Task>) -> HeaderMap {
    write_headers(done.token.as_ref(), done.version)
}

fn view_of(p: &Principal, done: &Executed<Task>) -> Result<TaskView, ApiError> {
    TaskView::from_state(p.tenant_id.as_str(), &done.state, done.version)
        .ok_or_else(|| ApiError::internal("a command left no task to show"))
}

#[utoipa::path(post, path = "/tasks", tag = "tasks", request_body = CreateTask,
    params(("Idempotency-Key" = Option<String>, Header, description = "replays the first response of a retried request")),
    responses((status = 201, body = TaskView, description = "created; X-Consistency-Token and ETag headers"),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 413, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    idempotency: IdempotencyKey,
    body: JsonBody<CreateTask>,
) -> Result<Response, ApiError> {
    let CreateTask {
        title,
        description,
        assigned_to,
    } = body.value;
    let task_id = Uuid::now_v7();
    let command = TaskCommand::Create {
        task_id: task_id.to_string(),
        title: TaskTitle::parse(&title)?,
        description: TaskDescription::parse(description.as_deref().unwrap_or(""))?,
        assigned_to: assignee(assigned_to)?,
    };
    let idem =
        idempotency.with_request("POST /tasks", principal.actor.user_id.as_str(), &body.bytes);
    let stream = StreamId::for_aggregate("task", task_id);
    let done = state
        .commands
        .create::<Task>(&meta(&principal, idem), &stream, &command)
        .await?;
    let view = view_of(&principal, &done)?;
    let mut headers = command_headers(&done);
    if let Ok(v) = HeaderValue::from_str(&format!("/tasks/{}", view.task_id)) {
        headers.insert(header::LOCATION, v);
    }
    tracing::debug!(tenant_id = %principal.tenant_id, task_id = %view.task_id, replayed = done.replayed, "task created");
    Ok((StatusCode::CREATED, headers, Json(view)).into_response())
}

#[utoipa::path(put, path = "/tasks/{id}", tag = "tasks", request_body = UpdateTask,
    params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "the version the update expects, as in \"3\""),
        ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = TaskView), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 410, body = Problem),
        (status = 412, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    IfMatch(if_match): IfMatch,
    idempotency: IdempotencyKey,
    body: JsonBody<UpdateTask>,
) -> Result<Response, ApiError> {
    let stream = task_stream(&id)?;
    let UpdateTask {
        title,
        description,
        status,
        assigned_to,
    } = body.value;
    if title.is_none() && description.is_none() && status.is_none() && assigned_to.is_none() {
        return Err(ApiError::Validation {
            field: "body".into(),
            detail: "send at least one of title, description, status, assigned_to".into(),
        });
    }
    let command = TaskCommand::Update {
        title: title.as_deref().map(TaskTitle::parse).transpose()?,
        description: description
            .as_deref()
            .map(TaskDescription::parse)
            .transpose()?,
        status: status.as_deref().map(TaskStatus::parse).transpose()?,
        assigned_to: assigned_to.map(assignee).transpose()?,
    };
    let route = format!("PUT /tasks/{id}");
    let idem = idempotency.with_request(&route, principal.actor.user_id.as_str(), &body.bytes);
    let done = state
        .commands
        .execute::<Task>(&meta(&principal, idem), &stream, &command, if_match)
        .await?;
    let view = view_of(&principal, &done)?;
    Ok((StatusCode::OK, command_headers(&done), Json(view)).into_response())
}

#[utoipa::path(delete, path = "/tasks/{id}", tag = "tasks",
    params(("id" = String, Path), ("If-Match" = Option<String>, Header), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 204, description = "deleted"), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 410, body = Problem), (status = 412, body = Problem)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    IfMatch(if_match): IfMatch,
    idempotency: IdempotencyKey,
) -> Result<Response, ApiError> {
    let stream = task_stream(&id)?;
    let route = format!("DELETE /tasks/{id}");
    let idem = idempotency.with_request(&route, principal.actor.user_id.as_str(), &[]);
    let done = state
        .commands
        .execute::<Task>(
            &meta(&principal, idem),
            &stream,
            &TaskCommand::Delete,
            if_match,
        )
        .await?;
    Ok((StatusCode::NO_CONTENT, command_headers(&done)).into_response())
}

#[utoipa::path(get, path = "/tasks/{id}", tag = "tasks",
    params(("id" = String, Path), ("X-Consistency-Token" = Option<String>, Header, description = "wait until this write is visible")),
    responses((status = 200, body = TaskView), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Consistency(token): Consistency,
) -> Result<Response, ApiError> {
    task_stream(&id)?;
    let view: TaskView = row_of(&state, &principal, VIEW, &id, token, "no such task").await?;
    let etag = write_headers(None, view.version);
    Ok((etag, Json(view)).into_response())
}

#[utoipa::path(get, path = "/tasks", tag = "tasks",
    params(ListParams, ("X-Consistency-Token" = Option<String>, Header, description = "wait until this write is visible")),
    responses((status = 200, body = TaskPage), (status = 401, body = Problem), (status = 422, body = Problem),
        (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<ListParams>,
    Consistency(token): Consistency,
) -> Result<Json<TaskPage>, ApiError> {
    let mut filters = Vec::new();
    if let Some(status) = params.status {
        filters.push((
            "status".to_owned(),
            TaskStatus::parse(&status)?.as_str().to_owned(),
        ));
    }
    if let Some(who) = params.assigned_to {
        let who = UserId::parse(who).map_err(|e| {
            ApiError::validation(domain::ValidationError::new("assigned_to", e.reason))
        })?;
        filters.push(("assigned_to".to_owned(), who.to_string()));
    }
    let (items, next_cursor) = page_of(
        &state,
        &principal,
        VIEW,
        filters,
        params.limit,
        params.cursor,
        token,
    )
    .await?;
    Ok(Json(TaskPage { items, next_cursor }))
}
