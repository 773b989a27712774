//! The Task aggregate (seed 004): create, update (title, description, status, assignee),
//! delete. A MEMBER may change only tasks they created or are assigned; only an ADMIN
//! deletes.

use crate::aggregate::{Aggregate, CommandContext, DomainEvent, UpcastError};
use crate::ids::{UserId, ValidationError};
use crate::rules::TextRule;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const TITLE_MAX_CHARS: usize = 200;
pub const DESCRIPTION_MAX_CHARS: usize = 4000;

/// A task title: not blank, no control characters, at most `TITLE_MAX_CHARS` characters;
/// kept without surrounding whitespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskTitle(String);

impl TaskTitle {
    pub const RULE: TextRule = TextRule {
        no_control: true,
        not_blank: true,
        ..TextRule::chars(
            1,
            TITLE_MAX_CHARS,
            "The task's title; surrounding whitespace is removed.",
        )
    };

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        Self::RULE.check("title", value)?;
        Ok(Self(value.trim().to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::rules::text_serde!(TaskTitle);
crate::rules::text_schema!(TaskTitle, "TaskTitle");

/// Free text of at most `DESCRIPTION_MAX_CHARS` characters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskDescription(String);

impl TaskDescription {
    pub const RULE: TextRule = TextRule::chars(0, DESCRIPTION_MAX_CHARS, "Free text.");

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        Self::RULE.check("description", value)?;
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::rules::text_serde!(TaskDescription);
crate::rules::text_schema!(TaskDescription, "TaskDescription");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    #[default]
    Open,
    InProgress,
    Done,
}

impl TaskStatus {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        match value {
            "OPEN" => Ok(Self::Open),
            "IN_PROGRESS" => Ok(Self::InProgress),
            "DONE" => Ok(Self::Done),
            other => Err(ValidationError::new(
                "status",
                format!("unknown status {other:?}; expected OPEN, IN_PROGRESS or DONE"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "OPEN",
            Self::InProgress => "IN_PROGRESS",
            Self::Done => "DONE",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskCommand {
    Create {
        task_id: String,
        title: TaskTitle,
        description: TaskDescription,
        assigned_to: Option<UserId>,
    },
    /// `None` leaves a field as it is; `assigned_to: Some(None)` unassigns.
    Update {
        title: Option<TaskTitle>,
        description: Option<TaskDescription>,
        status: Option<TaskStatus>,
        assigned_to: Option<Option<UserId>>,
    },
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCreated {
    pub task_id: String,
    pub title: TaskTitle,
    pub description: TaskDescription,
    pub assigned_to: Option<UserId>,
    pub created_by: UserId,
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskUpdated {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<TaskTitle>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<TaskDescription>,
    #[serde(with = "crate::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskAssigned {
    pub assigned_to: Option<UserId>,
    #[serde(with = "crate::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatusChanged {
    pub from: TaskStatus,
    pub to: TaskStatus,
    #[serde(with = "crate::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDeleted {
    #[serde(with = "crate::time::rfc3339")]
    pub deleted_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskEvent {
    Created(TaskCreated),
    Updated(TaskUpdated),
    Assigned(TaskAssigned),
    StatusChanged(TaskStatusChanged),
    Deleted(TaskDeleted),
}

fn to_value<T: Serialize>(v: &T) -> Value {
    // Serializing these plain structs cannot fail: no maps with non-string keys.
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn from_value<T: serde::de::DeserializeOwned>(
    event_type: &str,
    schema_version: u32,
    payload: &Value,
) -> Result<T, UpcastError> {
    T::deserialize(payload).map_err(|e| UpcastError {
        event_type: event_type.to_owned(),
        schema_version,
        reason: e.to_string(),
    })
}

impl DomainEvent for TaskEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Created(_) => "TaskCreated",
            Self::Updated(_) => "TaskUpdated",
            Self::Assigned(_) => "TaskAssigned",
            Self::StatusChanged(_) => "TaskStatusChanged",
            Self::Deleted(_) => "TaskDeleted",
        }
    }

    fn to_payload(&self) -> Value {
        match self {
            Self::Created(e) => to_value(e),
            Self::Updated(e) => to_value(e),
            Self::Assigned(e) => to_value(e),
            Self::StatusChanged(e) => to_value(e),
            Self::Deleted(e) => to_value(e),
        }
    }

    fn from_stored(event_type: &str, v: u32, payload: &Value) -> Result<Self, UpcastError> {
        if v != 1 {
            return Err(UpcastError {
                event_type: event_type.to_owned(),
                schema_version: v,
                reason: "unknown schema version".into(),
            });
        }
        Ok(match event_type {
            "TaskCreated" => Self::Created(from_value(event_type, v, payload)?),
            "TaskUpdated" => Self::Updated(from_value(event_type, v, payload)?),
            "TaskAssigned" => Self::Assigned(from_value(event_type, v, payload)?),
            "TaskStatusChanged" => Self::StatusChanged(from_value(event_type, v, payload)?),
            "TaskDeleted" => Self::Deleted(from_value(event_type, v, payload)?),
            other => {
                return Err(UpcastError {
                    event_type: other.to_owned(),
                    schema_version: v,
                    reason: "not a task event".into(),
                });
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    #[error("the task already exists")]
    AlreadyExists,
    #[error("the task does not exist")]
    NotFound,
    #[error("the task was deleted and cannot be changed")]
    Deleted,
    #[error("{0}")]
    NotAllowed(&'static str),
}

/// A task as folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Task {
    pub created: Option<TaskCreated>,
    pub title: Option<TaskTitle>,
    pub description: TaskDescription,
    pub status: TaskStatus,
    pub assigned_to: Option<UserId>,
    pub updated_at: Option<DateTime<Utc>>,
    pub deleted: bool,
}

impl Task {
    pub fn exists(&self) -> bool {
        self.created.is_some()
    }

    fn may_change(&self, ctx: &CommandContext) -> bool {
        ctx.actor.role.is_admin()
            || self
                .created
                .as_ref()
                .is_some_and(|c| c.created_by == ctx.actor.user_id)
            || self.assigned_to.as_ref() == Some(&ctx.actor.user_id)
    }

    fn decide_update(
        &self,
        title: Option<&TaskTitle>,
        description: Option<&TaskDescription>,
        status: Option<TaskStatus>,
        assigned_to: Option<&Option<UserId>>,
        now: DateTime<Utc>,
    ) -> Vec<TaskEvent> {
        let mut events = Vec::new();
        let title = title.filter(|t| self.title.as_ref() != Some(*t)).cloned();
        let description = description.filter(|d| **d != self.description).cloned();
        if title.is_some() || description.is_some() {
            events.push(TaskEvent::Updated(TaskUpdated {
                title,
                description,
                updated_at: now,
            }));
        }
        if let Some(to) = status.filter(|s| *s != self.status) {
            events.push(TaskEvent::StatusChanged(TaskStatusChanged {
                from: self.status,
                to,
                updated_at: now,
            }));
        }
        if let Some(assignee) = assigned_to.filter(|a| **a != self.assigned_to) {
            events.push(TaskEvent::Assigned(TaskAssigned {
                assigned_to: assignee.clone(),
                updated_at: now,
            }));
        }
        events
    }
}

impl Aggregate for Task {
    const KIND: &'static str = "task";
    type Command = TaskCommand;
    type Event = TaskEvent;
    type Error = TaskError;

    fn decide(
        &self,
        command: &TaskCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<TaskEvent>, TaskError> {
        if let TaskCommand::Create {
            task_id,
            title,
            description,
            assigned_to,
        } = command
        {
            if self.exists() {
                return Err(TaskError::AlreadyExists);
            }
            return Ok(vec![TaskEvent::Created(TaskCreated {
                task_id: task_id.clone(),
                title: title.clone(),
                description: description.clone(),
                assigned_to: assigned_to.clone(),
                created_by: ctx.actor.user_id.clone(),
                created_at: ctx.now,
            })]);
        }
        if !self.exists() {
            return Err(TaskError::NotFound);
        }
        if self.deleted {
            return Err(TaskError::Deleted);
        }
        match command {
            TaskCommand::Create { .. } => Err(TaskError::AlreadyExists),
            TaskCommand::Delete if !ctx.actor.role.is_admin() => {
                Err(TaskError::NotAllowed("only an ADMIN may delete tasks"))
            }
            TaskCommand::Delete => Ok(vec![TaskEvent::Deleted(TaskDeleted {
                deleted_at: ctx.now,
            })]),
            TaskCommand::Update { .. } if !self.may_change(ctx) => Err(TaskError::NotAllowed(
                "a MEMBER may update only tasks they created or are assigned",
            )),
            TaskCommand::Update {
                title,
                description,
                status,
                assigned_to,
            } => Ok(self.decide_update(
                title.as_ref(),
                description.as_ref(),
                *status,
                assigned_to.as_ref(),
                ctx.now,
            )),
        }
    }

    fn apply(&mut self, event: &TaskEvent) {
        match event {
            TaskEvent::Created(e) => {
                self.title = Some(e.title.clone());
                self.description = e.description.clone();
                self.assigned_to = e.assigned_to.clone();
                self.status = TaskStatus::Open;
                self.updated_at = Some(e.created_at);
                self.created = Some(e.clone());
            }
            TaskEvent::Updated(e) => {
                if let Some(t) = &e.title {
                    self.title = Some(t.clone());
                }
                if let Some(d) = &e.description {
                    self.description = d.clone();
                }
                self.updated_at = Some(e.updated_at);
            }
            TaskEvent::Assigned(e) => {
                self.assigned_to = e.assigned_to.clone();
                self.updated_at = Some(e.updated_at);
            }
            TaskEvent::StatusChanged(e) => {
                self.status = e.to;
                self.updated_at = Some(e.updated_at);
            }
            TaskEvent::Deleted(e) => {
                self.deleted = true;
                self.updated_at = Some(e.deleted_at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Actor;
    use crate::aggregate::Role;

    fn ctx(user: &str, role: Role) -> CommandContext {
        CommandContext {
            actor: Actor {
                user_id: UserId::parse(user).unwrap(),
                role,
            },
            now: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        }
    }

    fn create(assigned_to: Option<&str>) -> TaskCommand {
        TaskCommand::Create {
            task_id: "t-1".into(),
            title: TaskTitle::parse("Setup CI/CD").unwrap(),
            description: TaskDescription::parse("GitHub Actions").unwrap(),
            assigned_to: assigned_to.map(|a| UserId::parse(a).unwrap()),
        }
    }

    fn update(status: Option<TaskStatus>, title: Option<&str>) -> TaskCommand {
        TaskCommand::Update {
            title: title.map(|t| TaskTitle::parse(t).unwrap()),
            description: None,
            status,
            assigned_to: None,
        }
    }

    /// given these past commands (each decided and applied), when `command`, then ...
    fn given(history: &[(TaskCommand, CommandContext)]) -> Task {
        let mut task = Task::default();
        for (cmd, ctx) in history {
            for e in task.decide(cmd, ctx).expect("history must be valid") {
                task.apply(&e);
            }
        }
        task
    }

    #[test]
    fn create_emits_task_created_with_actor_and_time() {
        let events = Task::default()
            .decide(&create(Some("bob")), &ctx("alice", Role::Member))
            .unwrap();
        let [TaskEvent::Created(e)] = events.as_slice() else {
            panic!("expected one TaskCreated, got {events:?}")
        };
        assert_eq!(e.created_by.as_str(), "alice");
        assert_eq!(e.assigned_to.as_ref().unwrap().as_str(), "bob");
        assert_eq!(e.created_at, ctx("x", Role::Admin).now);
    }

    #[test]
    fn create_twice_is_rejected() {
        let task = given(&[(create(None), ctx("alice", Role::Member))]);
        assert_eq!(
            task.decide(&create(None), &ctx("alice", Role::Member)),
            Err(TaskError::AlreadyExists)
        );
    }

    #[test]
    fn update_emits_one_event_per_kind_of_change_and_skips_no_ops() {
        let task = given(&[(create(None), ctx("alice", Role::Member))]);
        let cmd = TaskCommand::Update {
            title: Some(TaskTitle::parse("New title").unwrap()),
            description: Some(TaskDescription::parse("GitHub Actions").unwrap()),
            status: Some(TaskStatus::InProgress),
            assigned_to: Some(Some(UserId::parse("bob").unwrap())),
        };
        let events = task.decide(&cmd, &ctx("alice", Role::Member)).unwrap();
        let types: Vec<_> = events.iter().map(|e| e.event_type()).collect();
        assert_eq!(types, ["TaskUpdated", "TaskStatusChanged", "TaskAssigned"]);
        let TaskEvent::Updated(u) = &events[0] else {
            panic!()
        };
        assert!(
            u.description.is_none(),
            "unchanged description is not an event"
        );

        let no_op = update(Some(TaskStatus::Open), Some("Setup CI/CD"));
        assert_eq!(task.decide(&no_op, &ctx("alice", Role::Member)), Ok(vec![]));
    }

    #[test]
    fn member_may_update_only_own_or_assigned_tasks() {
        let task = given(&[(create(Some("bob")), ctx("alice", Role::Member))]);
        let cmd = update(Some(TaskStatus::Done), None);
        assert!(task.decide(&cmd, &ctx("alice", Role::Member)).is_ok());
        assert!(task.decide(&cmd, &ctx("bob", Role::Member)).is_ok());
        assert!(task.decide(&cmd, &ctx("carol", Role::Admin)).is_ok());
        assert!(matches!(
            task.decide(&cmd, &ctx("carol", Role::Member)),
            Err(TaskError::NotAllowed(_))
        ));
    }

    #[test]
    fn only_admin_deletes_and_a_deleted_task_cannot_change() {
        let task = given(&[(create(None), ctx("alice", Role::Member))]);
        assert!(matches!(
            task.decide(&TaskCommand::Delete, &ctx("alice", Role::Member)),
            Err(TaskError::NotAllowed(_))
        ));
        let task = given(&[
            (create(None), ctx("alice", Role::Member)),
            (TaskCommand::Delete, ctx("root", Role::Admin)),
        ]);
        assert!(task.deleted);
        assert_eq!(
            task.decide(
                &update(Some(TaskStatus::Done), None),
                &ctx("root", Role::Admin)
            ),
            Err(TaskError::Deleted)
        );
        assert_eq!(
            task.decide(&TaskCommand::Delete, &ctx("root", Role::Admin)),
            Err(TaskError::Deleted)
        );
    }

    #[test]
    fn commands_on_a_missing_task_are_not_found() {
        assert_eq!(
            Task::default().decide(&TaskCommand::Delete, &ctx("root", Role::Admin)),
            Err(TaskError::NotFound)
        );
    }

    #[test]
    fn titles_and_statuses_are_validated() {
        assert_eq!(TaskTitle::parse("   ").unwrap_err().field, "title");
        let long = "x".repeat(TITLE_MAX_CHARS + 1);
        assert!(
            TaskTitle::parse(&long)
                .unwrap_err()
                .reason
                .contains("at most 200")
        );
        assert_eq!(TaskTitle::parse("  ok ").unwrap().as_str(), "ok");
        assert!(TaskDescription::parse(&"d".repeat(DESCRIPTION_MAX_CHARS + 1)).is_err());
        let err = TaskStatus::parse("CLOSED").unwrap_err();
        assert_eq!(err.field, "status");
        assert!(err.reason.contains("CLOSED"));
    }

    #[test]
    fn events_round_trip_through_their_stored_form() {
        let task = given(&[(create(Some("bob")), ctx("alice", Role::Member))]);
        let events = task
            .decide(
                &update(Some(TaskStatus::Done), Some("t2")),
                &ctx("bob", Role::Member),
            )
            .unwrap();
        for e in events {
            let back = TaskEvent::from_stored(e.event_type(), 1, &e.to_payload()).unwrap();
            assert_eq!(back, e);
        }
        assert!(TaskEvent::from_stored("TaskCreated", 1, &serde_json::json!({})).is_err());
        assert!(TaskEvent::from_stored("OrderPlaced", 1, &serde_json::json!({})).is_err());
    }
}
