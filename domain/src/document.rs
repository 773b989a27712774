//! The Document aggregate (seed 001's documents): a file linked to a customer's Account in
//! Salesforce, as the sync last read it (its latest ContentVersion). The bytes stay in
//! Salesforce; Chronicle keeps what it needs to list the file and to fetch it. Also the
//! two small aggregates of access: a customer's access log (every listing and download, as
//! DocumentAccessed) and a download link's redemption, which makes each link single-use.

use crate::aggregate::{Aggregate, CommandContext, TailState};
use crate::ids::UserId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What the sync read of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentFields {
    pub customer_id: String,
    pub title: String,
    pub file_extension: Option<String>,
    pub content_size: u64,
    #[serde(with = "crate::time::rfc3339")]
    pub modified_at: DateTime<Utc>,
    /// The latest ContentVersion, whose VersionData is the file.
    pub version_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncDocument {
    pub document_id: String,
    pub fields: DocumentFields,
    pub sync_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentSynced {
    pub document_id: String,
    #[serde(flatten)]
    pub fields: DocumentFields,
    pub sync_id: String,
    #[serde(with = "crate::time::rfc3339")]
    pub synced_at: DateTime<Utc>,
}

crate::domain_events!(DocumentEvent, "document" {
    Synced(DocumentSynced) = "DocumentSynced",
});

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Document {
    pub synced: Option<DocumentSynced>,
}

impl Aggregate for Document {
    const KIND: &'static str = "document";
    type Command = SyncDocument;
    type Event = DocumentEvent;
    type Error = std::convert::Infallible;

    /// A new file, or one whose fields changed; nothing when the sync read it unchanged.
    fn decide(
        &self,
        c: &SyncDocument,
        ctx: &CommandContext,
    ) -> Result<Vec<DocumentEvent>, Self::Error> {
        if self.synced.as_ref().is_some_and(|s| s.fields == c.fields) {
            return Ok(Vec::new());
        }
        Ok(vec![DocumentEvent::Synced(DocumentSynced {
            document_id: c.document_id.clone(),
            fields: c.fields.clone(),
            sync_id: c.sync_id.clone(),
            synced_at: ctx.now,
        })])
    }

    fn apply(&mut self, e: &DocumentEvent) {
        let DocumentEvent::Synced(s) = e;
        self.synced = Some(s.clone());
    }
}

/// How a document was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessKind {
    /// Listed (`GET /customer/{id}/documents`).
    Listed,
    /// Its bytes fetched through a signed link.
    Downloaded,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordAccess {
    pub kind: AccessKind,
    pub document_ids: Vec<String>,
    /// The request that reached them.
    pub request_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentAccessed {
    pub kind: AccessKind,
    pub document_ids: Vec<String>,
    pub by: UserId,
    pub request_id: String,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

crate::domain_events!(AccessEvent, "document access" {
    Accessed(DocumentAccessed) = "DocumentAccessed",
});

/// `documentaccess-<customer id>`: the customer's access log. Appending needs nothing of
/// what came before, so it loads only the last event (`TailState`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocumentAccess;

impl Aggregate for DocumentAccess {
    const KIND: &'static str = "documentaccess";
    type Command = RecordAccess;
    type Event = AccessEvent;
    type Error = std::convert::Infallible;

    fn decide(
        &self,
        c: &RecordAccess,
        ctx: &CommandContext,
    ) -> Result<Vec<AccessEvent>, Self::Error> {
        Ok(vec![AccessEvent::Accessed(DocumentAccessed {
            kind: c.kind,
            document_ids: c.document_ids.clone(),
            by: ctx.actor.user_id.clone(),
            request_id: c.request_id.clone(),
            at: ctx.now,
        })])
    }

    fn apply(&mut self, _: &AccessEvent) {}
}

impl TailState for DocumentAccess {
    fn from_last(_: &AccessEvent) -> Self {
        Self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRedeemed {
    pub document_id: String,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

crate::domain_events!(LinkEvent, "download link" {
    Redeemed(LinkRedeemed) = "DownloadLinkRedeemed",
});

/// `downloadlink-<link id>`: created by the link's one redemption (a reservation: a second
/// one finds the stream taken).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DownloadLink;

impl Aggregate for DownloadLink {
    const KIND: &'static str = "downloadlink";
    type Command = String;
    type Event = LinkEvent;
    type Error = std::convert::Infallible;

    fn decide(
        &self,
        document_id: &String,
        ctx: &CommandContext,
    ) -> Result<Vec<LinkEvent>, Self::Error> {
        Ok(vec![LinkEvent::Redeemed(LinkRedeemed {
            document_id: document_id.clone(),
            at: ctx.now,
        })])
    }

    fn apply(&mut self, _: &LinkEvent) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{Actor, Role};

    #[test]
    fn a_document_changes_only_when_its_fields_do() {
        let ctx = CommandContext {
            actor: Actor {
                user_id: UserId::parse("sync").unwrap(),
                role: Role::Admin,
            },
            now: Utc::now(),
        };
        let c = SyncDocument {
            document_id: "069A".into(),
            fields: DocumentFields {
                customer_id: "001A".into(),
                title: "Contract".into(),
                file_extension: Some("pdf".into()),
                content_size: 10,
                modified_at: Utc::now(),
                version_id: "068A".into(),
            },
            sync_id: "s1".into(),
        };
        let mut d = Document::default();
        for e in d.decide(&c, &ctx).unwrap() {
            d.apply(&e);
        }
        assert!(d.decide(&c, &ctx).unwrap().is_empty());
        let mut newer = c.clone();
        newer.fields.version_id = "068B".into();
        assert_eq!(d.decide(&newer, &ctx).unwrap().len(), 1);
    }
}
