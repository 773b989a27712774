//! Per-tenant rate limits by tier: 429 with Retry-After and RateLimit-* headers, one
//! tenant's burst never spends another's budget.

use axum::http::StatusCode;
use chronicle_tests::TestApp;
use domain::{Role, TenantId, Tier, UserId};
use std::time::Duration;

fn token(app: &TestApp, tenant: &str, tier: Tier) -> String {
    app.embedded
        .state
        .keys
        .mint_with_tier(
            &TenantId::parse(tenant).expect("tenant"),
            &UserId::parse("root").expect("user"),
            Role::Admin,
            tier,
            Duration::from_secs(60),
        )
        .expect("mint")
}

#[tokio::test]
async fn a_tenant_over_its_tier_limit_gets_429_and_others_go_on() {
    let app = TestApp::start_with_limits("basic=2,premium=50,enterprise=100");
    let busy = token(&app, "busy", Tier::Basic);
    let mut remaining = Vec::new();
    for _ in 0..4 {
        let r = app.get("/tasks", &busy, None).await;
        assert_eq!(r.status, StatusCode::OK, "within the burst of 4");
        assert_eq!(r.header("ratelimit-limit"), Some("2"));
        remaining.push(
            r.header("ratelimit-remaining")
                .and_then(|v| v.parse::<u32>().ok())
                .expect("remaining"),
        );
    }
    assert!(
        remaining.windows(2).all(|w| w[1] <= w[0]),
        "remaining counts down: {remaining:?}"
    );
    let refused = app.get("/tasks", &busy, None).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.problem().ends_with("rate-limited"));
    let retry: u64 = refused
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!(retry >= 1);
    assert_eq!(refused.header("ratelimit-remaining"), Some("0"));

    let quiet = token(&app, "quiet", Tier::Basic);
    assert_eq!(
        app.get("/tasks", &quiet, None).await.status,
        StatusCode::OK,
        "another tenant's budget is its own"
    );
    let premium = token(&app, "rich", Tier::Premium);
    for _ in 0..10 {
        assert_eq!(
            app.get("/tasks", &premium, None).await.status,
            StatusCode::OK,
            "premium allows more"
        );
    }
    let health = app
        .send(axum::http::Method::GET, "/health", None, &[], None)
        .await;
    assert_eq!(
        health.status,
        StatusCode::OK,
        "public routes are not limited"
    );
}

#[tokio::test]
async fn a_registered_tenants_limit_follows_its_tier_not_the_tokens_claim() {
    let app = TestApp::start_with_limits("basic=2,premium=50,enterprise=100");
    let acme = app.register_tenant("Acme", "root@acme.test", "basic").await;
    // A token that claims enterprise for a basic tenant still gets the basic limit.
    let claims_more = token(&app, &acme.tenant_id, Tier::Enterprise);
    let first = app.get("/tasks", &claims_more, None).await;
    assert_eq!(first.header("ratelimit-limit"), Some("2"), "{first:?}");
    // An upgrade takes effect on the next request, with the same token.
    let up = app
        .put(
            &format!("/tenants/{}", acme.tenant_id),
            &acme.access,
            r#"{"tier":"enterprise"}"#,
        )
        .await;
    assert_eq!(up.status, StatusCode::OK, "{:?}", up.body);
    let after = app.get("/tasks", &acme.access, None).await;
    assert_eq!(after.header("ratelimit-limit"), Some("100"), "{after:?}");
}
