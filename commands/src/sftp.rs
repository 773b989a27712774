//! The SFTP integration on the one pipeline: a tenant's connection (configured after the
//! caller checked it against the server, removed), and the runs of its import. A run
//! takes the tenant's import slot (one run per tenant at a time, as Salesforce syncs take
//! theirs), records each file it imported, with the file's name and SHA-256 in the same
//! append, and frees the slot when it ends.
//!
//! The port to the file server (`FileServer`) is implemented over SSH in `infra::sftp`.

use crate::attempts::CallFailure;
use crate::handler::{CommandError, CommandHandler, CommandMeta};
use crate::pipeline::{Command, Tx};
use crate::registry::{Integration, enroll, enrolled};
use domain::customer_sync::{SlotCommand, SlotError, SyncSlot};
use domain::salesforce::SealedSecret;
use domain::sftp::{
    ImportTrigger, ImportedFile, ImportedFileRecorded, SftpConfigured, SftpConnection,
    SftpConnectionCommand, SftpConnectionError, SftpImport, SftpImportCommand, SftpImportError,
};
use domain::{Aggregate, StreamId, TenantId};

/// Where the server is and how to log in (the secret still sealed: the adapter unseals
/// it), and the host key the server must show.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub auth: domain::sftp::AuthMethod,
    pub secret: SealedSecret,
    pub host_key_fingerprint: String,
}

impl Endpoint {
    pub fn of(c: &SftpConfigured) -> Self {
        Self {
            host: c.host.as_str().to_owned(),
            port: c.port,
            username: c.username.as_str().to_owned(),
            auth: c.auth,
            secret: c.secret.clone(),
            host_key_fingerprint: c.host_key_fingerprint.as_str().to_owned(),
        }
    }
}

/// A regular file in a directory of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    pub name: String,
    pub size: u64,
}

/// An SFTP server (the port `infra::sftp` implements over SSH).
#[async_trait::async_trait]
pub trait FileServer: Send + Sync {
    /// Connects and logs in; a server whose host key does not match is refused
    /// (`Permanent`), as are refused credentials.
    async fn connect(&self, to: &Endpoint) -> Result<Box<dyn FileSession>, CallFailure>;
}

/// One logged-in session.
#[async_trait::async_trait]
pub trait FileSession: Send + Sync {
    /// The regular files of `dir`, by name.
    async fn list(&self, dir: &str) -> Result<Vec<RemoteFile>, CallFailure>;
    /// `path`'s content, read as it streams.
    async fn open(
        &self,
        path: &str,
    ) -> Result<Box<dyn tokio::io::AsyncRead + Send + Unpin>, CallFailure>;
    async fn rename(&self, from: &str, to: &str) -> Result<(), CallFailure>;
}

/// Why an SFTP command was refused.
#[derive(Debug, thiserror::Error)]
pub enum SftpError {
    #[error(transparent)]
    Connection(#[from] SftpConnectionError),
    #[error(transparent)]
    Import(#[from] SftpImportError),
    #[error("import {0} is running; one import per tenant at a time")]
    Busy(String),
    #[error(transparent)]
    Slot(SlotError),
    #[error("the scheduled import is not due")]
    NotDue,
}

impl From<SlotError> for SftpError {
    fn from(e: SlotError) -> Self {
        match e {
            SlotError::Busy(id) => Self::Busy(id),
            e => Self::Slot(e),
        }
    }
}

impl From<std::convert::Infallible> for SftpError {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}

fn lift<E: std::error::Error + 'static>(e: CommandError<E>) -> CommandError<SftpError>
where
    SftpError: From<E>,
{
    e.map_rejected(SftpError::from)
}

fn rejected(e: impl Into<SftpError>) -> CommandError<SftpError> {
    CommandError::Rejected(e.into())
}

/// The integration's instance of the per-tenant streams (connection, slot).
const SFTP: &str = "sftp";

pub fn connection_stream() -> StreamId {
    StreamId::for_aggregate(SftpConnection::KIND, SFTP)
}

pub fn slot_stream() -> StreamId {
    StreamId::for_aggregate(SyncSlot::KIND, SFTP)
}

pub fn import_stream(id: &str) -> StreamId {
    StreamId::for_aggregate(SftpImport::KIND, id)
}

pub fn file_stream(file: &str, sha256: &str) -> StreamId {
    StreamId::for_aggregate(ImportedFile::KIND, ImportedFile::instance(file, sha256))
}

/// The tenant's connection, if any.
pub async fn connection_of(
    handler: &CommandHandler,
    tenant: &TenantId,
) -> Result<Option<SftpConfigured>, CommandError<SftpError>> {
    let (c, _) = handler
        .tail_state::<SftpConnection>(tenant, &connection_stream())
        .await
        .map_err(lift)?;
    Ok(c.current)
}

/// The run that imported `file` with content `sha256`, if one did.
pub async fn imported_by(
    handler: &CommandHandler,
    tenant: &TenantId,
    file: &str,
    sha256: &str,
) -> Result<Option<String>, CommandError<SftpError>> {
    let (f, _) = handler
        .tail_state::<ImportedFile>(tenant, &file_stream(file, sha256))
        .await
        .map_err(lift)?;
    Ok(f.recorded.map(|r| r.import_id))
}

/// Configures (or replaces) the tenant's connection and enrolls the tenant for the
/// scheduled imports.
pub async fn configure(
    handler: &CommandHandler,
    meta: &CommandMeta,
    config: SftpConfigured,
) -> Result<SftpConfigured, CommandError<SftpError>> {
    let stored = handler.run(meta, &ConfigureSftp { config }).await?.output;
    enroll(handler, meta, Integration::Sftp, true)
        .await
        .map_err(lift)?;
    Ok(stored)
}

/// Removes the tenant's connection and withdraws it from the scheduled imports.
pub async fn remove(
    handler: &CommandHandler,
    meta: &CommandMeta,
) -> Result<(), CommandError<SftpError>> {
    handler.run(meta, &RemoveSftp).await?;
    enroll(handler, meta, Integration::Sftp, false)
        .await
        .map_err(lift)
}

/// The tenants with a connection, for the scheduler.
pub async fn configured_tenants(
    handler: &CommandHandler,
) -> Result<Vec<TenantId>, CommandError<SftpError>> {
    enrolled(handler, Integration::Sftp).await.map_err(lift)
}

/// Configures (or replaces) the tenant's connection.
pub struct ConfigureSftp {
    pub config: SftpConfigured,
}

impl Command for ConfigureSftp {
    type Output = SftpConfigured;
    type Error = SftpError;
    const NAME: &'static str = "sftpconnection";

    async fn decide(&self, tx: &mut Tx<'_>) -> Result<SftpConfigured, CommandError<SftpError>> {
        let stream = connection_stream();
        let (c, _) = tx
            .load_tail::<SftpConnection>(&stream)
            .await
            .map_err(lift)?;
        let events = c
            .decide(
                &SftpConnectionCommand::Configure(Box::new(self.config.clone())),
                tx.ctx(),
            )
            .map_err(rejected)?;
        tx.write::<SftpConnection>(&stream, &events);
        let mut c = c;
        for e in &events {
            c.apply(e);
        }
        c.current
            .ok_or_else(|| rejected(SftpConnectionError::NotConfigured))
    }
}

/// Removes the tenant's connection.
pub struct RemoveSftp;

impl Command for RemoveSftp {
    type Output = ();
    type Error = SftpError;
    const NAME: &'static str = "sftpconnection";

    async fn decide(&self, tx: &mut Tx<'_>) -> Result<(), CommandError<SftpError>> {
        let stream = connection_stream();
        let (c, _) = tx
            .load_tail::<SftpConnection>(&stream)
            .await
            .map_err(lift)?;
        let events = c
            .decide(&SftpConnectionCommand::Remove, tx.ctx())
            .map_err(rejected)?;
        tx.write::<SftpConnection>(&stream, &events);
        Ok(())
    }
}

/// A run the worker may take over from a stopped one after this long.
const STALE_AFTER_HOURS: i64 = 6;

/// Starts a run of the import: the tenant must have a connection, and no other run may
/// hold the slot; a scheduled run also must be due (the last run took the slot at least
/// one period of the connection's schedule ago).
pub struct StartImport {
    pub import_id: String,
    pub trigger: ImportTrigger,
}

impl Command for StartImport {
    type Output = SftpImport;
    type Error = SftpError;
    const NAME: &'static str = "sftpimport";

    async fn decide(&self, tx: &mut Tx<'_>) -> Result<SftpImport, CommandError<SftpError>> {
        let (c, _) = tx
            .load_tail::<SftpConnection>(&connection_stream())
            .await
            .map_err(lift)?;
        let Some(connection) = c.current else {
            return Err(rejected(SftpConnectionError::NotConfigured));
        };
        let slot = slot_stream();
        let (s, _) = tx.load::<SyncSlot>(&slot).await.map_err(lift)?;
        let stale_after = chrono::Duration::hours(STALE_AFTER_HOURS);
        if self.trigger == ImportTrigger::Scheduled {
            let every = connection.schedule.minutes;
            let period = chrono::Duration::minutes(i64::from(every));
            if every == 0 || !s.due(tx.ctx().now, period, stale_after) {
                return Err(rejected(SftpError::NotDue));
            }
        }
        let taken = s
            .decide(
                &SlotCommand::Take {
                    sync_id: self.import_id.clone(),
                    stale_after,
                },
                tx.ctx(),
            )
            .map_err(rejected)?;
        tx.write::<SyncSlot>(&slot, &taken);
        let mut import = SftpImport::default();
        let events = import
            .decide(
                &SftpImportCommand::Start {
                    import_id: self.import_id.clone(),
                    trigger: self.trigger,
                },
                tx.ctx(),
            )
            .map_err(rejected)?;
        tx.write::<SftpImport>(&import_stream(&self.import_id), &events);
        for e in &events {
            import.apply(e);
        }
        Ok(import)
    }
}

/// A worker's step on a run: a file imported (recorded by name and content in the same
/// append) or skipped, the run completed or failed (the slot freed in the same append).
pub struct AdvanceImport {
    pub import_id: String,
    pub command: SftpImportCommand,
}

impl Command for AdvanceImport {
    type Output = SftpImport;
    type Error = SftpError;
    const NAME: &'static str = "sftpimport";

    async fn decide(&self, tx: &mut Tx<'_>) -> Result<SftpImport, CommandError<SftpError>> {
        let stream = import_stream(&self.import_id);
        let (mut import, _) = tx.load::<SftpImport>(&stream).await.map_err(lift)?;
        let events = import.decide(&self.command, tx.ctx()).map_err(rejected)?;
        match &self.command {
            SftpImportCommand::FileImported(report) => {
                let at = file_stream(&report.file, &report.sha256);
                let (f, _) = tx.load_tail::<ImportedFile>(&at).await.map_err(lift)?;
                let recorded = f
                    .decide(
                        &ImportedFileRecorded {
                            file: report.file.clone(),
                            sha256: report.sha256.clone(),
                            import_id: self.import_id.clone(),
                            at: tx.ctx().now,
                        },
                        tx.ctx(),
                    )
                    .map_err(lift_never)?;
                tx.write::<ImportedFile>(&at, &recorded);
            }
            SftpImportCommand::Complete | SftpImportCommand::Fail { .. } => {
                let slot = slot_stream();
                let (s, _) = tx.load::<SyncSlot>(&slot).await.map_err(lift)?;
                // A slot another run took over (this one was stale) stays with it.
                if let Ok(freed) = s.decide(
                    &SlotCommand::Release {
                        sync_id: self.import_id.clone(),
                        completed: matches!(self.command, SftpImportCommand::Complete),
                    },
                    tx.ctx(),
                ) {
                    tx.write::<SyncSlot>(&slot, &freed);
                }
            }
            _ => {}
        }
        tx.write::<SftpImport>(&stream, &events);
        for e in &events {
            import.apply(e);
        }
        Ok(import)
    }
}

fn lift_never(e: std::convert::Infallible) -> CommandError<SftpError> {
    match e {}
}
