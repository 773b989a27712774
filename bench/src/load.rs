//! A lean HTTP/1.1 load generator in the manner of `wrk`: one keep-alive connection per
//! worker, one request in flight on each, requests written from a template and responses
//! parsed only as far as status and length. On a two-core machine the load generator
//! shares the CPU with the server it measures, so every microsecond it spends is one the
//! server does not get; a general-purpose client (hyper's pooled one) cost about twice as
//! much per request.

use anyhow::{Context, bail};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One keep-alive connection to `host:port`.
pub struct Connection {
    addr: String,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    request: Vec<u8>,
}

/// What one request got back.
pub struct Reply {
    pub status: u16,
    pub latency: Duration,
}

impl Connection {
    /// `base` is `http://host:port`.
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let addr = base
            .strip_prefix("http://")
            .context("the load generator speaks plain http:// only")?
            .trim_end_matches('/')
            .to_owned();
        Ok(Self {
            addr,
            stream: None,
            buf: Vec::with_capacity(4096),
            request: Vec::with_capacity(1024),
        })
    }

    /// Sends one request with `headers` (each `Name: value`) and `body`, and reads the
    /// whole response. Reconnects when the server closed the connection.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[&str],
        body: &[u8],
    ) -> anyhow::Result<Reply> {
        self.request.clear();
        self.request.extend_from_slice(
            format!(
                "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
                self.addr,
                body.len()
            )
            .as_bytes(),
        );
        for h in headers {
            self.request.extend_from_slice(h.as_bytes());
            self.request.extend_from_slice(b"\r\n");
        }
        self.request.extend_from_slice(b"\r\n");
        self.request.extend_from_slice(body);
        let started = Instant::now();
        let stream = match &mut self.stream {
            Some(s) => s,
            None => {
                let s = TcpStream::connect(&self.addr)
                    .await
                    .with_context(|| format!("connect to {}", self.addr))?;
                s.set_nodelay(true)?;
                self.stream.insert(s)
            }
        };
        stream.write_all(&self.request).await?;
        let (status, keep_alive) = read_response(stream, &mut self.buf).await?;
        let latency = started.elapsed();
        if !keep_alive {
            self.stream = None;
        }
        Ok(Reply { status, latency })
    }
}

impl Connection {
    /// As `send`, with the response's body.
    pub async fn send_body(
        &mut self,
        method: &str,
        path: &str,
        headers: &[&str],
        body: &[u8],
    ) -> anyhow::Result<(Reply, Vec<u8>)> {
        let reply = self.send(method, path, headers, body).await?;
        let start = self
            .buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(self.buf.len(), |i| i + 4);
        Ok((reply, self.buf[start..].to_vec()))
    }
}

/// Reads one response; returns its status and whether the connection stays open.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<(u16, bool)> {
    buf.clear();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        fill(stream, buf).await?;
    };
    let head = std::str::from_utf8(&buf[..head_end]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .context("malformed status line")?;
    let (mut length, mut keep_alive) = (None, true);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().context("bad content-length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("chunked responses are not supported by the load generator");
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            keep_alive = false;
        }
    }
    let total = head_end + length.unwrap_or(0);
    while buf.len() < total {
        fill(stream, buf).await?;
    }
    if buf.len() > total {
        bail!("the server sent more than one response");
    }
    Ok((status, keep_alive))
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<()> {
    let len = buf.len();
    buf.resize(len + 4096, 0);
    let n = stream.read(&mut buf[len..]).await?;
    buf.truncate(len + n);
    if n == 0 {
        bail!("the server closed the connection mid-response");
    }
    Ok(())
}

/// What a load phase measured: the latency of every request that got `expect`, sorted,
/// and how many got anything else.
pub struct Phase {
    pub latencies: Vec<Duration>,
    pub errors: u64,
    pub run_for: Duration,
}

impl Phase {
    /// Requests/s, p50, p99 and max, as one line's tail.
    pub fn figures(&self, unit: &str) -> String {
        let l = &self.latencies;
        format!(
            "{:.0} {unit}/s ({} done, {} refused or failed), latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            l.len() as f64 / self.run_for.as_secs_f64(),
            l.len(),
            self.errors,
            crate::ms(crate::percentile(l, 0.50)),
            crate::ms(crate::percentile(l, 0.99)),
            crate::ms(l.last().copied().unwrap_or_default()),
        )
    }
}

/// `connections` keep-alive connections for `run_for`, each sending `POST path` with the
/// body `body(connection, i)` for its i-th request, one request in flight per connection.
pub async fn phase<F>(
    base: &str,
    headers: &[&str],
    connections: usize,
    run_for: Duration,
    path: &'static str,
    expect: u16,
    body: F,
) -> anyhow::Result<Phase>
where
    F: Fn(usize, usize) -> String + Send + Sync + 'static,
{
    let body = std::sync::Arc::new(body);
    let headers: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    let deadline = Instant::now() + run_for;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let mut conn = Connection::new(base)?;
        let (body, headers) = (body.clone(), headers.clone());
        tasks.push(tokio::spawn(async move {
            let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
            let (mut latencies, mut errors, mut i) = (Vec::new(), 0u64, 0);
            while Instant::now() < deadline {
                let b = body(c, i);
                let reply = conn.send("POST", path, &headers, b.as_bytes()).await?;
                if reply.status == expect {
                    latencies.push(reply.latency);
                } else {
                    errors += 1;
                }
                i += 1;
            }
            anyhow::Ok((latencies, errors))
        }));
    }
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await??;
        latencies.extend(l);
        errors += e;
    }
    latencies.sort();
    Ok(Phase {
        latencies,
        errors,
        run_for,
    })
}
