//! A tenant's SFTP integration (seed 002's external system): where its server is, who to
//! log in as (with a password or a private key, sealed before it gets here), the server's
//! host key fingerprint (a server whose key does not match is refused), the inbox it
//! imports from and where done files go. It lives in a private stream, never published.
//! Each run of the import is an `SftpImport`; each file imported once is recorded by name
//! and SHA-256 in an `ImportedFile` stream, so the same file is never imported twice.

use crate::aggregate::{Aggregate, CommandContext, TailState};
use crate::ids::{UserId, ValidationError};
use crate::rules::{Pattern, TextRule};
use crate::salesforce::SealedSecret;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

macro_rules! text_type {
    ($(#[$meta:meta])* $name:ident, $field:literal, $rule:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            pub const RULE: TextRule = $rule;

            pub fn parse(value: &str) -> Result<Self, ValidationError> {
                Self::RULE.check($field, value)?;
                Ok(Self(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        crate::rules::text_serde!($name);
        crate::rules::text_schema!($name, stringify!($name));
    };
}

static HOST: Pattern = Pattern::new(
    r"^([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$|^[0-9A-Fa-f:]+$",
);
text_type!(
    /// The server's host name or IP address.
    SftpHost,
    "host",
    TextRule {
        pattern: Some(&HOST),
        ..TextRule::chars(1, 253, "The SFTP server's host name or IP address.")
    }
);

static USER: Pattern = Pattern::new(r"^[A-Za-z0-9._@-]+$");
text_type!(
    /// The user to log in as.
    SftpUser,
    "username",
    TextRule {
        pattern: Some(&USER),
        ..TextRule::chars(1, 64, "The user to log in as.")
    }
);

static FINGERPRINT: Pattern = Pattern::new(r"^SHA256:[A-Za-z0-9+/]{43}$");
text_type!(
    /// The server's host key fingerprint as `ssh-keygen -l` prints it.
    HostKeyFingerprint,
    "host_key_fingerprint",
    TextRule {
        pattern: Some(&FINGERPRINT),
        ..TextRule::chars(
            50,
            50,
            "The server's host key fingerprint as `ssh-keygen -lf <key>` prints it: SHA256: and 43 characters of base64. A server whose key does not match is refused.",
        )
    }
);

text_type!(
    /// A directory on the server.
    RemoteDir,
    "dir",
    TextRule {
        no_control: true,
        not_blank: true,
        ..TextRule::chars(1, 1024, "A directory on the SFTP server.")
    }
);

macro_rules! secret_type {
    ($(#[$meta:meta])* $name:ident, $field:literal, $rule:expr) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            pub const RULE: TextRule = $rule;

            pub fn parse(value: &str) -> Result<Self, ValidationError> {
                Self::RULE.check($field, value)?;
                Ok(Self(value.to_owned()))
            }

            /// The secret itself: to be sealed, never logged.
            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(…)"))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = <std::borrow::Cow<'de, str> as Deserialize>::deserialize(d)?;
                Self::parse(&raw).map_err(|e| serde::de::Error::custom(e.reason))
            }
        }

        crate::rules::text_schema!($name, stringify!($name));
    };
}

secret_type!(
    /// The SFTP user's password.
    SftpPassword,
    "password",
    TextRule {
        no_control: true,
        ..TextRule::chars(1, 1024, "The user's password; kept encrypted, never shown again.")
    }
);

static PRIVATE_KEY: Pattern = Pattern::new(
    r"^-----BEGIN [A-Z ]*PRIVATE KEY-----\r?\n[A-Za-z0-9+/=\r\n]+-----END [A-Z ]*PRIVATE KEY-----\s*$",
);
secret_type!(
    /// The SFTP user's private key, as OpenSSH writes it.
    PrivateKeyPem,
    "private_key",
    TextRule {
        pattern: Some(&PRIVATE_KEY),
        ..TextRule::chars(
            64,
            16384,
            "The user's private key in OpenSSH format (-----BEGIN OPENSSH PRIVATE KEY-----…), without a passphrase; kept encrypted, never shown again.",
        )
    }
);

/// How often the scheduled import runs: every `minutes` (0: never).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub minutes: u32,
}

impl Default for Schedule {
    /// Hourly.
    fn default() -> Self {
        Self { minutes: 60 }
    }
}

impl Schedule {
    /// `off`, or a period of 5 minutes to 7 days as `15m`, `1h`, `1d`.
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        let bad = || {
            ValidationError::new(
                "schedule",
                format!("{value:?} is not `off` or a period from 5m to 7d, like 15m, 1h or 1d"),
            )
        };
        if value == "off" {
            return Ok(Self { minutes: 0 });
        }
        let (n, unit) = value.split_at(value.find(|c: char| !c.is_ascii_digit()).unwrap_or(0));
        let n: u32 = n.parse().map_err(|_| bad())?;
        let minutes = match unit {
            "m" => n,
            "h" => n.saturating_mul(60),
            "d" => n.saturating_mul(24 * 60),
            _ => return Err(bad()),
        };
        if !(5..=7 * 24 * 60).contains(&minutes) {
            return Err(bad());
        }
        Ok(Self { minutes })
    }

    /// As `parse` reads it.
    pub fn render(self) -> String {
        match self.minutes {
            0 => "off".into(),
            m if m % (24 * 60) == 0 => format!("{}d", m / (24 * 60)),
            m if m % 60 == 0 => format!("{}h", m / 60),
            m => format!("{m}m"),
        }
    }
}

/// How the import logs in: the secret itself is sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    Password,
    PrivateKey,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SftpConfigured {
    pub host: SftpHost,
    pub port: u16,
    pub username: SftpUser,
    pub auth: AuthMethod,
    /// The password or the private key (OpenSSH format), sealed.
    pub secret: SealedSecret,
    pub host_key_fingerprint: HostKeyFingerprint,
    pub inbox_dir: RemoteDir,
    pub processed_dir: RemoteDir,
    pub schedule: Schedule,
    pub configured_by: UserId,
    #[serde(with = "crate::time::rfc3339")]
    pub configured_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SftpRemoved {
    pub removed_by: UserId,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

crate::domain_events!(SftpConnectionEvent, "SFTP connection" {
    Configured(SftpConfigured) = "SftpConfigured",
    Removed(SftpRemoved) = "SftpRemoved",
});

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SftpConnectionCommand {
    /// Everything but who and when, checked against the server by the caller.
    Configure(Box<SftpConfigured>),
    Remove,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SftpConnectionError {
    #[error("the tenant has no SFTP connection")]
    NotConfigured,
}

/// `sftpconnection-sftp`: the tenant's connection, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SftpConnection {
    pub current: Option<SftpConfigured>,
}

impl Aggregate for SftpConnection {
    const KIND: &'static str = "sftpconnection";
    type Command = SftpConnectionCommand;
    type Event = SftpConnectionEvent;
    type Error = SftpConnectionError;

    fn decide(
        &self,
        c: &SftpConnectionCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<SftpConnectionEvent>, SftpConnectionError> {
        match c {
            SftpConnectionCommand::Configure(config) => {
                let mut config = (**config).clone();
                config.configured_by = ctx.actor.user_id.clone();
                config.configured_at = ctx.now;
                Ok(vec![SftpConnectionEvent::Configured(config)])
            }
            SftpConnectionCommand::Remove => match self.current {
                Some(_) => Ok(vec![SftpConnectionEvent::Removed(SftpRemoved {
                    removed_by: ctx.actor.user_id.clone(),
                    at: ctx.now,
                })]),
                None => Err(SftpConnectionError::NotConfigured),
            },
        }
    }

    fn apply(&mut self, e: &SftpConnectionEvent) {
        *self = Self::from_last(e);
    }
}

impl TailState for SftpConnection {
    fn from_last(e: &SftpConnectionEvent) -> Self {
        match e {
            SftpConnectionEvent::Configured(c) => Self {
                current: Some(c.clone()),
            },
            SftpConnectionEvent::Removed(_) => Self { current: None },
        }
    }
}

/// Why a run started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = ImportTrigger))]
#[serde(rename_all = "lowercase")]
pub enum ImportTrigger {
    /// `POST /integrations/sftp/run`.
    Manual,
    /// The connection's schedule.
    Scheduled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = ImportStatus))]
#[serde(rename_all = "UPPERCASE")]
pub enum ImportStatus {
    Running,
    Completed,
    Failed,
}

impl ImportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
        }
    }
}

/// A line that posted nothing, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LineFailure {
    /// 1 is the header.
    pub line: u64,
    pub reason: String,
}

/// Most failed lines a file's report names; the count covers them all.
pub const MAX_REPORTED_FAILURES: usize = 1000;

/// What the import of one file did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileReport {
    pub file: String,
    /// Of the file's content, hex.
    pub sha256: String,
    /// Data lines read (the header not counted).
    pub lines_read: u64,
    pub posted: u64,
    /// Lines whose reference was posted already: by another request, or by this run before
    /// it was cut off and resumed.
    pub skipped: u64,
    pub failed: u64,
    /// The first `MAX_REPORTED_FAILURES` failed lines.
    pub failures: Vec<LineFailure>,
    /// Where the file went once done.
    pub moved_to: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SftpImportStarted {
    pub import_id: String,
    pub trigger: ImportTrigger,
    pub requested_by: UserId,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SftpFileImported {
    pub report: FileReport,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SftpFileSkipped {
    pub file: String,
    pub sha256: String,
    /// The run that imported it.
    pub imported_by: String,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SftpImportEnded {
    /// Why it failed; `None` when it completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

crate::domain_events!(SftpImportEvent, "SFTP import" {
    Started(SftpImportStarted) = "SftpImportStarted",
    FileImported(SftpFileImported) = "SftpFileImported",
    FileSkipped(SftpFileSkipped) = "SftpFileSkipped",
    Completed(SftpImportEnded) = "SftpImportCompleted",
    Failed(SftpImportEnded) = "SftpImportFailed",
});

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SftpImportCommand {
    Start {
        import_id: String,
        trigger: ImportTrigger,
    },
    FileImported(FileReport),
    FileSkipped {
        file: String,
        sha256: String,
        imported_by: String,
    },
    Complete,
    Fail {
        error: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SftpImportError {
    #[error("the import exists already")]
    AlreadyExists,
    #[error("no such import")]
    NotFound,
    #[error("the import has ended")]
    Ended,
}

/// One run of the import, as folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SftpImport {
    pub started: Option<SftpImportStarted>,
    pub status: Option<ImportStatus>,
    pub files: Vec<FileReport>,
    /// Files found imported already, by name.
    pub skipped_files: Vec<String>,
    pub error: Option<String>,
    pub ended_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl SftpImport {
    fn running(&self) -> Result<(), SftpImportError> {
        match self.status {
            None => Err(SftpImportError::NotFound),
            Some(ImportStatus::Running) => Ok(()),
            Some(_) => Err(SftpImportError::Ended),
        }
    }

    /// Whether this run has dealt with `file` of content `sha256` already.
    pub fn has_done(&self, file: &str, sha256: &str) -> bool {
        self.files
            .iter()
            .any(|f| f.file == file && f.sha256 == sha256)
    }
}

impl Aggregate for SftpImport {
    const KIND: &'static str = "sftpimport";
    type Command = SftpImportCommand;
    type Event = SftpImportEvent;
    type Error = SftpImportError;

    fn decide(
        &self,
        c: &SftpImportCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<SftpImportEvent>, SftpImportError> {
        let ended = |error: Option<String>| SftpImportEnded { error, at: ctx.now };
        Ok(vec![match c {
            SftpImportCommand::Start { import_id, trigger } => {
                if self.started.is_some() {
                    return Err(SftpImportError::AlreadyExists);
                }
                SftpImportEvent::Started(SftpImportStarted {
                    import_id: import_id.clone(),
                    trigger: *trigger,
                    requested_by: ctx.actor.user_id.clone(),
                    at: ctx.now,
                })
            }
            SftpImportCommand::FileImported(report) => {
                self.running()?;
                SftpImportEvent::FileImported(SftpFileImported {
                    report: report.clone(),
                    at: ctx.now,
                })
            }
            SftpImportCommand::FileSkipped {
                file,
                sha256,
                imported_by,
            } => {
                self.running()?;
                SftpImportEvent::FileSkipped(SftpFileSkipped {
                    file: file.clone(),
                    sha256: sha256.clone(),
                    imported_by: imported_by.clone(),
                    at: ctx.now,
                })
            }
            SftpImportCommand::Complete => {
                self.running()?;
                SftpImportEvent::Completed(ended(None))
            }
            SftpImportCommand::Fail { error } => {
                self.running()?;
                SftpImportEvent::Failed(ended(Some(error.clone())))
            }
        }])
    }

    fn apply(&mut self, e: &SftpImportEvent) {
        match e {
            SftpImportEvent::Started(s) => {
                self.status = Some(ImportStatus::Running);
                self.updated_at = Some(s.at);
                self.started = Some(s.clone());
            }
            SftpImportEvent::FileImported(f) => {
                self.files.push(f.report.clone());
                self.updated_at = Some(f.at);
            }
            SftpImportEvent::FileSkipped(f) => {
                self.skipped_files.push(f.file.clone());
                self.updated_at = Some(f.at);
            }
            SftpImportEvent::Completed(e) => {
                self.status = Some(ImportStatus::Completed);
                self.ended_at = Some(e.at);
                self.updated_at = Some(e.at);
            }
            SftpImportEvent::Failed(e) => {
                self.status = Some(ImportStatus::Failed);
                self.error.clone_from(&e.error);
                self.ended_at = Some(e.at);
                self.updated_at = Some(e.at);
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedFileRecorded {
    pub file: String,
    pub sha256: String,
    pub import_id: String,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

crate::domain_events!(ImportedFileEvent, "imported file" {
    Recorded(ImportedFileRecorded) = "SftpFileRecorded",
});

/// `sftpfile-<digest of name and content>`: a file imported once, by which run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportedFile {
    pub recorded: Option<ImportedFileRecorded>,
}

impl ImportedFile {
    /// The stream instance of `file` with content `sha256`.
    pub fn instance(file: &str, sha256: &str) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(file.as_bytes());
        h.update([0]);
        h.update(sha256.as_bytes());
        hex::encode(&h.finalize()[..16])
    }
}

impl Aggregate for ImportedFile {
    const KIND: &'static str = "sftpfile";
    type Command = ImportedFileRecorded;
    type Event = ImportedFileEvent;
    type Error = std::convert::Infallible;

    fn decide(
        &self,
        c: &ImportedFileRecorded,
        ctx: &CommandContext,
    ) -> Result<Vec<ImportedFileEvent>, Self::Error> {
        if self.recorded.is_some() {
            return Ok(vec![]);
        }
        let mut c = c.clone();
        c.at = ctx.now;
        Ok(vec![ImportedFileEvent::Recorded(c)])
    }

    fn apply(&mut self, e: &ImportedFileEvent) {
        *self = Self::from_last(e);
    }
}

impl TailState for ImportedFile {
    fn from_last(e: &ImportedFileEvent) -> Self {
        match e {
            ImportedFileEvent::Recorded(r) => Self {
                recorded: Some(r.clone()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked() {
        assert!(SftpHost::parse("sftp.bank.test").is_ok());
        assert!(SftpHost::parse("127.0.0.1").is_ok());
        assert!(SftpHost::parse("bad host").is_err());
        assert!(SftpHost::parse("-x.test").is_err());
        assert!(
            HostKeyFingerprint::parse("SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8").is_ok()
        );
        assert!(HostKeyFingerprint::parse("MD5:aa:bb").is_err());
        assert!(RemoteDir::parse("/inbox").is_ok());
        assert!(RemoteDir::parse("/in\nbox").is_err());
        assert_eq!(Schedule::parse("1h").unwrap().minutes, 60);
        assert_eq!(Schedule::parse("off").unwrap().minutes, 0);
        assert_eq!(Schedule::parse("90m").unwrap().render(), "90m");
        assert_eq!(Schedule::parse("2d").unwrap().render(), "2d");
        assert!(Schedule::parse("1m").is_err());
        assert!(Schedule::parse("hourly").is_err());
        assert_eq!(Schedule::default().render(), "1h");
    }

    #[test]
    fn a_file_is_named_by_name_and_content() {
        let a = ImportedFile::instance("postings.csv", "aa");
        assert_eq!(a, ImportedFile::instance("postings.csv", "aa"));
        assert_ne!(a, ImportedFile::instance("postings.csv", "ab"));
        assert_ne!(a, ImportedFile::instance("other.csv", "aa"));
    }
}
