//! The customer syncs read model: one row per Salesforce sync run, as
//! `GET /salesforce/sync/{id}` and `GET /salesforce/syncs` serve it.

use crate::ports::ProjectionError;
use chrono::{DateTime, Utc};
use domain::UserId;
use domain::customer_sync::{
    CustomerSync, CustomerSyncStarted, SyncCounts, SyncEvent, SyncMode, SyncStatus, Watermark,
};
use serde::{Deserialize, Serialize};

pub const VIEW: &str = "customer_syncs";

/// A sync run as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = CustomerSync))]
pub struct SyncView {
    pub sync_id: String,
    pub tenant_id: String,
    pub status: SyncStatus,
    pub mode: SyncMode,
    pub counts: SyncCounts,
    /// Who started it: a user, or `system:salesforce-sync` for the scheduled poll.
    pub started_by: String,
    #[serde(with = "domain::time::rfc3339")]
    pub started_at: DateTime<Utc>,
    #[serde(default, with = "domain::time::rfc3339::option")]
    pub completed_at: Option<DateTime<Utc>>,
    /// Why it FAILED.
    pub error: Option<String>,
    /// The last record written, from which the next incremental run reads.
    pub watermark: Option<Watermark>,
    /// Where this run started reading from.
    pub since: Option<Watermark>,
    #[serde(with = "domain::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
    pub version: u64,
}

impl SyncView {
    pub fn from_state(tenant_id: &str, s: &CustomerSync, version: u64) -> Option<Self> {
        let started = s.started.as_ref()?;
        Some(Self {
            sync_id: started.sync_id.clone(),
            tenant_id: tenant_id.to_owned(),
            status: s.status?,
            mode: started.mode,
            counts: s.counts,
            started_by: started.started_by.to_string(),
            started_at: started.started_at,
            completed_at: s.completed_at,
            error: s.error.clone(),
            watermark: s.watermark.clone(),
            since: started.since.clone(),
            updated_at: s.updated_at.unwrap_or(started.started_at),
            version,
        })
    }

    fn state(self) -> Result<CustomerSync, ProjectionError> {
        let started_by =
            UserId::parse(&self.started_by).map_err(|e| ProjectionError(e.to_string()))?;
        Ok(CustomerSync {
            started: Some(CustomerSyncStarted {
                sync_id: self.sync_id,
                mode: self.mode,
                since: self.since,
                started_by,
                started_at: self.started_at,
            }),
            status: Some(self.status),
            counts: self.counts,
            watermark: self.watermark,
            error: self.error,
            completed_at: self.completed_at,
            updated_at: Some(self.updated_at),
        })
    }
}

crate::state_projection!(CustomerSyncsProjection, SyncView);

impl crate::ports::StateView for SyncView {
    type Aggregate = CustomerSync;
    const VIEW: &'static str = VIEW;

    fn starts(e: &SyncEvent) -> bool {
        matches!(e, SyncEvent::Started(_))
    }

    fn of_state(tenant_id: &str, state: &CustomerSync, version: u64) -> Option<Self> {
        Self::from_state(tenant_id, state, version)
    }

    fn into_state(self) -> Result<CustomerSync, ProjectionError> {
        self.state()
    }
}
