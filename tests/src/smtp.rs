//! A real SMTP server for the mail tests: aiosmtpd (PyPI) running `scripts/smtp-server.py`
//! on a loopback port, recording every message it accepts and every reply it gives to
//! DATA. It refuses recipients whose local part starts with `reject` (550) and answers 451
//! once to each message for a recipient starting with `flaky`. It offers STARTTLS with a
//! certificate of its own throwaway CA (`ca_file`), which the mail worker is told to trust.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub(crate) fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
}

/// The virtualenv's Python, with aiosmtpd installed (`scripts/python-tools`, serialized by
/// a lock: test processes may start at once).
pub(crate) fn python() -> PathBuf {
    let lock = root().join(".venv.lock");
    let status = Command::new("flock")
        .arg(&lock)
        .arg(root().join("scripts/python-tools"))
        .status()
        .expect("flock scripts/python-tools");
    assert!(status.success(), "scripts/python-tools failed: {status}");
    root().join(".venv/bin/python")
}

pub struct SmtpServer {
    child: Child,
    pub port: u16,
    record: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpServer {
    /// Starts a server and waits until it accepts connections.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let record = dir.path().join("received.jsonl");
        let mut child = Command::new(python())
            .arg(root().join("scripts/smtp-server.py"))
            .arg(&record)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start scripts/smtp-server.py");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the server's first line");
        let port = line
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("the SMTP server did not start: {line:?}"));
        Self {
            child,
            port,
            record,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The mail worker's configuration for this server: quick retries.
    pub fn config(&self) -> api::workers::MailConfig {
        api::workers::MailConfig {
            smtp: infra::smtp::SmtpSettings {
                url: self.url(),
                from: "Karachi Bank <noreply@bank.test>".into(),
                timeout: Duration::from_secs(5),
                ca_file: Some(self.ca_file()),
            },
            policy: commands::worker::RetryPolicy {
                max_attempts: 3,
                timeout: Duration::from_secs(10),
                base_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(200),
                max_retry_after: Duration::from_secs(1),
            },
            concurrency: 8,
        }
    }

    /// The certificate of the CA that issued the server's (STARTTLS) certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.record.with_file_name("ca.pem")
    }

    /// Every reply the server gave to DATA, in order, with what it accepted.
    pub fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
