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

    let paths = api::console::asset_paths();
    assert_eq!(paths.len(), 2);
    for path in &paths {
        assert!(page.contains(path.as_str()), "{path} linked");
        let (status, headers, body) = app.get_bytes(path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(
            headers.get("cache-control").and_then(|v| v.to_str().ok()),
            Some("public, max-age=31536000, immutable")
        );
        assert!(!body.is_empty());
        if path.ends_with(".js") {
            let script = std::str::from_utf8(&body).expect("UTF-8");
            // Text typed by users is set as text, never parsed as HTML.
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
            ] {
                assert!(!script.contains(sink), "the script uses {sink}");
            }
            // Tokens are kept in memory only.
            for store in ["localStorage", "sessionStorage", "document.cookie"] {
                assert!(!script.contains(store), "the script uses {store}");
            }
        }
    }
    // A name that is not the current hash is not served (an old tab reloads the page).
    let (status, _, _) = app
        .get_bytes("/console/console.000000000000.js", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The API is where it was.
    let (status, _, _) = app.get_bytes("/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
}
