//! The SFTP imports read model: one row per run, as `GET /integrations/sftp/imports` and
//! `/imports/{id}` serve it, folded through the aggregate's own `apply`.

use crate::ports::ProjectionError;
use chrono::{DateTime, Utc};
use domain::UserId;
use domain::sftp::{
    FileReport, ImportStatus, ImportTrigger, SftpImport, SftpImportEvent, SftpImportStarted,
};
use serde::{Deserialize, Serialize};

pub const VIEW: &str = "sftp_imports";

/// A run of the import as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = SftpImport))]
pub struct SftpImportView {
    pub import_id: String,
    pub tenant_id: String,
    /// RUNNING, COMPLETED or FAILED (`error` says why).
    pub status: ImportStatus,
    pub trigger: ImportTrigger,
    pub requested_by: String,
    #[serde(with = "domain::time::rfc3339")]
    pub started_at: DateTime<Utc>,
    #[serde(default, with = "domain::time::rfc3339::option")]
    pub ended_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    /// The files this run imported, each with its counts and failed lines.
    pub files: Vec<FileReport>,
    /// Files found imported already (same name, same content), left alone but moved.
    pub skipped_files: Vec<String>,
    /// Over all files: data lines read, posted, skipped as posted already, failed.
    pub lines_read: u64,
    pub posted: u64,
    pub skipped: u64,
    pub failed: u64,
    #[serde(with = "domain::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
    pub version: u64,
}

impl SftpImportView {
    pub fn from_state(tenant_id: &str, i: &SftpImport, version: u64) -> Option<Self> {
        let s = i.started.as_ref()?;
        let sum = |f: fn(&FileReport) -> u64| i.files.iter().map(f).sum();
        Some(Self {
            import_id: s.import_id.clone(),
            tenant_id: tenant_id.to_owned(),
            status: i.status?,
            trigger: s.trigger,
            requested_by: s.requested_by.to_string(),
            started_at: s.at,
            ended_at: i.ended_at,
            error: i.error.clone(),
            files: i.files.clone(),
            skipped_files: i.skipped_files.clone(),
            lines_read: sum(|f| f.lines_read),
            posted: sum(|f| f.posted),
            skipped: sum(|f| f.skipped),
            failed: sum(|f| f.failed),
            updated_at: i.updated_at.unwrap_or(s.at),
            version,
        })
    }

    fn state(&self) -> Result<SftpImport, ProjectionError> {
        Ok(SftpImport {
            started: Some(SftpImportStarted {
                import_id: self.import_id.clone(),
                trigger: self.trigger,
                requested_by: UserId::parse(&self.requested_by)
                    .map_err(|e| ProjectionError(format!("unreadable import row: {e}")))?,
                at: self.started_at,
            }),
            status: Some(self.status),
            files: self.files.clone(),
            skipped_files: self.skipped_files.clone(),
            error: self.error.clone(),
            ended_at: self.ended_at,
            updated_at: Some(self.updated_at),
        })
    }
}

crate::state_projection!(SftpImportsProjection, SftpImportView);

impl crate::ports::StateView for SftpImportView {
    type Aggregate = SftpImport;
    const VIEW: &'static str = VIEW;

    fn starts(e: &SftpImportEvent) -> bool {
        matches!(e, SftpImportEvent::Started(_))
    }

    fn of_state(tenant_id: &str, state: &SftpImport, version: u64) -> Option<Self> {
        Self::from_state(tenant_id, state, version)
    }

    fn into_state(self) -> Result<SftpImport, ProjectionError> {
        self.state()
    }
}
