//! A real browser for the console tests: Debian's headless Chromium driven over WebDriver
//! by its chromedriver (installed by `scripts/browser-tools`), through fantoccini. Each
//! `Browser` is its own chromedriver on a loopback port and its own browser profile, so
//! two of them are two users' sessions.

use fantoccini::{Client, ClientBuilder, Locator};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Installs Chromium and chromedriver when missing (serialized: tests start at once).
fn tools() {
    let root = crate::smtp::root();
    let status = Command::new("flock")
        .arg(root.join(".browser.lock"))
        .arg(root.join("scripts/browser-tools"))
        .status()
        .expect("flock scripts/browser-tools");
    assert!(status.success(), "scripts/browser-tools failed: {status}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub struct Browser {
    driver: Child,
    pub client: Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start() -> Self {
        tools();
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().expect("tempdir");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,900", "--no-first-run", "--disable-extensions",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let client = loop {
            // Plain HTTP: chromedriver is on loopback.
            let http = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(http)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "chromedriver did not start: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        Self {
            driver,
            client,
            _profile: profile,
        }
    }

    /// Waits (up to 10 s) for the element at `css`.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
    }

    /// Waits (up to `within`) for an element at XPath `xpath`.
    pub async fn find_xpath(
        &self,
        xpath: &str,
        within: Duration,
    ) -> Option<fantoccini::elements::Element> {
        self.client
            .wait()
            .at_most(within)
            .every(Duration::from_millis(50))
            .for_element(Locator::XPath(xpath))
            .await
            .ok()
    }

    /// The text of the element at XPath `xpath`, waiting (up to `within`) for one; found
    /// again when a re-render replaced it in between.
    pub async fn text_at(&self, xpath: &str, within: Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let e = self.find_xpath(xpath, left).await?;
            if let Ok(text) = e.text().await {
                return Some(text);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
        }
    }

    /// Types `text` into the field at `css` (clearing it first).
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        e.clear().await.expect("clear");
        e.send_keys(text).await.expect("type");
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    /// The page's serious and critical accessibility violations, as axe-core (installed by
    /// `scripts/browser-tools`) finds them: each as `id: help (the elements)`.
    pub async fn accessibility_violations(&self) -> Vec<String> {
        let axe = std::fs::read_to_string(
            crate::smtp::root().join(".browser/node_modules/axe-core/axe.min.js"),
        )
        .expect("axe-core: run scripts/browser-tools");
        self.client
            .execute(&axe, vec![])
            .await
            .expect("load axe-core");
        let found = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { resultTypes: ['violations'] })
                   .then((r) => done(r.violations), (e) => done([{ id: 'axe-error', impact: 'critical', help: String(e), nodes: [] }]));",
                vec![],
            )
            .await
            .expect("run axe-core");
        found
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .map(|v| {
                let targets: Vec<String> = v["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|n| n["target"].to_string())
                    .collect();
                format!(
                    "{}: {} ({})",
                    v["id"].as_str().unwrap_or_default(),
                    v["help"].as_str().unwrap_or_default(),
                    targets.join(", ")
                )
            })
            .collect()
    }

    /// A screenshot of the page, written to `target/screenshots/<name>.png` (kept as a
    /// test artifact).
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = crate::smtp::root().join("target/screenshots");
        std::fs::create_dir_all(&dir).expect("screenshots dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}
