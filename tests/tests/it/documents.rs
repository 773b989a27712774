//! The portal's documents on the embedded backend: files linked to a customer's Account
//! synced into the documents read model, listed for that customer only, and downloaded
//! through a signed link that works for five minutes, once, without a bearer token, and
//! streams the bytes from Salesforce; every listing and download is in the audit timeline.

use axum::http::StatusCode;
use chronicle_tests::fake_salesforce::{Account, Document, FakeSalesforce};
use chronicle_tests::{SignedUp, TestApp};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

const ACME: &str = "001DOCS000000AAAA";
const GLOBEX: &str = "001DOCS000000BBBB";
const CONTRACT: &str = "069DOCS000000AAAA";
const GLOBEX_FILE: &str = "069DOCS000000BBBB";

/// Bytes that are not all alike: a few MiB of a counter's digest.
fn file(mib: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(mib << 20);
    let mut i = 0u64;
    while out.len() < mib << 20 {
        out.extend_from_slice(&Sha256::digest(i.to_be_bytes()));
        i += 1;
    }
    out.truncate(mib << 20);
    out
}

async fn setup(app: &TestApp) -> (SignedUp, FakeSalesforce, Vec<u8>) {
    let admin = app
        .register_tenant("Docs", "root@docs.test", "enterprise")
        .await;
    let org = FakeSalesforce::start(10).await;
    let t = chrono::Utc::now() - chrono::Duration::hours(1);
    org.put(Account::new(ACME, "Acme", "Karachi", t));
    org.put(Account::new(GLOBEX, "Globex", "Lahore", t));
    let bytes = file(4);
    org.put_document(Document {
        document_id: CONTRACT.into(),
        account_id: ACME.into(),
        version_id: "068DOCS000000AAAA".into(),
        title: "Service contract".into(),
        extension: "pdf".into(),
        bytes: Arc::new(bytes.clone()),
        modified: t,
    });
    org.put_document(Document {
        document_id: GLOBEX_FILE.into(),
        account_id: GLOBEX.into(),
        version_id: "068DOCS000000BBBB".into(),
        title: "Globex only".into(),
        extension: "txt".into(),
        bytes: Arc::new(b"secret of globex".to_vec()),
        modified: t,
    });
    let sync = app.connect_and_sync(&admin, &org).await;
    let s = app
        .get(&format!("/salesforce/sync/{sync}"), &admin.access, None)
        .await;
    assert_eq!(s.body["counts"]["documents_synced"], 2, "{:?}", s.body);
    (admin, org, bytes)
}

/// The signed link a download answers with.
async fn link(app: &TestApp, who: &SignedUp, customer: &str, document: &str) -> String {
    let r = app
        .get(
            &format!("/customer/{customer}/documents/{document}/download"),
            &who.access,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FOUND, "{:?}", r.body);
    let location = r.header("location").expect("Location").to_owned();
    assert!(location.starts_with("/downloads/"), "{location}");
    location
}

#[tokio::test]
async fn a_customer_lists_and_downloads_their_documents_through_single_use_links() {
    let app = TestApp::start();
    let (admin, org, bytes) = setup(&app).await;
    let alice = app.portal_user(&admin, ACME, "alice@docs.test").await;

    // The list waits for the read model: the sync answered before the projector ran.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let r = app
            .get(&format!("/customer/{ACME}/documents"), &alice.access, None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        if r.body["items"].as_array().is_some_and(|i| !i.is_empty()) {
            break r.body;
        }
        assert!(std::time::Instant::now() < deadline, "{:?}", r.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let items = listed["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "only Acme's: {items:?}");
    assert_eq!(items[0]["document_id"], CONTRACT);
    assert_eq!(items[0]["title"], "Service contract");
    assert_eq!(items[0]["content_size"], 4 << 20);

    // Another customer's documents are not hers, nor is one of them under her own id.
    let r = app
        .get(
            &format!("/customer/{GLOBEX}/documents"),
            &alice.access,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .get(
            &format!("/customer/{ACME}/documents/{GLOBEX_FILE}/download"),
            &alice.access,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);

    // The link serves the bytes, without a bearer token, exactly as Salesforce has them.
    let url = link(&app, &alice, ACME, CONTRACT).await;
    let (status, headers, body) = app.get_bytes(&url, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.len(), bytes.len());
    assert_eq!(Sha256::digest(&body), Sha256::digest(&bytes));
    let disposition = headers["content-disposition"].to_str().unwrap_or_default();
    assert_eq!(disposition, "attachment; filename=\"Service contract.pdf\"");
    assert_eq!(org.downloads(), 1);

    // Used once, it is refused and streams nothing.
    let (status, headers, body) = app.get_bytes(&url, None).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(headers["content-type"], "application/problem+json");
    let problem: serde_json::Value = serde_json::from_slice(&body).expect("problem");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("already used")
    );

    // An altered link is refused before Salesforce is asked.
    let fresh = link(&app, &alice, ACME, CONTRACT).await;
    let mut altered = fresh.clone();
    let last = altered.pop().expect("char");
    altered.push(if last == 'A' { 'B' } else { 'A' });
    let (status, _, _) = app.get_bytes(&altered, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // An expired one too.
    let keys = api::TokenKeys::from_secret(chronicle_tests::SECRET).expect("keys");
    let claims = api::tokens::DownloadClaims {
        iss: String::new(),
        sub: alice.user_id.clone(),
        role: "CUSTOMER".into(),
        tenant_id: admin.tenant_id.clone(),
        customer_id: ACME.into(),
        document_id: CONTRACT.into(),
        version_id: "068DOCS000000AAAA".into(),
        jti: "expired-link".into(),
        exp: 0,
        iat: 0,
    };
    let expired = keys.sign_download(claims, Duration::ZERO).expect("sign");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, body) = app.get_bytes(&format!("/downloads/{expired}"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&body).contains("expired"));
    assert_eq!(org.downloads(), 1, "refused links stream nothing");
    // A bearer token is no link, and a link is no bearer token.
    let (status, _, _) = app
        .get_bytes(&format!("/downloads/{}", alice.access), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let token = fresh.trim_start_matches("/downloads/");
    let r = app.get("/customer/{ACME}/documents", token, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // The audit timeline has the listings and the download, with who and which request.
    let mut accessed = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = match &cursor {
            Some(c) => format!("/audit/events?type=DocumentAccessed&limit=100&cursor={c}"),
            None => "/audit/events?type=DocumentAccessed&limit=100".to_owned(),
        };
        let audit = app.get(&page, &admin.access, None).await;
        assert_eq!(audit.status, StatusCode::OK, "{:?}", audit.body);
        accessed.extend(audit.body["items"].as_array().cloned().unwrap_or_default());
        match audit.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let downloads: Vec<_> = accessed
        .iter()
        .filter(|e| e["payload"]["kind"] == "downloaded")
        .collect();
    assert_eq!(downloads.len(), 1, "{accessed:?}");
    assert_eq!(downloads[0]["payload"]["document_ids"][0], CONTRACT);
    assert_eq!(downloads[0]["payload"]["by"], alice.user_id.as_str());
    assert!(downloads[0]["payload"]["request_id"].as_str().is_some());
    assert!(accessed.iter().any(|e| e["payload"]["kind"] == "listed"));
}
