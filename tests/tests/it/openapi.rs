//! `/openapi.json` documents every routed path and method, and nothing else.

use axum::http::{Method, StatusCode};
use chronicle_tests::TestApp;

#[tokio::test]
async fn the_document_covers_exactly_the_routes() {
    let app = TestApp::start();
    let doc = app
        .send(Method::GET, "/openapi.json", None, &[], None)
        .await;
    assert_eq!(doc.status, StatusCode::OK);
    let doc = doc.body;
    assert!(
        doc["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let policy = api::app::policy();
    for rule in &policy.rules {
        let method = rule.method.as_str().to_ascii_lowercase();
        assert!(
            doc["paths"][rule.path][&method].is_object(),
            "{} {} is routed but not documented",
            rule.method,
            rule.path
        );
    }
    let paths = doc["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for method in item.as_object().expect("path item").keys() {
            assert!(
                policy
                    .rules
                    .iter()
                    .any(|r| r.path == path && r.method.as_str().eq_ignore_ascii_case(method)),
                "{method} {path} is documented but not routed"
            );
        }
    }
    for schema in ["Task", "TaskPage", "CreateTask", "UpdateTask", "Problem"] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema} missing"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let create = &doc["paths"]["/tasks"]["post"];
    assert!(
        create["responses"]["422"].is_object(),
        "problem responses are documented"
    );
}
