//! Runs the real `chronicle` binary as a child process on a loopback port, with a small
//! HTTP client to talk to it.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::Duration;

/// The `chronicle` binary cargo built beside this test executable.
pub fn chronicle_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("chronicle");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p api` (the README's test command does)",
        bin.display()
    );
    bin
}

/// A running `chronicle serve`.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// Every line the server wrote to stderr so far (JSON logs).
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `chronicle serve` on a free loopback port over `data_dir`, and waits until it
    /// listens.
    pub fn start(data_dir: &Path, secret: &str) -> Self {
        Self::start_with(data_dir, secret, &[])
    }

    /// `chronicle serve` with extra arguments (e.g. `--backend aws`).
    pub fn start_with(data_dir: &Path, secret: &str, extra: &[&str]) -> Self {
        Self::start_logging(data_dir, secret, extra, "info")
    }

    /// `chronicle serve` with extra arguments and `RUST_LOG` set to `filter`.
    pub fn start_logging(data_dir: &Path, secret: &str, extra: &[&str], filter: &str) -> Self {
        let mut child = Command::new(chronicle_bin())
            .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("CHRONICLE_JWT_SECRET", secret)
            // Load tests drive one tenant far past any tier's rate limit.
            .env("CHRONICLE_RATE_LIMITS", "off")
            .env("RUST_LOG", filter)
            .env("CHRONICLE_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chronicle");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let kept = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let addr = serde_json::from_str::<Value>(&line).ok().and_then(|v| {
                    v["fields"]["addr"]
                        .as_str()
                        .and_then(|a| a.parse::<SocketAddr>().ok())
                });
                kept.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(line);
                if let Some(addr) = addr {
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chronicle did not report its address");
        Self { child, addr, logs }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().expect("wait")
    }
}

/// A background `chronicle` process (relay, projector), killed when dropped.
pub struct Worker(Child);

impl Worker {
    pub fn start(args: &[&str]) -> Self {
        let child = Command::new(chronicle_bin())
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn chronicle worker");
        Self(child)
    }

    /// SIGTERM, then waits for it to end (a graceful shutdown).
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.0.wait().expect("wait")
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 client for loopback tests.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Http {
    fn default() -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

pub struct HttpReply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Value,
}

impl Http {
    /// GETs `url` until it answers `status` or `within` has passed; the last answer. For
    /// changes that reach a server late (a tenant cache, a pipeline).
    pub async fn get_until(
        &self,
        url: &str,
        token: &str,
        status: u16,
        within: std::time::Duration,
    ) -> HttpReply {
        let deadline = std::time::Instant::now() + within;
        loop {
            let reply = self.send("GET", url, token, &[], None).await.expect("GET");
            if reply.status == status || std::time::Instant::now() > deadline {
                return reply;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// GETs `url` with no token: the status and the body as text (`/metrics`).
    pub async fn get_text(&self, url: &str) -> Result<(u16, String), String> {
        let req = hyper::Request::get(url)
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let res = self.client.request(req).await.map_err(|e| e.to_string())?;
        let status = res.status().as_u16();
        let bytes = res.into_body().collect().await.map_err(|e| e.to_string())?;
        let text = String::from_utf8(bytes.to_bytes().to_vec()).map_err(|e| e.to_string())?;
        Ok((status, text))
    }

    /// Opens `GET url` as a stream of Server-Sent Events (`GET /events/stream`); panics
    /// unless it answers 200 with `text/event-stream`.
    pub async fn open_events(&self, url: &str, token: &str) -> crate::EventStream {
        let req = hyper::Request::get(url)
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let res = self.client.request(req).await.expect("GET");
        assert_eq!(res.status().as_u16(), 200, "{url}");
        assert_eq!(
            res.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("text/event-stream")
        );
        crate::EventStream::of(axum::body::Body::new(res.into_body()))
    }

    pub async fn send(
        &self,
        method: &str,
        url: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Result<HttpReply, String> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(url)
            .header("authorization", format!("Bearer {token}"));
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| e.to_string())?;
        let res = self.client.request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| e.to_string())?
        };
        Ok(HttpReply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }
}
