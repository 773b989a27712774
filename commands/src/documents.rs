//! Documents on the one pipeline: the sync's record of a file (`Document`, through
//! `CommandHandler::execute`), and the access log: a listing appends DocumentAccessed to
//! the customer's log; a download link's redemption reserves the link (single use) and
//! appends DocumentAccessed in the same append, so a link is used once, and every use is
//! logged.

use crate::handler::CommandError;
use crate::pipeline::{Command, Tx};
use domain::document::{
    AccessKind, Document, DocumentAccess, DownloadLink, RecordAccess, SyncDocument,
};
use domain::{Aggregate, StreamId};

pub fn document_stream(id: &str) -> StreamId {
    StreamId::for_aggregate(Document::KIND, id)
}

pub fn access_stream(customer_id: &str) -> StreamId {
    StreamId::for_aggregate(DocumentAccess::KIND, customer_id)
}

pub fn link_stream(link_id: &str) -> StreamId {
    StreamId::for_aggregate(DownloadLink::KIND, link_id)
}

/// The sync's record of a file: an event only if something changed.
pub fn sync_command(
    document_id: &str,
    fields: domain::document::DocumentFields,
    sync_id: &str,
) -> SyncDocument {
    SyncDocument {
        document_id: document_id.to_owned(),
        fields,
        sync_id: sync_id.to_owned(),
    }
}

/// Why a document command was refused.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// The link was used already.
    #[error("the download link was already used")]
    LinkUsed,
}

impl From<std::convert::Infallible> for DocumentError {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}

fn never(e: std::convert::Infallible) -> CommandError<DocumentError> {
    match e {}
}

/// A listing of a customer's documents, or a download of one through link `link`.
pub struct RecordDocumentAccess {
    pub customer_id: String,
    pub access: RecordAccess,
    /// A download's link id: reserved, so that the link opens once.
    pub link: Option<String>,
}

impl Command for RecordDocumentAccess {
    type Output = ();
    type Error = DocumentError;
    const NAME: &'static str = "documentaccess";

    fn attempts(&self) -> Option<u32> {
        // Listings of one customer share its log.
        Some(crate::commerce::PATIENT)
    }

    async fn decide(&self, tx: &mut Tx<'_>) -> Result<(), CommandError<DocumentError>> {
        let log = access_stream(&self.customer_id);
        let (access, _) = tx
            .load_tail::<DocumentAccess>(&log)
            .await
            .map_err(|e| e.map_rejected(DocumentError::from))?;
        let events = access.decide(&self.access, tx.ctx()).map_err(never)?;
        if let Some(link) = &self.link {
            debug_assert_eq!(self.access.kind, AccessKind::Downloaded);
            let document = self
                .access
                .document_ids
                .first()
                .cloned()
                .unwrap_or_default();
            let redeemed = DownloadLink.decide(&document, tx.ctx()).map_err(never)?;
            tx.reserve::<DownloadLink>(&link_stream(link), &redeemed, "download link");
        }
        tx.write::<DocumentAccess>(&log, &events);
        Ok(())
    }
}
