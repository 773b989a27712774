//! The users read model: one row per user of a tenant, as `GET /users` serves it. The
//! password hash never leaves the event: the row has no field for it.

use crate::ports::{Projection, ProjectionError};
use chrono::{DateTime, Utc};
use domain::user::{User, UserEvent};
use domain::{Aggregate, DomainEvent, EventEnvelope};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const VIEW: &str = "users";

/// A user as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = User))]
pub struct UserView {
    pub user_id: String,
    pub tenant_id: String,
    pub email: String,
    /// OWNER, ADMIN, MEMBER or CUSTOMER.
    pub role: String,
    /// A CUSTOMER's customer (the Salesforce Account Id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    pub disabled: bool,
    #[serde(with = "domain::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "domain::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
    pub version: u64,
}

impl UserView {
    /// The view of a registered user's state.
    pub fn from_state(tenant_id: &str, user: &User, version: u64) -> Option<Self> {
        let r = user.registered.as_ref()?;
        Some(Self {
            user_id: r.user_id.to_string(),
            tenant_id: tenant_id.to_owned(),
            email: r.email.as_str().to_owned(),
            role: user.role.unwrap_or(r.role).as_str().to_owned(),
            customer_id: r.customer_id.clone(),
            disabled: user.disabled,
            created_at: r.registered_at,
            updated_at: user.updated_at.unwrap_or(r.registered_at),
            version,
        })
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct UsersProjection;

impl Projection for UsersProjection {
    fn name(&self) -> &'static str {
        VIEW
    }

    fn handles(&self, event: &EventEnvelope) -> bool {
        event.stream_id.kind() == User::KIND
    }

    fn row_id(&self, event: &EventEnvelope) -> String {
        event.stream_id.instance().to_owned()
    }

    fn apply(
        &self,
        row: Option<&Value>,
        event: &EventEnvelope,
    ) -> Result<Option<Value>, ProjectionError> {
        let parsed =
            UserEvent::from_stored(&event.event_type, event.schema_version, &event.payload)
                .map_err(|e| ProjectionError(e.to_string()))?;
        let bad = |e: &dyn std::fmt::Display| ProjectionError(format!("unreadable user row: {e}"));
        let mut view = match (row, parsed) {
            (None, UserEvent::Registered(r)) => {
                let mut user = User::default();
                user.apply(&UserEvent::Registered(r));
                UserView::from_state(event.tenant_id.as_str(), &user, event.version)
                    .ok_or_else(|| bad(&"no registration"))?
            }
            (None, _) => {
                return Err(ProjectionError(format!(
                    "{} at version {} has no UserRegistered before it",
                    event.event_type, event.version
                )));
            }
            (Some(doc), parsed) => {
                let mut v: UserView = serde_json::from_value(doc.clone()).map_err(|e| bad(&e))?;
                match parsed {
                    UserEvent::Registered(_) => return Err(bad(&"registered twice")),
                    UserEvent::RoleChanged(e) => {
                        v.role = e.role.as_str().to_owned();
                        v.updated_at = e.changed_at;
                    }
                    UserEvent::Disabled(e) => {
                        v.disabled = true;
                        v.updated_at = e.at;
                    }
                    UserEvent::Enabled(e) => {
                        v.disabled = false;
                        v.updated_at = e.at;
                    }
                }
                v
            }
        };
        view.version = event.version;
        serde_json::to_value(view)
            .map(Some)
            .map_err(|e| ProjectionError(e.to_string()))
    }
}
