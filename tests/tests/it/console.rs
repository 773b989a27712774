//! The console as the binary serves it: the page at `/` under a Content-Security-Policy
//! that allows no inline script, its assets under content-hashed names cached as immutable,
//! and a script that renders what users typed as text only.

use axum::http::StatusCode;
use chronicle_tests::TestApp;

#[tokio::test]
async fn the_console_is_served_with_hashed_assets_and_a_strict_policy() {
    let app = TestApp::start();
    let (status, headers, body) = app.get_bytes("/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-cache")
    );
    let csp = headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .expect("a CSP")
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let page = String::from_utf8(body.to_vec()).expect("UTF-8");
    // Every script is a file of this origin: none inline.
    assert_eq!(page.matches("<script").count(), 1, "{page}");
    assert!(page.contains("<script type=\"module\" src=\"/console/"));
    assert!(!page.contains("{{"), "every asset named: {page}");

    // Every file under api/console/ is served (none left out of the list), under one
    // version; the page links the style and the entry module.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../api/console");
    let mut on_disk = Vec::new();
    for entry in walk(&dir) {
        let name = entry
            .strip_prefix(&dir)
            .expect("under")
            .to_string_lossy()
            .into_owned();
        if name != "index.html" {
            on_disk.push(name);
        }
    }
    on_disk.sort();
    let mut listed: Vec<String> = api::console::FILES
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .collect();
    listed.sort();
    assert_eq!(listed, on_disk, "api::console::FILES lists every asset");
    let paths = api::console::asset_paths();
    let version = paths[0].split('/').nth(2).expect("a version").to_owned();
    assert_eq!(version.len(), 12, "{version}");
    for linked in ["console.js", "console.css"] {
        let path = format!("/console/{version}/{linked}");
        assert!(page.contains(path.as_str()), "{path} linked");
    }
    for path in &paths {
        assert!(path.starts_with(&format!("/console/{version}/")), "{path}");
        let (status, headers, body) = app.get_bytes(path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(
            headers.get("cache-control").and_then(|v| v.to_str().ok()),
            Some("public, max-age=31536000, immutable")
        );
        assert!(!body.is_empty());
        if path.ends_with(".js") {
            assert_eq!(
                headers.get("content-type").and_then(|v| v.to_str().ok()),
                Some("text/javascript; charset=utf-8")
            );
            let script = std::str::from_utf8(&body).expect("UTF-8");
            // Text typed by users is set as text, never parsed as HTML.
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
            ] {
                assert!(!script.contains(sink), "{path} uses {sink}");
            }
            // Tokens are kept in memory only.
            for store in ["localStorage", "sessionStorage", "document.cookie"] {
                assert!(!script.contains(store), "{path} uses {store}");
            }
            // Every relative import names a file that is served in the same version.
            for line in script.lines().filter(|l| l.starts_with("import ")) {
                let target = line.rsplit('\'').nth(1).expect("a module path");
                let base = std::path::Path::new(path.as_str())
                    .parent()
                    .expect("a directory");
                let resolved = normalize(&base.join(target));
                assert!(
                    paths.contains(&resolved),
                    "{path} imports {resolved}, which is not served"
                );
            }
        }
    }
    // A version that is not the current one is not served (an old tab reloads the page).
    let (status, _, _) = app
        .get_bytes("/console/000000000000/console.js", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = app
        .get_bytes(&format!("/console/{version}/nothing.js"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The API is where it was.
    let (status, _, _) = app.get_bytes("/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
}

/// Every file under `dir`, recursively.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// `/a/b/../c` as `/a/c`.
fn normalize(path: &std::path::Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}
