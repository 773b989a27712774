//! The web console, served by the binary itself at `/`: one page, its style and its
//! script's ES modules (one per page of the console), committed under `api/console/` and
//! embedded at build time (no Node.js, no build step).
//!
//! The assets are served under `/console/<version>/<file>`, where the version is a digest
//! of every asset's name and contents: the modules import each other by relative paths,
//! so they all resolve within one version, and each file is cached for a year as
//! immutable. The page itself is never cached, so a new binary's assets are picked up at
//! once and an old version's names answer 404. The page's Content-Security-Policy allows
//! only this origin's script and style: no inline script, no `eval`, nothing framed.
//!
//! The console calls the public API only (the routes `/openapi.json` documents, whose
//! security it reads to show each role only what it may do), so it is also the living
//! example of how to use it.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

const PAGE: &str = include_str!("../console/index.html");

/// Every asset, by its path under `api/console/`.
macro_rules! assets {
    ($($file:literal),* $(,)?) => {
        &[$(($file, include_str!(concat!("../console/", $file)))),*]
    };
}

/// The files of the console (a test checks that none under `api/console/` is left out).
pub const FILES: &[(&str, &str)] = assets![
    "console.css",
    "console.js",
    "lib.js",
    "session.js",
    "pages/accounts.js",
    "pages/ai.js",
    "pages/analytics.js",
    "pages/audit.js",
    "pages/auth.js",
    "pages/customers.js",
    "pages/dashboard.js",
    "pages/portal.js",
    "pages/settings.js",
    "pages/shop.js",
    "pages/tasks.js",
];

/// Every response of the console: only this origin's script, style and API.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

struct Console {
    version: String,
    page: String,
}

static CONSOLE: LazyLock<Console> = LazyLock::new(|| {
    let mut digest = Sha256::new();
    for (name, body) in FILES {
        digest.update((name.len() as u64).to_be_bytes());
        digest.update(name.as_bytes());
        digest.update((body.len() as u64).to_be_bytes());
        digest.update(body.as_bytes());
    }
    let version: String = digest.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let page = PAGE.replace("{{assets}}", &format!("/console/{version}"));
    Console { version, page }
});

fn content_type(name: &str) -> &'static str {
    if name.ends_with(".css") {
        "text/css; charset=utf-8"
    } else {
        "text/javascript; charset=utf-8"
    }
}

/// The headers every console response carries.
fn secured(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

async fn page() -> Response {
    secured(
        (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            CONSOLE.page.clone(),
        )
            .into_response(),
    )
}

async fn asset(Path((version, name)): Path<(String, String)>) -> Response {
    let found = FILES
        .iter()
        .find(|(file, _)| *file == name)
        .filter(|_| version == CONSOLE.version);
    let Some((file, body)) = found else {
        return secured((StatusCode::NOT_FOUND, "no such asset").into_response());
    };
    secured(
        (
            [
                (header::CONTENT_TYPE, content_type(file)),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            *body,
        )
            .into_response(),
    )
}

/// `/` and `/console/{version}/{file}`: outside the API (no token, not in `/openapi.json`).
pub fn routes() -> Router {
    Router::new()
        .route("/", get(page))
        .route("/console/{version}/{*name}", get(asset))
}

/// The paths of the assets as this binary serves them.
pub fn asset_paths() -> Vec<String> {
    FILES
        .iter()
        .map(|(name, _)| format!("/console/{}/{name}", CONSOLE.version))
        .collect()
}
