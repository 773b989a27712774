//! The web console, served by the binary itself at `/`: one page and its script and style,
//! committed under `api/console/` and embedded at build time (no Node.js, no build step).
//! The assets are served under content-hashed names (`/console/console.<hash>.js`), cached
//! for a year as immutable; the page itself is never cached, so a new binary's assets are
//! picked up at once. The page's Content-Security-Policy allows only this origin's script
//! and style: no inline script, no `eval`, nothing framed.
//!
//! The console calls the public API only (the routes `/openapi.json` documents), so it is
//! also the living example of how to use it.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

const PAGE: &str = include_str!("../console/index.html");
const SCRIPT: &str = include_str!("../console/console.js");
const STYLE: &str = include_str!("../console/console.css");

/// Every response of the console: only this origin's script, style and API.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// An asset under its content-hashed name.
struct Asset {
    name: String,
    body: &'static str,
    content_type: &'static str,
}

impl Asset {
    fn new(stem: &str, ext: &str, body: &'static str, content_type: &'static str) -> Self {
        let digest = Sha256::digest(body.as_bytes());
        let hash: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        Self {
            name: format!("{stem}.{hash}.{ext}"),
            body,
            content_type,
        }
    }
}

struct Console {
    page: String,
    assets: [Asset; 2],
}

static CONSOLE: LazyLock<Console> = LazyLock::new(|| {
    let script = Asset::new("console", "js", SCRIPT, "text/javascript; charset=utf-8");
    let style = Asset::new("console", "css", STYLE, "text/css; charset=utf-8");
    let page = PAGE
        .replace("{{console.js}}", &format!("/console/{}", script.name))
        .replace("{{console.css}}", &format!("/console/{}", style.name));
    Console {
        page,
        assets: [script, style],
    }
});

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

async fn asset(Path(name): Path<String>) -> Response {
    let Some(a) = CONSOLE.assets.iter().find(|a| a.name == name) else {
        return secured((StatusCode::NOT_FOUND, "no such asset").into_response());
    };
    secured(
        (
            [
                (header::CONTENT_TYPE, a.content_type),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            a.body,
        )
            .into_response(),
    )
}

/// `/` and `/console/{asset}`: outside the API (no token, not in `/openapi.json`).
pub fn routes() -> Router {
    Router::new()
        .route("/", get(page))
        .route("/console/{name}", get(asset))
}

/// The hashed names of the assets, as the page links them.
pub fn asset_paths() -> Vec<String> {
    CONSOLE
        .assets
        .iter()
        .map(|a| format!("/console/{}", a.name))
        .collect()
}
