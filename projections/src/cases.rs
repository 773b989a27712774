//! The cases read model: one row per case, as `GET /cases` (staff) and
//! `GET /customer/{id}/cases` (the portal) serve it, with its Salesforce delivery state.

use crate::ports::ProjectionError;
use chrono::{DateTime, Utc};
use domain::UserId;
use domain::case::{
    Case, CaseDescription, CaseEvent, CaseOpened, CasePriority, CaseStatus, CaseSubject,
    CommentEntry, Delivery,
};
use serde::{Deserialize, Serialize};

pub const VIEW: &str = "cases";

/// A case as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = Case))]
pub struct CaseView {
    pub case_id: String,
    pub tenant_id: String,
    /// The Salesforce Account Id of the customer.
    pub customer_id: String,
    pub subject: String,
    pub description: String,
    pub priority: CasePriority,
    pub status: CaseStatus,
    /// Oldest first, from Chronicle and from Salesforce.
    pub comments: Vec<CommentEntry>,
    /// Where the case stands with the tenant's Salesforce org.
    pub salesforce: Delivery,
    pub opened_by: String,
    #[serde(with = "domain::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "domain::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
    /// The last change made in Chronicle (the opening, a staff change): a status read
    /// from Salesforce older than this is not taken.
    #[serde(with = "domain::time::rfc3339")]
    pub changed_in_chronicle_at: DateTime<Utc>,
    pub version: u64,
}

impl CaseView {
    /// The view of an opened case's state.
    pub fn from_state(tenant_id: &str, case: &Case, version: u64) -> Option<Self> {
        let o = case.opened.as_ref()?;
        Some(Self {
            case_id: o.case_id.clone(),
            tenant_id: tenant_id.to_owned(),
            customer_id: o.customer_id.clone(),
            subject: o.subject.as_str().to_owned(),
            description: o.description.as_str().to_owned(),
            priority: o.priority,
            status: case.status,
            comments: case.comments.clone(),
            salesforce: case.delivery.clone(),
            opened_by: o.opened_by.to_string(),
            created_at: o.opened_at,
            updated_at: case.updated_at.unwrap_or(o.opened_at),
            changed_in_chronicle_at: case.changed_here_at.unwrap_or(o.opened_at),
            version,
        })
    }
}

crate::state_projection!(
    /// Folds case events into `CaseView` rows through the aggregate's own `apply`.
    CasesProjection,
    CaseView
);

impl crate::ports::StateView for CaseView {
    type Aggregate = Case;
    const VIEW: &'static str = VIEW;

    fn starts(e: &CaseEvent) -> bool {
        matches!(e, CaseEvent::Opened(_))
    }

    fn of_state(tenant_id: &str, state: &Case, version: u64) -> Option<Self> {
        Self::from_state(tenant_id, state, version)
    }

    fn into_state(self) -> Result<Case, ProjectionError> {
        let bad = |e: &dyn std::fmt::Display| ProjectionError(format!("unreadable case row: {e}"));
        Ok(Case {
            opened: Some(CaseOpened {
                case_id: self.case_id,
                customer_id: self.customer_id,
                subject: CaseSubject::parse(&self.subject).map_err(|e| bad(&e))?,
                description: CaseDescription::parse(&self.description).map_err(|e| bad(&e))?,
                priority: self.priority,
                opened_by: UserId::parse(self.opened_by).map_err(|e| bad(&e))?,
                opened_at: self.created_at,
            }),
            status: self.status,
            comments: self.comments,
            delivery: self.salesforce,
            updated_at: Some(self.updated_at),
            changed_here_at: Some(self.changed_in_chronicle_at),
        })
    }
}
