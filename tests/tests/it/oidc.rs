//! External identity: RS256 tokens verified against a JWKS served from a local server, with
//! Cognito's claim names; forged, expired, misdirected and algorithm-confused tokens are 401.
//! The key pair is a throwaway made for this test (tests/fixtures/oidc-test-key.pem).

use axum::Json;
use axum::http::StatusCode;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chronicle_tests::TestApp;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::sync::Arc;

const PRIVATE_KEY: &[u8] = include_bytes!("../../fixtures/oidc-test-key.pem");
const PUBLIC_KEY: &[u8] = include_bytes!("../../fixtures/oidc-test-key.pub.pem");
const MODULUS: &str = "r86YsWIBXp9qXfGmfkxAYQkwSHNSeAYwFOB8IF-8zdaeQlBOpP5IWjHlAb9fBfIBnpTUt6ZlmOq305QeA_0_Vml3SRFGm24xU9T0FMs4KRYQgjYDKw-dz1f2aiSUO43aI_kL7gSpf5jTUCQ7FejZipUXTKa1wQtppZBu4X-WmouBLnLI6wT9Q53uA3kStm7GoRYwgBt7J06QSWnvOrGuevsEud1B1lbOdepaOCCr9qpdw9Xyk6-r31yySoZepgTw21lXQXGvTairyX142dqrN1S59RK5xTjIeSHNZYlxqQGVZ9kpT-Ui4SS8FSe4Py9vbGL2xoyVOWAXk4aNP3HcFw";
const AUDIENCE: &str = "chronicle-app-client";

async fn jwks_server() -> String {
    let jwks = json!({"keys": [{"kid": "k1", "kty": "RSA", "alg": "RS256", "use": "sig", "n": MODULUS, "e": "AQAB"}]});
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        get(move || async move { Json(jwks.clone()) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    format!("http://{addr}")
}

fn sign(claims: &Value, kid: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(PRIVATE_KEY).expect("key"),
    )
    .expect("sign")
}

fn claims(issuer: &str, groups: &[&str]) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": "user-1", "iss": issuer, "aud": AUDIENCE, "exp": now + 600, "iat": now, "token_use": "id",
           "custom:tenant_id": "acme", "cognito:groups": groups})
}

#[tokio::test]
async fn cognito_tokens_verify_against_the_jwks_and_bad_ones_are_401() {
    let issuer = jwks_server().await;
    let mut app = TestApp::start();
    app.embedded.state.oidc = Some(Arc::new(api::oidc::Oidc::new(&issuer, AUDIENCE)));
    app.router = api::app(app.embedded.state.clone());

    let admin = sign(&claims(&issuer, &["admins"]), "k1");
    let created = app
        .post("/tasks", &admin, r#"{"title":"from cognito"}"#)
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(
        created.body["tenant_id"], "acme",
        "tenant from custom:tenant_id"
    );
    assert_eq!(created.body["created_by"], "user-1");
    let path = format!("/tasks/{}", created.body["task_id"].as_str().expect("id"));

    let member = sign(&claims(&issuer, &[]), "k1");
    assert_eq!(
        app.delete(&path, &member).await.status,
        StatusCode::FORBIDDEN,
        "no admins group: MEMBER"
    );
    // The customers group with custom:customer_id: a CUSTOMER of that customer, shut out
    // of the staff's routes and of other customers' portal routes; without the id, 403.
    let mut portal = claims(&issuer, &["customers"]);
    portal["custom:customer_id"] = json!("001COGNITO00000AAA");
    let portal = sign(&portal, "k1");
    assert_eq!(
        app.get("/tasks", &portal, None).await.status,
        StatusCode::FORBIDDEN
    );
    let other = app
        .get("/customer/001COGNITO00000BBB/cases", &portal, None)
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND, "{:?}", other.body);
    // Its own customer, once the tenant has it.
    let org = chronicle_tests::fake_salesforce::FakeSalesforce::start(10).await;
    org.put(chronicle_tests::fake_salesforce::Account::new(
        "001COGNITO00000AAA",
        "Cognito Co",
        "Karachi",
        chrono::Utc::now() - chrono::Duration::hours(1),
    ));
    let root = chronicle_tests::SignedUp {
        tenant_id: "acme".into(),
        user_id: "root".into(),
        access: app.token("acme", "root", domain::Role::Admin),
        refresh: String::new(),
    };
    app.connect_and_sync(&root, &org).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let own = loop {
        let own = app
            .get("/customer/001COGNITO00000AAA/cases", &portal, None)
            .await;
        if own.status != StatusCode::NOT_FOUND || std::time::Instant::now() > deadline {
            break own;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(own.status, StatusCode::OK, "{:?}", own.body);
    let unbound = sign(&claims(&issuer, &["customers"]), "k1");
    let r = app
        .get("/customer/001COGNITO00000AAA/cases", &unbound, None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);

    let embedded = app.token("acme", "root", domain::Role::Admin);
    assert_eq!(
        app.get("/tasks", &embedded, None).await.status,
        StatusCode::OK,
        "HS256 tokens still work"
    );

    let mut wrong_issuer = claims("https://elsewhere.example", &["admins"]);
    wrong_issuer["iss"] = json!("https://elsewhere.example");
    let mut wrong_audience = claims(&issuer, &["admins"]);
    wrong_audience["aud"] = json!("another-client");
    let mut refresh = claims(&issuer, &["admins"]);
    refresh["token_use"] = json!("refresh");
    let mut expired = claims(&issuer, &["admins"]);
    expired["exp"] = json!(chrono::Utc::now().timestamp() - 600);
    // Algorithm confusion: HS256 with the public key (PEM) as the HMAC secret.
    let confused = {
        let h =
            URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "typ": "JWT", "kid": "k1"}).to_string());
        let c = URL_SAFE_NO_PAD.encode(claims(&issuer, &["admins"]).to_string());
        let key = EncodingKey::from_secret(PUBLIC_KEY);
        let signed = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(&issuer, &["admins"]),
            &key,
        )
        .expect("sign");
        let sig = signed.rsplit('.').next().expect("signature").to_owned();
        format!("{h}.{c}.{sig}")
    };
    let cases = [
        ("wrong issuer", sign(&wrong_issuer, "k1")),
        ("wrong audience", sign(&wrong_audience, "k1")),
        ("refresh token", sign(&refresh, "k1")),
        ("expired", sign(&expired, "k1")),
        ("unknown kid", sign(&claims(&issuer, &["admins"]), "k2")),
        ("algorithm confusion", confused),
    ];
    for (what, token) in cases {
        let r = app.get("/tasks", &token, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {:?}", r.body);
        assert!(r.header("www-authenticate").is_some(), "{what}");
    }
}
