//! A real SFTP server for the import tests: asyncssh (PyPI) running
//! `scripts/sftp-server.py` on a loopback port over a scratch directory with `inbox/` and
//! `processed/`, a throwaway host key and one user, who logs in with a password or a key.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const USER: &str = "bank";
pub const PASSWORD: &str = "sftp pass phrase";

pub struct SftpServer {
    child: Child,
    pub port: u16,
    /// The host key's `SHA256:…` fingerprint.
    pub fingerprint: String,
    /// The client key the server accepts for `USER`, OpenSSH format.
    pub client_key: String,
    dir: tempfile::TempDir,
}

impl SftpServer {
    /// Starts a server and waits until it accepts connections.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        for sub in ["inbox", "processed"] {
            std::fs::create_dir_all(root.join(sub)).expect("dirs");
        }
        let key_file = dir.path().join("client_key");
        let mut child = Command::new(crate::smtp::python())
            .arg(crate::smtp::root().join("scripts/sftp-server.py"))
            .arg(&root)
            .args([USER, PASSWORD])
            .arg(&key_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start scripts/sftp-server.py");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the server's first line");
        let words: Vec<&str> = line.split_whitespace().collect();
        let (port, fingerprint) = match words.as_slice() {
            ["PORT", port, "FINGERPRINT", fp] => (port.parse().expect("port"), (*fp).to_owned()),
            _ => panic!("the SFTP server did not start: {line:?}"),
        };
        let client_key = std::fs::read_to_string(&key_file).expect("client key");
        Self {
            child,
            port,
            fingerprint,
            client_key,
            dir,
        }
    }

    /// The server's root directory (what `/` is to its users).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn inbox(&self) -> PathBuf {
        self.root().join("inbox")
    }

    pub fn processed(&self) -> PathBuf {
        self.root().join("processed")
    }

    /// `PUT /integrations/sftp`'s body for this server, logging in with the password.
    pub fn connection(&self) -> serde_json::Value {
        serde_json::json!({
            "host": "127.0.0.1",
            "port": self.port,
            "username": USER,
            "password": PASSWORD,
            "host_key_fingerprint": self.fingerprint,
            "inbox_dir": "/inbox",
            "processed_dir": "/processed",
        })
    }

    /// Writes `name` into the inbox.
    pub fn drop_file(&self, name: &str, content: &str) {
        std::fs::write(self.inbox().join(name), content).expect("write");
    }
}

/// The files in `dir`, by name.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    names
}

impl Drop for SftpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
