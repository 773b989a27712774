//! `/tasks`: create, list, read, update and delete tasks (seed 004). Commands answer from
//! the event store with an `X-Consistency-Token`; queries read the tasks projection and,
//! given that token, wait until it shows the write.

use crate::app::AppState;
use crate::app::Routes;
use crate::error::{ApiError, Problem};
use crate::extract::present;
use crate::extract::{Consistency, IdempotencyKey, Ids, IfMatch, JsonBody, PathId, QueryParams};
use crate::query::{Cursor, PageLimit, meta, page_of, row_of, write_headers};
use crate::tokens::Principal;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use commands::Executed;
use domain::task::{Task, TaskCommand, TaskDescription, TaskStatus, TaskTitle};
use domain::{StreamId, UserId};
use projections::tasks::{TaskView, VIEW};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    title: TaskTitle,
    #[serde(default)]
    description: Option<TaskDescription>,
    #[serde(default)]
    assigned_to: Option<UserId>,
}

/// Absent leaves a field unchanged; `"assigned_to": null` unassigns.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct UpdateTask {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    title: Option<TaskTitle>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    description: Option<TaskDescription>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    status: Option<TaskStatus>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<UserId>)]
    assigned_to: Option<Option<UserId>>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    #[param(inline)]
    status: Option<TaskStatus>,
    #[param(inline)]
    assigned_to: Option<UserId>,
    #[param(inline)]
    limit: Option<PageLimit>,
    #[param(inline)]
    cursor: Option<Cursor>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskPage {
    items: Vec<TaskView>,
    next_cursor: Option<String>,
}

fn task_stream(id: &str) -> Result<StreamId, ApiError> {
    crate::extract::canonical_uuid(id, "no such task")
        .map(|uuid| StreamId::for_aggregate("task", uuid))
}

/// The response headers of a command: the consistency token and the ETag.
fn command_headers(done: &Executed<Task>) -> HeaderMap {
    write_headers(done.token.as_ref(), done.version)
}

fn view_of(p: &Principal, done: &Executed<Task>) -> Result<TaskView, ApiError> {
    TaskView::from_state(p.tenant_id.as_str(), &done.state, done.version)
        .ok_or_else(|| ApiError::internal("a command left no task to show"))
}

#[utoipa::path(post, path = "/tasks", tag = "tasks", operation_id = "CreateTask",
    request_body = CreateTask, params(IdempotencyKey),
    responses((status = 201, body = TaskView, description = "created", headers(
        ("X-Consistency-Token" = String, description = "send it with a query to read this write"),
        ("ETag" = String, description = "the task's version"),
        ("Location" = String, description = "the task's path")))),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Ids(ids): Ids,
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
        title,
        description: description.unwrap_or_default(),
        assigned_to,
    };
    let idem =
        idempotency.with_request("POST /tasks", principal.actor.user_id.as_str(), &body.bytes);
    let stream = StreamId::for_aggregate("task", task_id);
    let done = state
        .commands
        .create::<Task>(&meta(&principal, ids, idem), &stream, &command)
        .await?;
    let view = view_of(&principal, &done)?;
    let mut headers = command_headers(&done);
    if let Ok(v) = HeaderValue::from_str(&format!("/tasks/{}", view.task_id)) {
        headers.insert(header::LOCATION, v);
    }
    tracing::debug!(tenant_id = %principal.tenant_id, task_id = %view.task_id, replayed = done.replayed, "task created");
    Ok((StatusCode::CREATED, headers, Json(view)).into_response())
}

#[utoipa::path(put, path = "/tasks/{id}", tag = "tasks", operation_id = "UpdateTask",
    request_body = UpdateTask, params(("id" = Uuid, Path), IfMatch, IdempotencyKey),
    responses((status = 200, body = TaskView, headers(
            ("X-Consistency-Token" = String, description = "send it with a query to read this write"),
            ("ETag" = String, description = "the task's version"))),
        (status = 403, body = Problem, description = "a MEMBER changing a task they neither created nor are assigned"),
        (status = 410, body = Problem, description = "the task was deleted")),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    IfMatch(if_match): IfMatch,
    Ids(ids): Ids,
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
        title,
        description,
        status,
        assigned_to,
    };
    let route = format!("PUT /tasks/{id}");
    let idem = idempotency.with_request(&route, principal.actor.user_id.as_str(), &body.bytes);
    let done = state
        .commands
        .execute::<Task>(&meta(&principal, ids, idem), &stream, &command, if_match)
        .await?;
    let view = view_of(&principal, &done)?;
    Ok((StatusCode::OK, command_headers(&done), Json(view)).into_response())
}

#[utoipa::path(delete, path = "/tasks/{id}", tag = "tasks", operation_id = "DeleteTask",
    params(("id" = Uuid, Path), IfMatch, IdempotencyKey),
    responses((status = 204, description = "deleted", headers(
            ("X-Consistency-Token" = String, description = "send it with a query to read this write"),
            ("ETag" = String, description = "the task's last version"))),
        (status = 410, body = Problem, description = "the task was already deleted")),
    security(("bearer" = ["ADMIN"])))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    IfMatch(if_match): IfMatch,
    Ids(ids): Ids,
    idempotency: IdempotencyKey,
) -> Result<Response, ApiError> {
    let stream = task_stream(&id)?;
    let route = format!("DELETE /tasks/{id}");
    let idem = idempotency.with_request(&route, principal.actor.user_id.as_str(), &[]);
    let done = state
        .commands
        .execute::<Task>(
            &meta(&principal, ids, idem),
            &stream,
            &TaskCommand::Delete,
            if_match,
        )
        .await?;
    Ok((StatusCode::NO_CONTENT, command_headers(&done)).into_response())
}

#[utoipa::path(get, path = "/tasks/{id}", tag = "tasks", operation_id = "GetTask",
    params(("id" = Uuid, Path), Consistency),
    responses((status = 200, body = TaskView, headers(("ETag" = String, description = "the task's version")))),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    Consistency(token): Consistency,
) -> Result<Response, ApiError> {
    task_stream(&id)?;
    let view: TaskView = row_of(&state, &principal, VIEW, &id, token, "no such task").await?;
    let etag = write_headers(None, view.version);
    Ok((etag, Json(view)).into_response())
}

#[utoipa::path(get, path = "/tasks", tag = "tasks", operation_id = "ListTasks",
    params(ListParams, Consistency),
    responses((status = 200, body = TaskPage)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    QueryParams(params): QueryParams<ListParams>,
    Consistency(token): Consistency,
) -> Result<Json<TaskPage>, ApiError> {
    let mut filters = Vec::new();
    if let Some(status) = params.status {
        filters.push(("status".to_owned(), status.as_str().to_owned()));
    }
    if let Some(who) = params.assigned_to {
        filters.push(("assigned_to".to_owned(), who.to_string()));
    }
    let (items, next_cursor) = page_of(
        &state,
        &principal,
        VIEW,
        filters,
        None,
        params.limit,
        params.cursor,
        token,
    )
    .await?;
    Ok(Json(TaskPage { items, next_cursor }))
}

/// The routes of this resource, each declared once by its handler's `#[utoipa::path]`.
pub fn routes() -> Routes {
    Routes::new()
        .routes(utoipa_axum::routes!(list, create))
        .routes(utoipa_axum::routes!(get, update, delete))
}
