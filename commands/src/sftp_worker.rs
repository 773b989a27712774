//! The SFTP import worker: runs a started import to its end. It logs in to the tenant's
//! server (whose host key must match), lists the inbox, and imports each file once: a
//! first pass streams the file through SHA-256, and a file recorded already (same name,
//! same content) is skipped; otherwise a second pass streams its CSV lines, each posted
//! through the ledger's PostTransaction with its `reference` (a reference posted already,
//! by a run that stopped mid-file, is counted as skipped, never posted twice). A bad line
//! is reported with its line number and reason, and the others go on. A done file is
//! recorded, then moved to the processed directory. Neither pass holds the file in memory.
//!
//! A run cut off (a crash, a lost connection) is run again from its start event: files it
//! recorded are not read again, and the file it was in is resumed by its references.

use crate::attempts::CallFailure;
use crate::handler::{CommandError, CommandHandler, CommandMeta, RequestIds};
use crate::ledger::{PostTransaction, legs, number_stream};
use crate::sftp::{
    AdvanceImport, Endpoint, FileServer, FileSession, SftpError, StartImport, configured_tenants,
    connection_of, import_stream, imported_by,
};
use crate::worker::{EventWorker, WorkFailure};
use domain::account::{AccountNumber, Kind};
use domain::money::{Currency, PositiveMoney};
use domain::sftp::{
    FileReport, ImportStatus, ImportTrigger, LineFailure, MAX_REPORTED_FAILURES,
    SftpConnectionError, SftpImport, SftpImportCommand,
};
use domain::transaction::{NewTransaction, Reference};
use domain::{Actor, Aggregate, EventEnvelope, Role, TenantId, UserId};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// The actor of the worker's events.
pub const WORKER: &str = "system:sftp-worker";

/// The header every file starts with (in any order).
pub const COLUMNS: [&str; 6] = [
    "account_number",
    "kind",
    "amount",
    "currency",
    "reference",
    "value_date",
];

/// Lines posted at once.
const IN_FLIGHT: usize = 32;

/// The longest line read; a longer one is a failed line.
const MAX_LINE: usize = 4096;

pub struct SftpWorker {
    handler: CommandHandler,
    server: Arc<dyn FileServer>,
    actor: Actor,
}

/// Why a run stopped before its end: it is run again.
#[derive(Debug, thiserror::Error)]
enum Interrupted {
    #[error("{0}")]
    Server(CallFailure),
    #[error("{0}")]
    Command(String),
    #[error("{0}")]
    Retryable(WorkFailure),
}

impl<E: std::error::Error + 'static> From<CommandError<E>> for Interrupted {
    fn from(e: CommandError<E>) -> Self {
        Self::Retryable(crate::worker::failure(e))
    }
}

impl SftpWorker {
    pub fn new(
        handler: CommandHandler,
        server: Arc<dyn FileServer>,
    ) -> Result<Self, domain::ValidationError> {
        Ok(Self {
            handler,
            server,
            actor: Actor {
                user_id: UserId::parse(WORKER)?,
                role: Role::Admin,
            },
        })
    }

    fn meta(&self, tenant: &TenantId, cause: &RequestIds) -> CommandMeta {
        CommandMeta::of(tenant.clone(), self.actor.clone(), (*cause).next(), None)
    }

    async fn advance(
        &self,
        tenant: &TenantId,
        cause: &RequestIds,
        import_id: &str,
        command: SftpImportCommand,
    ) -> Result<SftpImport, CommandError<SftpError>> {
        let advance = AdvanceImport {
            import_id: import_id.to_owned(),
            command,
        };
        Ok(self
            .handler
            .run(&self.meta(tenant, cause), &advance)
            .await?
            .output)
    }

    /// Starts a scheduled run for every tenant with a connection whose schedule is due
    /// and that runs none (the check is the start command's own, in its append). Returns
    /// the runs started; the worker runs them when their start events reach it.
    pub async fn schedule(&self) -> Result<Vec<(TenantId, String)>, CommandError<SftpError>> {
        let mut started = Vec::new();
        for tenant in configured_tenants(&self.handler).await? {
            let import_id = uuid::Uuid::now_v7().to_string();
            let start = StartImport {
                import_id: import_id.clone(),
                trigger: ImportTrigger::Scheduled,
            };
            match self
                .handler
                .run(&self.meta(&tenant, &RequestIds::fresh()), &start)
                .await
            {
                Ok(_) => started.push((tenant, import_id)),
                Err(CommandError::Rejected(
                    SftpError::NotDue
                    | SftpError::Busy(_)
                    | SftpError::Connection(SftpConnectionError::NotConfigured),
                )) => {}
                Err(e) => {
                    tracing::warn!(tenant_id = %tenant, error = %e, "scheduled SFTP import not started");
                }
            }
        }
        Ok(started)
    }

    /// Runs import `import_id` to its end (or, cut off, leaves it for a rerun).
    pub async fn run(
        &self,
        tenant: &TenantId,
        import_id: &str,
        cause: RequestIds,
    ) -> Result<(), WorkFailure> {
        let (import, _) = self
            .handler
            .state::<SftpImport>(tenant, &import_stream(import_id))
            .await
            .map_err(crate::worker::failure)?;
        if import.status != Some(ImportStatus::Running) {
            return Ok(());
        }
        let ended = match self.files(tenant, import_id, &cause, import).await {
            Ok(()) => SftpImportCommand::Complete,
            // The server refused us for good (its host key, the credentials, a missing
            // directory): the run fails, and the next one tries again.
            Err(Interrupted::Server(CallFailure::Permanent { reason })) => {
                SftpImportCommand::Fail { error: reason }
            }
            Err(Interrupted::Command(reason)) => SftpImportCommand::Fail { error: reason },
            Err(Interrupted::Server(CallFailure::Retryable { reason, .. })) => {
                return Err(WorkFailure::Retry(reason));
            }
            Err(Interrupted::Retryable(f)) => return Err(f),
        };
        let failed = matches!(ended, SftpImportCommand::Fail { .. });
        self.advance(tenant, &cause, import_id, ended)
            .await
            .map_err(crate::worker::failure)?;
        tracing::info!(tenant_id = %tenant, import_id, failed, "SFTP import ended");
        Ok(())
    }

    async fn files(
        &self,
        tenant: &TenantId,
        import_id: &str,
        cause: &RequestIds,
        mut import: SftpImport,
    ) -> Result<(), Interrupted> {
        let Some(c) = connection_of(&self.handler, tenant).await? else {
            return Err(Interrupted::Command(
                "the tenant's SFTP connection was removed".into(),
            ));
        };
        let session = self
            .server
            .connect(&Endpoint::of(&c))
            .await
            .map_err(Interrupted::Server)?;
        let inbox = c.inbox_dir.as_str().trim_end_matches('/');
        let processed = c.processed_dir.as_str().trim_end_matches('/');
        let mut files = session.list(inbox).await.map_err(Interrupted::Server)?;
        files.sort_by(|a, b| a.name.cmp(&b.name));
        // A done file keeps its name in the processed directory unless one by that name is
        // there already; then it gets the run's id too.
        let mut taken: std::collections::BTreeSet<String> = session
            .list(processed)
            .await
            .map_err(Interrupted::Server)?
            .into_iter()
            .map(|f| f.name)
            .collect();
        for file in files {
            let path = format!("{inbox}/{}", file.name);
            let sha256 = digest(session.as_ref(), &path).await?;
            let mut target = file.name.clone();
            if taken.contains(&target) {
                target = format!("{}.{import_id}", file.name);
            }
            taken.insert(target.clone());
            let moved_to = format!("{processed}/{target}");
            if import.has_done(&file.name, &sha256) {
                // Recorded by this run before it stopped, not yet moved.
                move_file(session.as_ref(), &path, &moved_to).await?;
                continue;
            }
            if let Some(by) = imported_by(&self.handler, tenant, &file.name, &sha256).await? {
                if !import.skipped_files.contains(&file.name) {
                    import = self
                        .advance(
                            tenant,
                            cause,
                            import_id,
                            SftpImportCommand::FileSkipped {
                                file: file.name.clone(),
                                sha256,
                                imported_by: by,
                            },
                        )
                        .await?;
                }
                move_file(session.as_ref(), &path, &moved_to).await?;
                continue;
            }
            let report = self
                .import_file(tenant, cause, session.as_ref(), &path, (&file.name, sha256))
                .await?;
            let report = FileReport {
                moved_to: moved_to.clone(),
                ..report
            };
            tracing::info!(
                tenant_id = %tenant, import_id, file = %report.file, lines = report.lines_read,
                posted = report.posted, skipped = report.skipped, failed = report.failed,
                "SFTP file imported"
            );
            // Recorded before it moves: a crash in between finds it recorded and moves it.
            import = self
                .advance(
                    tenant,
                    cause,
                    import_id,
                    SftpImportCommand::FileImported(report),
                )
                .await?;
            move_file(session.as_ref(), &path, &moved_to).await?;
        }
        Ok(())
    }

    async fn import_file(
        &self,
        tenant: &TenantId,
        cause: &RequestIds,
        session: &dyn FileSession,
        path: &str,
        (name, sha256): (&str, String),
    ) -> Result<FileReport, Interrupted> {
        let mut report = FileReport {
            file: name.to_owned(),
            sha256,
            lines_read: 0,
            posted: 0,
            skipped: 0,
            failed: 0,
            failures: Vec::new(),
            moved_to: String::new(),
        };
        let reader = session.open(path).await.map_err(Interrupted::Server)?;
        let mut lines = BufReader::new(reader).lines();
        let header = match lines.next_line().await {
            Ok(Some(h)) => h,
            Ok(None) => {
                fail(
                    &mut report,
                    1,
                    "the file is empty: it needs the header line".into(),
                );
                return Ok(report);
            }
            Err(e) => return Err(read_error(path, &e)),
        };
        let columns = match Columns::of(&header) {
            Ok(c) => c,
            Err(reason) => {
                fail(&mut report, 1, reason);
                return Ok(report);
            }
        };
        let mut number = 1u64;
        loop {
            let mut batch = Vec::with_capacity(IN_FLIGHT);
            while batch.len() < IN_FLIGHT {
                match lines.next_line().await {
                    Ok(Some(line)) => {
                        number += 1;
                        if line.trim().is_empty() {
                            continue;
                        }
                        batch.push((number, line));
                    }
                    Ok(None) => break,
                    Err(e) => return Err(read_error(path, &e)),
                }
            }
            if batch.is_empty() {
                return Ok(report);
            }
            let posts = batch
                .iter()
                .map(|(_, line)| self.post_line(tenant, cause, &columns, line));
            for (n, outcome) in batch
                .iter()
                .map(|(n, _)| *n)
                .zip(futures::future::join_all(posts).await)
            {
                report.lines_read += 1;
                match outcome? {
                    Posted::Yes => report.posted += 1,
                    Posted::Already => report.skipped += 1,
                    Posted::Refused(reason) => fail(&mut report, n, reason),
                }
            }
        }
    }

    async fn post_line(
        &self,
        tenant: &TenantId,
        cause: &RequestIds,
        columns: &Columns,
        line: &str,
    ) -> Result<Posted, Interrupted> {
        let transaction = match self.transaction(tenant, columns, line).await? {
            Ok(t) => t,
            Err(reason) => return Ok(Posted::Refused(reason)),
        };
        match self
            .handler
            .run(&self.meta(tenant, cause), &PostTransaction { transaction })
            .await
        {
            Ok(_) => Ok(Posted::Yes),
            // Posted already (by a run cut off mid-file, or another request).
            Err(CommandError::Taken(_)) => Ok(Posted::Already),
            Err(CommandError::Rejected(e)) => Ok(Posted::Refused(e.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// The line's transaction, or why it has none.
    async fn transaction(
        &self,
        tenant: &TenantId,
        columns: &Columns,
        line: &str,
    ) -> Result<Result<NewTransaction, String>, Interrupted> {
        if line.len() > MAX_LINE {
            return Ok(Err(format!("the line is longer than {MAX_LINE} bytes")));
        }
        let fields = split(line);
        if fields.len() != COLUMNS.len() {
            return Ok(Err(format!(
                "{} fields, not the header's {}",
                fields.len(),
                COLUMNS.len()
            )));
        }
        let field = |name: &str| fields[columns.index(name)].as_str();
        let parsed = (|| -> Result<_, String> {
            let number =
                AccountNumber::parse(field("account_number")).map_err(|e| e.to_string())?;
            let kind = match field("kind").to_ascii_lowercase().as_str() {
                "deposit" => Kind::Deposit,
                "withdrawal" => Kind::Withdrawal,
                "fee" => Kind::Fee,
                "interest" => Kind::Interest,
                other => {
                    return Err(format!(
                        "kind: {other:?} is not deposit, withdrawal, fee or interest"
                    ));
                }
            };
            let amount = PositiveMoney::parse(field("amount")).map_err(|e| e.to_string())?;
            let currency = Currency::parse(field("currency")).map_err(|e| e.to_string())?;
            let reference = Reference::parse(field("reference")).map_err(|e| e.to_string())?;
            let value_date = chrono::NaiveDate::parse_from_str(field("value_date"), "%Y-%m-%d")
                .map_err(|_| {
                    format!(
                        "value_date: {:?} is not a date like 2026-12-03",
                        field("value_date")
                    )
                })?;
            Ok((number, kind, amount, currency, reference, value_date))
        })();
        let (number, kind, amount, currency, reference, value_date) = match parsed {
            Ok(p) => p,
            Err(reason) => return Ok(Err(reason)),
        };
        let Some(account_id) = self.account_of(tenant, &number).await? else {
            return Ok(Err(format!("no account numbered {}", number.as_str())));
        };
        Ok(Ok(NewTransaction {
            transaction_id: reference.transaction_id(),
            kind,
            legs: legs(kind, Some(&account_id), None),
            amount: amount.get(),
            currency,
            reference: reference.as_str().to_owned(),
            value_date,
            reverses: None,
        }))
    }

    /// The id of the tenant's account numbered `number`.
    async fn account_of(
        &self,
        tenant: &TenantId,
        number: &AccountNumber,
    ) -> Result<Option<String>, Interrupted> {
        let last = self
            .handler
            .store()
            .read_last(tenant, &number_stream(number))
            .await
            .map_err(|e| Interrupted::Retryable(WorkFailure::Retry(e.to_string())))?;
        Ok(last.and_then(|e| e.payload["account_id"].as_str().map(str::to_owned)))
    }
}

enum Posted {
    Yes,
    /// The reference was posted already.
    Already,
    Refused(String),
}

fn fail(report: &mut FileReport, line: u64, reason: String) {
    report.failed += 1;
    if report.failures.len() < MAX_REPORTED_FAILURES {
        report.failures.push(LineFailure { line, reason });
    }
}

fn read_error(path: &str, e: &std::io::Error) -> Interrupted {
    Interrupted::Server(CallFailure::Retryable {
        reason: format!("reading {path}: {e}"),
        retry_after: None,
    })
}

async fn digest(session: &dyn FileSession, path: &str) -> Result<String, Interrupted> {
    let mut reader = session.open(path).await.map_err(Interrupted::Server)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader
            .read(&mut buf)
            .await
            .map_err(|e| read_error(path, &e))?;
        if n == 0 {
            return Ok(hex::encode(hash.finalize()));
        }
        hash.update(&buf[..n]);
    }
}

async fn move_file(session: &dyn FileSession, from: &str, to: &str) -> Result<(), Interrupted> {
    session.rename(from, to).await.map_err(Interrupted::Server)
}

/// Where each column is, from the header.
struct Columns {
    at: [usize; COLUMNS.len()],
}

impl Columns {
    fn of(header: &str) -> Result<Self, String> {
        let names: Vec<String> = split(header.trim_start_matches('\u{feff}'))
            .into_iter()
            .map(|n| n.to_ascii_lowercase())
            .collect();
        let mut at = [0; COLUMNS.len()];
        for (i, column) in COLUMNS.iter().enumerate() {
            at[i] = names.iter().position(|n| n == column).ok_or_else(|| {
                format!(
                    "the header has no {column} column (it needs {})",
                    COLUMNS.join(", ")
                )
            })?;
        }
        if names.len() != COLUMNS.len() {
            return Err(format!(
                "the header has {} columns; it needs exactly {}",
                names.len(),
                COLUMNS.join(", ")
            ));
        }
        Ok(Self { at })
    }

    fn index(&self, name: &str) -> usize {
        COLUMNS
            .iter()
            .position(|c| *c == name)
            .map_or(0, |i| self.at[i])
    }
}

/// A CSV line's fields, trimmed; a field may be quoted (`"…"`, with `""` for a quote).
fn split(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field).trim().to_owned()),
            (c, _) => field.push(c),
        }
    }
    fields.push(field.trim().to_owned());
    fields
}

const STARTED: &str = "SftpImportStarted";

#[async_trait::async_trait]
impl EventWorker for SftpWorker {
    fn name(&self) -> &'static str {
        "sftp-worker"
    }

    fn starts_work(&self, event: &EventEnvelope) -> bool {
        event.stream_id.kind() == SftpImport::KIND && event.event_type == STARTED
    }

    async fn handle(&self, event: &EventEnvelope) -> Result<(), WorkFailure> {
        self.run(
            &event.tenant_id,
            event.stream_id.instance(),
            RequestIds::caused_by(event),
        )
        .await
    }

    /// The scheduled poll: a run for every tenant whose schedule is due.
    async fn tick(&self) -> Result<(), WorkFailure> {
        let started = self.schedule().await.map_err(crate::worker::failure)?;
        if !started.is_empty() {
            tracing::info!(imports = started.len(), "scheduled SFTP imports started");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_split_and_unquoted() {
        assert_eq!(
            split("a, b ,\"c, d\",\"say \"\"hi\"\"\"\r"),
            ["a", "b", "c, d", "say \"hi\""]
        );
        let c = Columns::of("reference,kind,amount,currency,account_number,value_date").unwrap();
        assert_eq!(c.index("reference"), 0);
        assert_eq!(c.index("account_number"), 4);
        assert!(Columns::of("reference,kind").is_err());
        assert!(
            Columns::of("account_number,kind,amount,currency,reference,value_date,extra").is_err()
        );
    }
}
