//! `/openapi.json` documents every routed path and method, and nothing else.

use api::policy::Access;
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
    for status in [
        "201", "400", "401", "403", "409", "413", "415", "422", "429", "500", "503",
    ] {
        assert!(
            create["responses"][status].is_object(),
            "POST /tasks does not document {status}"
        );
    }
    for header in ["ETag", "X-Consistency-Token", "Location", "RateLimit-Limit"] {
        assert!(
            create["responses"]["201"]["headers"][header].is_object(),
            "POST /tasks 201 does not document {header}"
        );
    }
    let get = &doc["paths"]["/tasks/{id}"]["get"];
    assert!(get["responses"]["404"].is_object() && get["responses"]["503"].is_object());
    assert!(
        get["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .any(|p| p["name"] == "X-Consistency-Token" && p["in"] == "header")
    );
}

#[tokio::test]
async fn errors_are_problems_and_access_is_the_policys() {
    let app = TestApp::start();
    let doc = app
        .send(Method::GET, "/openapi.json", None, &[], None)
        .await
        .body;
    let policy = api::app::policy();
    let problem = serde_json::json!({ "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } });
    for rule in &policy.rules {
        let method = rule.method.as_str().to_ascii_lowercase();
        let op = &doc["paths"][rule.path][&method];
        for (status, response) in op["responses"].as_object().expect("responses") {
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    response["content"], problem,
                    "{} {} {status} is not a Problem",
                    rule.method, rule.path
                );
            }
        }
        let security = &op["security"];
        match rule.access {
            Access::Public => assert_eq!(security, &serde_json::json!([]), "{}", rule.path),
            Access::Member => assert_eq!(security, &serde_json::json!([{"bearer": []}])),
            Access::Admin => assert_eq!(security, &serde_json::json!([{"bearer": ["ADMIN"]}])),
            Access::Portal => {
                assert_eq!(security, &serde_json::json!([{"bearer": ["CUSTOMER"]}]));
                assert!(rule.path.starts_with("/customer/{id}/"), "{}", rule.path);
            }
            Access::Tenant => assert_eq!(
                security,
                &serde_json::json!([{"bearer": ["ADMIN", "MEMBER", "CUSTOMER"]}])
            ),
        }
        if rule.access != Access::Public {
            assert!(op["responses"]["401"].is_object() && op["responses"]["429"].is_object());
        }
    }
    let problem = &doc["components"]["schemas"]["Problem"];
    for field in ["type", "title", "status", "detail"] {
        assert!(
            problem["required"]
                .as_array()
                .expect("required")
                .contains(&serde_json::json!(field)),
            "Problem.{field} is not required"
        );
    }
}

#[tokio::test]
async fn constraints_come_from_the_types_that_check_them() {
    let app = TestApp::start();
    let doc = app
        .send(Method::GET, "/openapi.json", None, &[], None)
        .await
        .body;
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["TaskTitle"]["maxLength"],
        domain::task::TITLE_MAX_CHARS
    );
    assert_eq!(
        schemas["Password"]["minLength"],
        domain::user::PASSWORD_MIN_CHARS
    );
    assert_eq!(
        schemas["TaskStatus"]["enum"],
        serde_json::json!(["OPEN", "IN_PROGRESS", "DONE"])
    );
    assert_eq!(schemas["UpdateTask"]["minProperties"], 1);
    assert_eq!(
        schemas["CreateTask"]["required"],
        serde_json::json!(["title"])
    );
    // What the schema refuses, the server refuses, naming the field.
    let signed_up = app.register_tenant("Acme", "root@acme.test", "basic").await;
    let long = "t".repeat(domain::task::TITLE_MAX_CHARS + 1);
    for (body, field) in [
        (serde_json::json!({"title": long}), "title"),
        (serde_json::json!({"title": "   "}), "title"),
        (
            serde_json::json!({"title": "ok", "assigned_to": "a b"}),
            "assigned_to",
        ),
        (serde_json::json!(["ok"]), "body"),
    ] {
        let reply = app
            .post("/tasks", &signed_up.access, &body.to_string())
            .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(reply.body["field"], field, "{body}");
    }
    let reply = app
        .put(
            "/tasks/00000000-0000-7000-8000-000000000000",
            &signed_up.access,
            "{}",
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
}
