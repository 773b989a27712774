//! Walks every route of the policy table with five callers (no token, a bad token, a MEMBER,
//! an ADMIN, another tenant's ADMIN) and checks each answer against the table. The router
//! registers routes only through the table, so a route cannot be missing from the walk.

use api::policy::{Access, POLICY};
use axum::http::{Method, StatusCode};
use chronicle_tests::TestApp;
use domain::Role;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Caller {
    Anonymous,
    BadToken,
    Member,
    Admin,
    OtherTenantAdmin,
}

fn expected(access: Access, caller: Caller, has_id: bool, method: &Method) -> Vec<StatusCode> {
    use Caller::*;
    let ok = match *method {
        Method::POST => vec![StatusCode::CREATED],
        Method::DELETE => vec![StatusCode::NO_CONTENT],
        _ => vec![StatusCode::OK],
    };
    match (access, caller) {
        (Access::Public, _) => vec![
            StatusCode::OK,
            StatusCode::NOT_FOUND, /* /metrics off in tests */
        ],
        (_, Anonymous | BadToken) => vec![StatusCode::UNAUTHORIZED],
        (Access::Admin, Member) => vec![StatusCode::FORBIDDEN],
        (_, OtherTenantAdmin) if has_id => vec![StatusCode::NOT_FOUND],
        _ => ok,
    }
}

#[tokio::test]
async fn every_route_answers_every_caller_as_the_policy_says() {
    let app = TestApp::start();
    let admin = app.token("acme", "root", Role::Admin);
    let member = app.token("acme", "mia", Role::Member);
    let other = app.token("globex", "root", Role::Admin);
    let mut walked = 0;
    for rule in POLICY {
        for caller in [
            Caller::Anonymous,
            Caller::BadToken,
            Caller::Member,
            Caller::Admin,
            Caller::OtherTenantAdmin,
        ] {
            // A fresh task per call, assigned to the member, so a DELETE cannot spoil the next.
            let created = app
                .post("/tasks", &admin, r#"{"title":"walk","assigned_to":"mia"}"#)
                .await;
            let id = created.body["task_id"]
                .as_str()
                .expect("task id")
                .to_owned();
            let path = rule.path.replace("{id}", &id);
            let token = match caller {
                Caller::Anonymous => None,
                Caller::BadToken => Some("not-a-token".to_owned()),
                Caller::Member => Some(member.clone()),
                Caller::Admin => Some(admin.clone()),
                Caller::OtherTenantAdmin => Some(other.clone()),
            };
            let body = match rule.method {
                Method::POST => Some(r#"{"title":"by the walk"}"#),
                Method::PUT => Some(r#"{"status":"DONE"}"#),
                _ => None,
            };
            // Reads wait for the task to reach the read model.
            let fresh = created.token();
            let headers = [("x-consistency-token", fresh.as_str())];
            let reply = app
                .send(rule.method.clone(), &path, token.as_deref(), &headers, body)
                .await;
            let allowed = expected(
                rule.access,
                caller,
                rule.path.contains("{id}"),
                &rule.method,
            );
            assert!(
                allowed.contains(&reply.status),
                "{} {} as {caller:?}: got {}, policy says {allowed:?}: {}",
                rule.method,
                rule.path,
                reply.status,
                reply.body
            );
            if reply.status.is_client_error() {
                reply.problem();
            }
            walked += 1;
        }
    }
    assert_eq!(walked, POLICY.len() * 5);
}
