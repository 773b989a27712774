//! The tasks read model: one row per task, as `GET /tasks` serves it.

use crate::ports::ProjectionError;
use chrono::{DateTime, Utc};
use domain::task::{Task, TaskEvent};
use serde::{Deserialize, Serialize};

pub const VIEW: &str = "tasks";

/// A task as clients see it, from the read model or from a command's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = Task))]
pub struct TaskView {
    pub task_id: String,
    pub tenant_id: String,
    pub title: String,
    pub description: String,
    pub status: String,
    pub assigned_to: Option<String>,
    pub created_by: String,
    #[serde(with = "domain::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "domain::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
    pub version: u64,
}

impl TaskView {
    /// The view of a live task's state; `None` for a missing or deleted task.
    pub fn from_state(tenant_id: &str, task: &Task, version: u64) -> Option<Self> {
        let created = task.created.as_ref().filter(|_| !task.deleted)?;
        Some(Self {
            task_id: created.task_id.clone(),
            tenant_id: tenant_id.to_owned(),
            title: task
                .title
                .as_ref()
                .map_or_else(String::new, |t| t.as_str().to_owned()),
            description: task.description.as_str().to_owned(),
            status: task.status.as_str().to_owned(),
            assigned_to: task.assigned_to.as_ref().map(ToString::to_string),
            created_by: created.created_by.to_string(),
            created_at: created.created_at,
            updated_at: task.updated_at.unwrap_or(created.created_at),
            version,
        })
    }
}

crate::state_projection!(
    /// Folds task events into `TaskView` rows through the aggregate's own `apply`, so the
    /// read model cannot drift from what commands see.
    TasksProjection,
    TaskView
);

impl crate::ports::StateView for TaskView {
    type Aggregate = Task;
    const VIEW: &'static str = VIEW;

    fn starts(e: &TaskEvent) -> bool {
        matches!(e, TaskEvent::Created(_))
    }

    fn of_state(tenant_id: &str, state: &Task, version: u64) -> Option<Self> {
        Self::from_state(tenant_id, state, version)
    }

    fn into_state(self) -> Result<Task, ProjectionError> {
        state_of(self)
    }
}

/// Rebuilds, from a stored row, the aggregate state that `TaskView::from_state` reads.
fn state_of(v: TaskView) -> Result<Task, ProjectionError> {
    use domain::UserId;
    use domain::task::{TaskCreated, TaskDescription, TaskStatus, TaskTitle};
    let bad = |e: &dyn std::fmt::Display| ProjectionError(format!("unreadable task row: {e}"));
    let user = |s: &str| UserId::parse(s).map_err(|e| bad(&e));
    let assigned_to = v.assigned_to.as_deref().map(user).transpose()?;
    let title = TaskTitle::parse(&v.title).map_err(|e| bad(&e))?;
    Ok(Task {
        created: Some(TaskCreated {
            task_id: v.task_id,
            title: title.clone(),
            description: TaskDescription::parse("").map_err(|e| bad(&e))?,
            assigned_to: None,
            created_by: user(&v.created_by)?,
            created_at: v.created_at,
        }),
        title: Some(title),
        description: TaskDescription::parse(&v.description).map_err(|e| bad(&e))?,
        status: TaskStatus::parse(&v.status).map_err(|e| bad(&e))?,
        assigned_to,
        updated_at: Some(v.updated_at),
        deleted: false,
    })
}
