//! A real browser for the console tests: Debian's headless Chromium driven over WebDriver
//! by its chromedriver, or Debian's Firefox ESR by geckodriver (all installed by
//! `scripts/browser-tools`), through fantoccini. Each `Browser` is its own driver on a
//! loopback port and its own browser profile, so two of them are two users' sessions.

use fantoccini::{Client, ClientBuilder, Locator};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Installs the browsers and their drivers when missing (serialized: tests start at once).
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

/// Reads `read` until it gives `want`; panics after `within` with what `what` gave instead.
async fn until<F, Fut>(what: &str, want: &str, within: Duration, read: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<String>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        let got = read().await;
        if got.as_deref() == Some(want) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} shows {got:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub struct Browser {
    driver: Child,
    pub client: Client,
    _profile: tempfile::TempDir,
}

/// The browsers the console is tested in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Debian's Chromium, driven by its chromedriver.
    Chromium,
    /// Debian's Firefox ESR, driven by geckodriver (from crates.io, into `.browser/bin`).
    Firefox,
}

impl Browser {
    /// Headless Chromium.
    pub async fn start() -> Self {
        Self::of(Engine::Chromium).await
    }

    /// A headless `engine` with a fresh profile, its driver on a loopback port. Neither
    /// browser may reach past loopback: their background services are off.
    pub async fn of(engine: Engine) -> Self {
        tools();
        let port = free_port();
        let profile = tempfile::tempdir().expect("tempdir");
        let mut caps = serde_json::Map::new();
        let driver = match engine {
            Engine::Chromium => {
                caps.insert(
                    "goog:chromeOptions".into(),
                    serde_json::json!({
                        "binary": "/usr/bin/chromium",
                        "args": [
                            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                            "--window-size=1280,900", "--no-first-run", "--disable-extensions",
                            "--disable-background-networking", "--disable-component-update",
                            "--disable-sync", "--disable-quic",
                            format!("--user-data-dir={}", profile.path().display()),
                        ],
                    }),
                );
                Command::new("chromedriver")
                    .arg(format!("--port={port}"))
                    .arg("--allowed-ips=127.0.0.1")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start chromedriver")
            }
            Engine::Firefox => {
                caps.insert("browserName".into(), "firefox".into());
                caps.insert(
                    "moz:firefoxOptions".into(),
                    serde_json::json!({
                        "binary": "/usr/bin/firefox-esr",
                        "args": ["-headless", "-width", "1280", "-height", "900"],
                        "prefs": {
                            "app.update.auto": false,
                            "app.normandy.enabled": false,
                            "browser.safebrowsing.malware.enabled": false,
                            "browser.safebrowsing.phishing.enabled": false,
                            "browser.region.network.url": "",
                            "captivedetect.canonicalURL": "",
                            "network.captive-portal-service.enabled": false,
                            "network.connectivity-service.enabled": false,
                            "datareporting.healthreport.uploadEnabled": false,
                            "datareporting.policy.dataSubmissionEnabled": false,
                            "toolkit.telemetry.enabled": false,
                            "extensions.getAddons.cache.enabled": false,
                            "services.settings.server": "http://127.0.0.1:9/",
                        },
                    }),
                );
                Command::new(crate::smtp::root().join(".browser/bin/geckodriver"))
                    .arg(format!("--port={port}"))
                    .arg("--host=127.0.0.1")
                    .env("TMPDIR", profile.path())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start geckodriver (scripts/browser-tools installs it)")
            }
        };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let client = loop {
            // Plain HTTP: the driver is on loopback.
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
                        "{engine:?}'s driver did not start: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
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

    /// Waits (up to `within`) until the element at XPath `xpath` shows exactly `want`;
    /// panics with what it showed instead.
    pub async fn wait_text(&self, xpath: &str, want: &str, within: Duration) {
        until(xpath, want, within, || {
            self.text_at(xpath, Duration::from_secs(1))
        })
        .await;
    }

    /// The text content of the element at XPath `xpath`, shown or not (what a screen
    /// reader reads of a visually hidden table), if there is one now.
    pub async fn text_content(&self, xpath: &str) -> Option<String> {
        self.client
            .execute(
                "const n = document.evaluate(arguments[0], document, null, \
                 XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue; \
                 return n ? n.textContent : null;",
                vec![serde_json::json!(xpath)],
            )
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
    }

    /// Presses `key` (text, or a `fantoccini::key::Key` as a string) in the focused element.
    pub async fn press(&self, key: &str) {
        let focused = self
            .client
            .active_element()
            .await
            .expect("a focused element");
        focused.send_keys(key).await.expect("keys");
    }

    /// Moves the focus with the Tab key alone until it is on the element at `css` (up to
    /// 60 presses), as a keyboard user gets there; panics if Tab never reaches it.
    pub async fn tab_to(&self, css: &str) {
        let tab = fantoccini::key::Key::Tab.to_string();
        for _ in 0..60 {
            let on = self
                .client
                .execute(
                    "return !!document.activeElement && document.activeElement.matches(arguments[0])",
                    vec![serde_json::json!(css)],
                )
                .await
                .expect("script");
            if on == serde_json::json!(true) {
                return;
            }
            self.press(&tab).await;
        }
        panic!("the Tab key never reaches {css}");
    }

    /// Runs `act` on the element at XPath `xpath`, waiting (up to 5 s) for it and finding it
    /// again when a re-render replaced it between finding and acting; panics saying `what`.
    async fn on_fresh<F, Fut>(&self, xpath: &str, what: &str, act: F)
    where
        F: Fn(fantoccini::elements::Element) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let e = self
                .find_xpath(xpath, left)
                .await
                .unwrap_or_else(|| panic!("no {xpath}"));
            if act(e).await {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "could not {what} {xpath}"
            );
        }
    }

    /// Chooses `value` in the select at XPath `xpath` (found again if a re-render replaced it).
    pub async fn select(&self, xpath: &str, value: &str) {
        self.on_fresh(xpath, &format!("choose {value} in"), |e| async move {
            e.select_by_value(value).await.is_ok()
        })
        .await;
    }

    /// Waits (up to `within`) until the control at XPath `xpath` has the value `want`.
    pub async fn wait_value(&self, xpath: &str, want: &str, within: Duration) {
        until(xpath, want, within, || async {
            match self.find_xpath(xpath, Duration::from_secs(1)).await {
                Some(e) => e.prop("value").await.ok().flatten(),
                None => None,
            }
        })
        .await;
    }

    /// Clicks the element at XPath `xpath`, waiting (up to 5 s) for it; found again when a
    /// re-render replaced it between finding and clicking.
    pub async fn click_xpath(&self, xpath: &str) {
        self.on_fresh(xpath, "click", |e| async move { e.click().await.is_ok() })
            .await;
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

    /// A screenshot of the whole page from its top (the window grown to the page's height,
    /// up to 3000 px, and put back after), written to `target/screenshots/<name>.png`
    /// (kept as a test artifact).
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let height = self
            .client
            .execute(
                "window.scrollTo(0, 0); return document.documentElement.scrollHeight",
                vec![],
            )
            .await
            .ok()
            .and_then(|v| v.as_u64())
            .unwrap_or(900)
            .clamp(900, 3000) as u32;
        let _ = self.client.set_window_size(1280, height).await;
        let png = self.client.screenshot().await.expect("screenshot");
        let _ = self.client.set_window_size(1280, 900).await;
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
