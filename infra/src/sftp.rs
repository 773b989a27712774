//! The SFTP client (russh, russh-sftp): logs in with a password or a private key (OpenSSH
//! format), unsealed here from the connection's sealed secret, and refuses a server whose
//! host key's SHA-256 fingerprint is not the one configured. Network failures are
//! retryable; a wrong host key, refused credentials or a missing path are permanent.

use crate::secrets::SecretBox;
use commands::attempts::CallFailure;
use commands::sftp::{Endpoint, FileServer, FileSession, RemoteFile};
use domain::sftp::AuthMethod;
use russh::client;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh_sftp::client::SftpSession;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub struct SftpClient {
    secrets: SecretBox,
    timeout: Duration,
}

impl SftpClient {
    pub fn new(secrets: SecretBox, timeout: Duration) -> Self {
        Self { secrets, timeout }
    }
}

/// Checks the server's key against the fingerprint configured, and remembers what it saw.
struct HostKeyCheck {
    expected: String,
    seen: Arc<Mutex<Option<String>>>,
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let fingerprint = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                key.fingerprint(HashAlg::Sha256).to_string()
            }
            PublicKeyOrCertificate::Certificate(c) => {
                c.public_key().fingerprint(HashAlg::Sha256).to_string()
            }
        };
        let matches = fingerprint == self.expected;
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(fingerprint);
        Ok(matches)
    }
}

fn retryable(what: &str, e: impl std::fmt::Display) -> CallFailure {
    CallFailure::Retryable {
        reason: format!("{what}: {e}"),
        retry_after: None,
    }
}

fn permanent(reason: String) -> CallFailure {
    CallFailure::Permanent { reason }
}

/// An SFTP status: a missing file or a denied permission is permanent, the rest retryable.
fn sftp_failure(what: &str, e: russh_sftp::client::error::Error) -> CallFailure {
    use russh_sftp::protocol::StatusCode;
    match &e {
        russh_sftp::client::error::Error::Status(s)
            if matches!(
                s.status_code,
                StatusCode::NoSuchFile | StatusCode::PermissionDenied
            ) =>
        {
            permanent(format!("{what}: {}", s.error_message))
        }
        _ => retryable(what, e),
    }
}

#[async_trait::async_trait]
impl FileServer for SftpClient {
    async fn connect(&self, to: &Endpoint) -> Result<Box<dyn FileSession>, CallFailure> {
        // No inactivity timeout: a run pauses its reads while it posts; each SFTP request
        // has its own timeout instead, and keepalives find a dead server.
        let config = Arc::new(client::Config {
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(15)),
            ..Default::default()
        });
        let seen = Arc::new(Mutex::new(None));
        let check = HostKeyCheck {
            expected: to.host_key_fingerprint.clone(),
            seen: seen.clone(),
        };
        let address = (to.host.as_str(), to.port);
        let connected = tokio::time::timeout(self.timeout, client::connect(config, address, check))
            .await
            .map_err(|_| retryable("connecting", format!("no answer within {:?}", self.timeout)))?;
        let mut handle = match connected {
            Ok(h) => h,
            Err(e) => {
                let shown = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
                return Err(match shown {
                    Some(key) if key != to.host_key_fingerprint => permanent(format!(
                        "host_key_fingerprint: the server's host key is {key}, not {}: refused",
                        to.host_key_fingerprint
                    )),
                    _ => retryable("connecting", e),
                });
            }
        };
        let secret = self
            .secrets
            .open(&to.secret)
            .map_err(|e| permanent(format!("the stored secret cannot be opened: {e}")))?;
        let auth = match to.auth {
            AuthMethod::Password => handle
                .authenticate_password(&to.username, secret)
                .await
                .map_err(|e| retryable("logging in", e))?,
            AuthMethod::PrivateKey => {
                let key = russh::keys::decode_secret_key(&secret, None)
                    .map_err(|e| permanent(format!("private_key: {e}")))?;
                let hash = handle
                    .best_supported_rsa_hash()
                    .await
                    .map_err(|e| retryable("logging in", e))?
                    .flatten();
                handle
                    .authenticate_publickey(
                        &to.username,
                        PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                    )
                    .await
                    .map_err(|e| retryable("logging in", e))?
            }
        };
        if !auth.success() {
            return Err(permanent(format!(
                "the server refused {} as {:?}",
                match to.auth {
                    AuthMethod::Password => "the password",
                    AuthMethod::PrivateKey => "the private key",
                },
                to.username
            )));
        }
        let channel = handle
            .channel_open_session()
            .await
            .map_err(|e| retryable("opening a channel", e))?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| retryable("starting SFTP", e))?;
        let sftp = SftpSession::new(channel.into_stream())
            .await
            .map_err(|e| retryable("starting SFTP", e))?;
        sftp.set_timeout(self.timeout.as_secs().max(1));
        Ok(Box::new(Session {
            sftp,
            _handle: handle,
        }))
    }
}

struct Session {
    sftp: SftpSession,
    _handle: client::Handle<HostKeyCheck>,
}

#[async_trait::async_trait]
impl FileSession for Session {
    async fn list(&self, dir: &str) -> Result<Vec<RemoteFile>, CallFailure> {
        let entries = self
            .sftp
            .read_dir(dir)
            .await
            .map_err(|e| sftp_failure(&format!("listing {dir}"), e))?;
        Ok(entries
            .filter(|e| e.file_type().is_file())
            .map(|e| RemoteFile {
                size: e.metadata().len(),
                name: e.file_name(),
            })
            .collect())
    }

    async fn open(
        &self,
        path: &str,
    ) -> Result<Box<dyn tokio::io::AsyncRead + Send + Unpin>, CallFailure> {
        let file = self
            .sftp
            .open(path)
            .await
            .map_err(|e| sftp_failure(&format!("opening {path}"), e))?;
        Ok(Box::new(file))
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), CallFailure> {
        self.sftp
            .rename(from, to)
            .await
            .map_err(|e| sftp_failure(&format!("moving {from} to {to}"), e))
    }
}
