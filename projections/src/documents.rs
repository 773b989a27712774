//! The documents read model: one row per file linked to a customer's Account, as the
//! sync last read it, as `GET /customer/{id}/documents` serves it.

use crate::ports::ProjectionError;
use chrono::{DateTime, Utc};
use domain::document::{Document, DocumentEvent, DocumentFields, DocumentSynced};
use serde::{Deserialize, Serialize};

pub const VIEW: &str = "documents";

/// A customer's document as clients see it (the bytes stay in Salesforce: fetch them
/// through the download link).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = Document))]
pub struct DocumentView {
    /// The ContentDocument Id.
    pub document_id: String,
    pub tenant_id: String,
    pub customer_id: String,
    pub title: String,
    pub file_extension: Option<String>,
    /// Bytes.
    pub content_size: u64,
    /// When the file was last changed in Salesforce.
    #[serde(with = "domain::time::rfc3339")]
    pub modified_at: DateTime<Utc>,
    /// When Chronicle last read it.
    #[serde(with = "domain::time::rfc3339")]
    pub synced_at: DateTime<Utc>,
    /// The ContentVersion the download serves.
    pub salesforce_version_id: String,
    pub sync_id: String,
    pub version: u64,
}

impl DocumentView {
    pub fn from_state(tenant_id: &str, d: &Document, version: u64) -> Option<Self> {
        let s = d.synced.as_ref()?;
        Some(Self {
            document_id: s.document_id.clone(),
            tenant_id: tenant_id.to_owned(),
            customer_id: s.fields.customer_id.clone(),
            title: s.fields.title.clone(),
            file_extension: s.fields.file_extension.clone(),
            content_size: s.fields.content_size,
            modified_at: s.fields.modified_at,
            synced_at: s.synced_at,
            salesforce_version_id: s.fields.version_id.clone(),
            sync_id: s.sync_id.clone(),
            version,
        })
    }
}

crate::state_projection!(
    /// Folds document events into `DocumentView` rows through the aggregate's `apply`.
    DocumentsProjection,
    DocumentView
);

impl crate::ports::StateView for DocumentView {
    type Aggregate = Document;
    const VIEW: &'static str = VIEW;

    fn starts(e: &DocumentEvent) -> bool {
        matches!(e, DocumentEvent::Synced(_))
    }

    fn of_state(tenant_id: &str, state: &Document, version: u64) -> Option<Self> {
        Self::from_state(tenant_id, state, version)
    }

    fn into_state(self) -> Result<Document, ProjectionError> {
        Ok(Document {
            synced: Some(DocumentSynced {
                document_id: self.document_id,
                fields: DocumentFields {
                    customer_id: self.customer_id,
                    title: self.title,
                    file_extension: self.file_extension,
                    content_size: self.content_size,
                    modified_at: self.modified_at,
                    version_id: self.salesforce_version_id,
                },
                sync_id: self.sync_id,
                synced_at: self.synced_at,
            }),
        })
    }
}
