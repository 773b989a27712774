//! Salesforce customers on the one pipeline: a tenant's connection (private stream), the
//! a sync run with the tenant's one slot, and each record
//! a run hands in. Also the port the Salesforce client implements (`CrmSource`).

use crate::handler::{CommandError, CommandHandler, CommandMeta};
use crate::pipeline::{Command, Tx};
use crate::registry::{Integration, enroll, enrolled};
use chrono::{DateTime, Utc};
use domain::customer::{Customer, CustomerCommand, CustomerFields};
use domain::customer_sync::{
    CustomerSync, SlotCommand, SlotError, SyncCommand, SyncCounts, SyncError, SyncMode, SyncSlot,
    Watermark,
};
use domain::salesforce::{
    ConnectionCommand, ConnectionError, SalesforceConnected, SalesforceConnection,
};
use domain::{Aggregate, StreamId, TenantId};

/// Why a customer or sync command was refused.
#[derive(Debug, thiserror::Error)]
pub enum CrmCommandError {
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Slot(#[from] SlotError),
    #[error(transparent)]
    Case(#[from] domain::case::CaseError),
    #[error(transparent)]
    Customer(#[from] domain::customer::CustomerError),
}

impl From<std::convert::Infallible> for CrmCommandError {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}

fn lift<E: std::error::Error + 'static>(e: CommandError<E>) -> CommandError<CrmCommandError>
where
    CrmCommandError: From<E>,
{
    e.map_rejected(CrmCommandError::from)
}

fn rejected(e: impl Into<CrmCommandError>) -> CommandError<CrmCommandError> {
    CommandError::Rejected(e.into())
}

pub fn connection_stream() -> StreamId {
    StreamId::for_aggregate(SalesforceConnection::KIND, "salesforce")
}

pub fn slot_stream() -> StreamId {
    StreamId::for_aggregate(SyncSlot::KIND, "salesforce")
}

pub fn sync_stream(id: &str) -> StreamId {
    StreamId::for_aggregate(CustomerSync::KIND, id)
}

pub fn customer_stream(id: &str) -> StreamId {
    StreamId::for_aggregate(Customer::KIND, id)
}

/// A tenant's org, as the Salesforce client needs it; the secret still sealed.
#[derive(Debug, Clone)]
pub struct Org {
    pub tenant: TenantId,
    pub connection: SalesforceConnected,
}

/// One Account as Salesforce has it (or its deletion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    pub id: String,
    pub fields: CustomerFields,
    pub system_modstamp: DateTime<Utc>,
    pub deleted: bool,
}

/// A page of a query, and where the next one is.
#[derive(Debug, Clone, Default)]
pub struct AccountPage {
    pub records: Vec<AccountRecord>,
    pub next: Option<String>,
}

/// Why a call of Salesforce failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrmError {
    /// The org refused the credentials (token request).
    #[error("Salesforce refused the credentials: {0}")]
    Credentials(String),
    /// The org's API limit (REQUEST_LIMIT_EXCEEDED).
    #[error("Salesforce API limit reached: {0}")]
    RateLimited(String),
    /// Any other refusal or failure (QUERY_TIMEOUT, 5xx, unreachable).
    #[error("Salesforce failed: {0}")]
    Failed(String),
    /// A record Salesforce will not take as it is (400: a validation rule, a missing
    /// field): no retry can fix it.
    #[error("Salesforce refused the record: {0}")]
    Refused(String),
}

impl CrmError {
    /// Whether another call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::RateLimited(_) | Self::Failed(_))
    }
}

/// A case as the org's Case object gets it, keyed by Chronicle's case id in the
/// connection's External ID field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseRecord {
    pub case_id: String,
    /// The customer's Account.
    pub account_id: String,
    pub subject: String,
    pub description: String,
    /// Case.Priority and Case.Status picklist values.
    pub priority: &'static str,
    pub status: &'static str,
}

/// A portal case as the org has it: its Case Id, Chronicle's case id (the External ID
/// field), its status, comments and last modification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCase {
    pub salesforce_id: String,
    pub case_id: String,
    pub status: String,
    pub modified_at: DateTime<Utc>,
    pub comments: Vec<domain::case::RemoteComment>,
}

/// A file linked to an Account, as ContentDocumentLink and its ContentDocument's latest
/// version have it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteDocument {
    pub document_id: String,
    pub fields: domain::document::DocumentFields,
}

/// A file's bytes as Salesforce sends them, chunk by chunk.
pub struct FileStream {
    /// The length Salesforce announced, if it did.
    pub length: Option<u64>,
    pub content_type: Option<String>,
    pub chunks: futures::stream::BoxStream<'static, Result<bytes::Bytes, CrmError>>,
}

/// What an upsert did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upserted {
    pub salesforce_id: String,
    /// A new Case (201), rather than the one an earlier attempt made (204).
    pub created: bool,
}

/// The Salesforce REST API, per tenant org (the port the client implements).
#[async_trait::async_trait]
pub trait CrmSource: Send + Sync {
    /// Checks the connection with a token request.
    async fn check(&self, org: &Org) -> Result<(), CrmError>;
    /// The first page of Accounts modified at or after `since` (every one when `None`),
    /// ordered by (SystemModstamp, Id); with `deleted`, only the deleted ones (queryAll).
    async fn accounts(
        &self,
        org: &Org,
        since: Option<DateTime<Utc>>,
        deleted: bool,
    ) -> Result<AccountPage, CrmError>;
    /// The page at `next` (a `nextRecordsUrl`).
    async fn next_page(&self, org: &Org, next: &str) -> Result<AccountPage, CrmError>;
    /// Creates or updates the Case whose External ID field holds `case.case_id`: however
    /// often it is sent, the org has one such Case.
    async fn upsert_case(&self, org: &Org, case: &CaseRecord) -> Result<Upserted, CrmError>;
    /// The Cases with Chronicle's case id in the External ID field, modified at or after
    /// `since` (every one when `None`), with their comments: every page.
    async fn cases(
        &self,
        org: &Org,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<RemoteCase>, CrmError>;
    /// The files linked to the org's Accounts, modified at or after `since` (every one
    /// when `None`): every page.
    async fn documents(
        &self,
        org: &Org,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<RemoteDocument>, CrmError>;
    /// The bytes of ContentVersion `version_id` (its VersionData), streamed.
    async fn version_data(&self, org: &Org, version_id: &str) -> Result<FileStream, CrmError>;
}

/// The tenant's connection, if any.
pub async fn connection(
    handler: &CommandHandler,
    tenant: &TenantId,
) -> Result<Option<SalesforceConnected>, CommandError<CrmCommandError>> {
    let (c, _) = handler
        .tail_state::<SalesforceConnection>(tenant, &connection_stream())
        .await
        .map_err(lift)?;
    Ok(c.current)
}

/// Connects (or reconnects) the tenant, and registers it for the scheduled sync.
pub async fn connect(
    handler: &CommandHandler,
    meta: &CommandMeta,
    command: ConnectionCommand,
) -> Result<(), CommandError<CrmCommandError>> {
    let enrolls = matches!(command, ConnectionCommand::Connect { .. });
    handler
        .execute::<SalesforceConnection>(meta, &connection_stream(), &command, None)
        .await
        .map_err(lift)?;
    enroll(handler, meta, Integration::Salesforce, enrolls)
        .await
        .map_err(lift)
}

/// The tenants with a connection.
pub async fn connected_tenants(
    handler: &CommandHandler,
) -> Result<Vec<TenantId>, CommandError<CrmCommandError>> {
    enrolled(handler, Integration::Salesforce)
        .await
        .map_err(lift)
}

/// A run that held the slot this long without ending is taken to have died.
pub const STALE_SYNC: chrono::Duration = chrono::Duration::minutes(30);

/// Starts a run: takes the tenant's slot (409 naming the running sync when taken) and
/// writes CustomerSyncStarted from the slot's watermark, in one append.
pub struct StartSync {
    pub sync_id: String,
    pub mode: SyncMode,
}

impl Command for StartSync {
    type Output = CustomerSync;
    type Error = CrmCommandError;
    const NAME: &'static str = "customersync";

    async fn decide(&self, tx: &mut Tx<'_>) -> Result<CustomerSync, CommandError<CrmCommandError>> {
        let (c, _) = tx
            .load_tail::<SalesforceConnection>(&connection_stream())
            .await
            .map_err(lift)?;
        if c.current.is_none() {
            return Err(rejected(ConnectionError::NotConnected));
        }
        let (slot, _) = tx
            .load_tail::<SyncSlot>(&slot_stream())
            .await
            .map_err(lift)?;
        let taken = slot
            .decide(
                &SlotCommand::Take {
                    sync_id: self.sync_id.clone(),
                    stale_after: STALE_SYNC,
                },
                tx.ctx(),
            )
            .map_err(rejected)?;
        let since = match self.mode {
            SyncMode::Full => None,
            SyncMode::Incremental => slot.watermark.clone(),
        };
        let mut sync = CustomerSync::default();
        let started = sync
            .decide(
                &SyncCommand::Start {
                    sync_id: self.sync_id.clone(),
                    mode: self.mode,
                    since,
                },
                tx.ctx(),
            )
            .map_err(rejected)?;
        tx.write::<SyncSlot>(&slot_stream(), &taken);
        tx.write::<CustomerSync>(&sync_stream(&self.sync_id), &started);
        for e in &started {
            sync.apply(e);
        }
        Ok(sync)
    }
}

/// A run's step: its counts so far and (page by page) the watermark, kept on the slot too,
/// so that a run cut off keeps what it wrote; or its end, which frees the slot.
pub struct StepSync {
    pub sync_id: String,
    /// `Progress`, `Complete` or `Fail`.
    pub command: SyncCommand,
}

impl Command for StepSync {
    type Output = CustomerSync;
    type Error = CrmCommandError;
    const NAME: &'static str = "customersync";

    async fn decide(&self, tx: &mut Tx<'_>) -> Result<CustomerSync, CommandError<CrmCommandError>> {
        let stream = sync_stream(&self.sync_id);
        let (mut sync, _) = tx.load::<CustomerSync>(&stream).await.map_err(lift)?;
        let events = sync.decide(&self.command, tx.ctx()).map_err(rejected)?;
        let (watermark, ends) = match &self.command {
            SyncCommand::Progress { watermark, .. } => (watermark.clone(), false),
            SyncCommand::Complete { watermark, .. } | SyncCommand::Fail { watermark, .. } => {
                (watermark.clone(), true)
            }
            SyncCommand::Start { .. } => (None, false),
        };
        let (mut slot, _) = tx
            .load_tail::<SyncSlot>(&slot_stream())
            .await
            .map_err(lift)?;
        // A run the slot no longer names (taken over as stale) ends without touching it.
        if slot.running.as_deref() == Some(self.sync_id.as_str()) {
            let mut slot_events = Vec::new();
            if let Some(w) = watermark {
                let advanced = slot
                    .decide(
                        &SlotCommand::Advance {
                            sync_id: self.sync_id.clone(),
                            watermark: w,
                        },
                        tx.ctx(),
                    )
                    .map_err(rejected)?;
                for e in &advanced {
                    slot.apply(e);
                }
                slot_events.extend(advanced);
            }
            if ends {
                let released = slot
                    .decide(
                        &SlotCommand::Release {
                            sync_id: self.sync_id.clone(),
                            completed: matches!(self.command, SyncCommand::Complete { .. }),
                        },
                        tx.ctx(),
                    )
                    .map_err(rejected)?;
                slot_events.extend(released);
            }
            // Each slot event holds the whole state: the last one is enough.
            if let Some(last) = slot_events.pop() {
                tx.write::<SyncSlot>(&slot_stream(), &[last]);
            }
        }
        tx.write::<CustomerSync>(&stream, &events);
        for e in &events {
            sync.apply(e);
        }
        Ok(sync)
    }
}

/// What one record did to its customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    Imported,
    Updated,
    Deleted,
    Unchanged,
}

impl RecordOutcome {
    pub fn count(self, c: &mut SyncCounts) {
        match self {
            Self::Imported => c.imported += 1,
            Self::Updated => c.updated += 1,
            Self::Deleted => c.deleted += 1,
            Self::Unchanged => c.unchanged += 1,
        }
    }
}

/// Hands one record of run `sync_id` to its customer: an event only if something changed.
pub async fn apply_record(
    handler: &CommandHandler,
    meta: &CommandMeta,
    sync_id: &str,
    record: &AccountRecord,
) -> Result<RecordOutcome, CommandError<CrmCommandError>> {
    let command = if record.deleted {
        CustomerCommand::Delete {
            system_modstamp: record.system_modstamp,
            sync_id: sync_id.to_owned(),
        }
    } else {
        CustomerCommand::Sync {
            customer_id: record.id.clone(),
            fields: record.fields.clone(),
            system_modstamp: record.system_modstamp,
            sync_id: sync_id.to_owned(),
        }
    };
    let done = handler
        .execute::<Customer>(meta, &customer_stream(&record.id), &command, None)
        .await
        .map_err(lift)?;
    let outcome =
        done.events
            .first()
            .map_or(RecordOutcome::Unchanged, |e| match e.event_type.as_str() {
                "CustomerImported" => RecordOutcome::Imported,
                "CustomerDeleted" => RecordOutcome::Deleted,
                _ => RecordOutcome::Updated,
            });
    Ok(outcome)
}

/// The watermark after `record`: the later of the two by (SystemModstamp, Id).
pub fn later(current: Option<Watermark>, record: &AccountRecord) -> Option<Watermark> {
    let seen = Watermark {
        system_modstamp: record.system_modstamp,
        id: record.id.clone(),
    };
    Some(match current {
        Some(w) if w >= seen => w,
        _ => seen,
    })
}
