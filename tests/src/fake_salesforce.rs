//! A local stand-in for one Salesforce org, speaking the REST API's real JSON: the OAuth2
//! token endpoint (client credentials; failures as `{"error", "error_description"}`),
//! SOQL over `query` and `queryAll` with `totalSize`, `done`, `nextRecordsUrl` and
//! `records` carrying `attributes`, errors as `[{"message", "errorCode"}]`, and the
//! `Sforce-Limit-Info` header. It understands the queries Chronicle sends: Accounts with
//! `IsDeleted = true` (queryAll) or not, `SystemModstamp >= <time>`, ordered by
//! (SystemModstamp, Id). Cases are upserted on an External ID field
//! (`PATCH /sobjects/Case/<field>/<value>`: 201 with `{"id", "success", "errors",
//! "created"}` for a new one, 204 for an update, 400 with `[{"message", "errorCode",
//! "fields"}]` for a validation rule's refusal) and read by it (`GET`, the record with
//! `attributes`).

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub phone: Option<String>,
    pub city: Option<String>,
    pub contact: Option<(String, String)>,
    pub modstamp: DateTime<Utc>,
    pub deleted: bool,
}

impl Account {
    pub fn new(id: &str, name: &str, city: &str, modstamp: DateTime<Utc>) -> Self {
        Self {
            id: id.to_owned(),
            name: name.to_owned(),
            phone: None,
            city: Some(city.to_owned()),
            contact: None,
            modstamp,
            deleted: false,
        }
    }
}

#[derive(Default)]
struct Org {
    accounts: Vec<Account>,
    tokens: Vec<String>,
    token_requests: u32,
    queries: Vec<String>,
    /// Query calls answered before REQUEST_LIMIT_EXCEEDED; `None`: no limit.
    calls_left: Option<u32>,
    /// Results of queries, by locator, for `nextRecordsUrl`.
    cursors: HashMap<String, Vec<Value>>,
    pause: Duration,
    used: u32,
    /// Cases by the value of their External ID field.
    cases: Vec<(String, Value)>,
    /// Upserts answered 503 before the next one is applied.
    case_outages: u32,
    /// How long the next upsert's answer is held back after it was applied (a timeout
    /// that loses an answer, not the write).
    case_delay: Option<Duration>,
    case_calls: u32,
    documents: Vec<Document>,
    downloads: u32,
}

/// A file linked to an Account: its ContentDocument and latest ContentVersion.
#[derive(Debug, Clone)]
pub struct Document {
    pub document_id: String,
    pub account_id: String,
    pub version_id: String,
    pub title: String,
    pub extension: String,
    pub bytes: Arc<Vec<u8>>,
    pub modified: DateTime<Utc>,
}

/// What the fake's validation rule refuses: a Subject with this in it.
pub const REFUSED_SUBJECT: &str = "[refused]";

#[derive(Clone)]
pub struct FakeSalesforce {
    pub url: String,
    pub client_id: String,
    pub client_secret: String,
    pub page_size: usize,
    org: Arc<Mutex<Org>>,
}

impl FakeSalesforce {
    pub async fn start(page_size: usize) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let fake = Self {
            url: format!("http://{addr}"),
            client_id: "3MVG9fake.connected.app".to_owned(),
            client_secret: format!("secret-{}", uuid::Uuid::new_v4().simple()),
            page_size,
            org: Arc::default(),
        };
        let app = Router::new()
            .route("/services/oauth2/token", axum::routing::post(token))
            .route("/services/data/{version}/query", axum::routing::get(query))
            .route(
                "/services/data/{version}/queryAll",
                axum::routing::get(query_all),
            )
            .route(
                "/services/data/{version}/query/{locator}",
                axum::routing::get(more),
            )
            .route(
                "/services/data/{version}/sobjects/ContentVersion/{id}/VersionData",
                axum::routing::get(version_data),
            )
            .route(
                "/services/data/{version}/sobjects/Case/{field}/{value}",
                axum::routing::patch(upsert_case).get(case_by_key),
            )
            .with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        fake
    }

    fn org(&self) -> std::sync::MutexGuard<'_, Org> {
        self.org.lock().expect("org")
    }

    /// Adds or replaces an Account (by Id).
    pub fn put(&self, account: Account) {
        let mut org = self.org();
        org.accounts.retain(|a| a.id != account.id);
        org.accounts.push(account);
    }

    pub fn account(&self, id: &str) -> Account {
        self.org()
            .accounts
            .iter()
            .find(|a| a.id == id)
            .cloned()
            .expect("account")
    }

    /// Every token issued so far stops working (an expired session).
    pub fn expire_tokens(&self) {
        self.org().tokens.clear();
    }

    pub fn token_requests(&self) -> u32 {
        self.org().token_requests
    }

    /// After `n` more query calls, the org's API limit is reached; `None` lifts it.
    pub fn limit_calls(&self, n: Option<u32>) {
        self.org().calls_left = n;
    }

    /// Each query call waits this long first.
    pub fn pause(&self, pause: Duration) {
        self.org().pause = pause;
    }

    pub fn queries(&self) -> Vec<String> {
        self.org().queries.clone()
    }

    /// The Cases the org has: (External ID value, record).
    pub fn cases(&self) -> Vec<(String, Value)> {
        self.org().cases.clone()
    }

    /// The next `n` case upserts answer 503 Service Unavailable.
    pub fn fail_cases(&self, n: u32) {
        self.org().case_outages = n;
    }

    /// The next case upsert is applied, then answered only after `delay`.
    pub fn delay_next_case(&self, delay: Duration) {
        self.org().case_delay = Some(delay);
    }

    /// An agent's change in Salesforce: the Case's new status and, if given, a new
    /// comment; its SystemModstamp moves on.
    pub fn agent_update(&self, case_id: &str, status: &str, comment: Option<&str>) {
        let mut org = self.org();
        let n = org
            .cases
            .iter()
            .map(|(_, r)| r["_comments"].as_array().map_or(0, Vec::len))
            .sum::<usize>();
        let (_, record) = org
            .cases
            .iter_mut()
            .find(|(v, _)| v == case_id)
            .expect("case");
        record["Status"] = json!(status);
        record["SystemModstamp"] = json!(sf_time(Utc::now() + chrono::Duration::milliseconds(5)));
        if let Some(body) = comment {
            let mut comments = record["_comments"].as_array().cloned().unwrap_or_default();
            comments.push(json!({
                "attributes": {"type": "CaseComment", "url": format!("/services/data/v60.0/sobjects/CaseComment/00aFAKE{n:011}")},
                "Id": format!("00aFAKE{n:011}"),
                "CommentBody": body,
                "CreatedDate": sf_time(Utc::now()),
            }));
            record["_comments"] = json!(comments);
        }
    }

    /// Links a file to an Account (or replaces the file of that ContentDocument).
    pub fn put_document(&self, doc: Document) {
        let mut org = self.org();
        org.documents.retain(|d| d.document_id != doc.document_id);
        org.documents.push(doc);
    }

    /// VersionData downloads served so far.
    pub fn downloads(&self) -> u32 {
        self.org().downloads
    }

    /// Case upserts received, answered or not.
    pub fn case_calls(&self) -> u32 {
        self.org().case_calls
    }
}

fn sf_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

fn record(a: &Account, deleted_pass: bool) -> Value {
    let attributes = json!({"type": "Account", "url": format!("/services/data/v60.0/sobjects/Account/{}", a.id)});
    if deleted_pass {
        return json!({"attributes": attributes, "Id": a.id, "SystemModstamp": sf_time(a.modstamp)});
    }
    let contacts = a.contact.as_ref().map(|(name, email)| {
        json!({"totalSize": 1, "done": true, "records": [{
            "attributes": {"type": "Contact", "url": "/services/data/v60.0/sobjects/Contact/003FAKE"},
            "Name": name, "Email": email
        }]})
    });
    json!({
        "attributes": attributes,
        "Id": a.id,
        "Name": a.name,
        "Industry": null,
        "Phone": a.phone,
        "Website": null,
        "BillingCity": a.city,
        "BillingCountry": "PK",
        "SystemModstamp": sf_time(a.modstamp),
        "Contacts": contacts,
    })
}

fn errors(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!([{"message": message, "errorCode": code}])),
    )
        .into_response()
}

async fn token(
    State(fake): State<FakeSalesforce>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut org = fake.org();
    org.token_requests += 1;
    let ok = form.get("grant_type").map(String::as_str) == Some("client_credentials")
        && form.get("client_id") == Some(&fake.client_id)
        && form.get("client_secret") == Some(&fake.client_secret);
    if !ok {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_client", "error_description": "invalid client credentials"})),
        )
            .into_response();
    }
    let token = format!("00Dfake!{}", uuid::Uuid::new_v4().simple());
    org.tokens.push(token.clone());
    Json(json!({
        "access_token": token,
        "instance_url": fake.url,
        "id": format!("{}/id/00Dfake/005fake", fake.url),
        "token_type": "Bearer",
        "issued_at": Utc::now().timestamp_millis().to_string(),
        "signature": "fake="
    }))
    .into_response()
}

/// Checks the session and the API limit; the answer's headers.
#[allow(clippy::result_large_err)] // a test server's refusal, built once per call
fn admit(fake: &FakeSalesforce, headers: &HeaderMap) -> Result<HeaderMap, Response> {
    let mut org = fake.org();
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    if !org.tokens.contains(&bearer) {
        return Err(errors(
            StatusCode::UNAUTHORIZED,
            "INVALID_SESSION_ID",
            "Session expired or invalid",
        ));
    }
    if let Some(left) = org.calls_left {
        if left == 0 {
            return Err(errors(
                StatusCode::FORBIDDEN,
                "REQUEST_LIMIT_EXCEEDED",
                "TotalRequests Limit exceeded.",
            ));
        }
        org.calls_left = Some(left - 1);
    }
    org.used += 1;
    let mut out = HeaderMap::new();
    let info = format!("api-usage={}/15000", org.used);
    out.insert("sforce-limit-info", info.parse().expect("header"));
    Ok(out)
}

fn page(fake: &FakeSalesforce, mut rows: Vec<Value>, locator: &str) -> Value {
    let total = rows.len();
    let rest = rows.split_off(rows.len().min(fake.page_size));
    let done = rest.is_empty();
    let mut body = json!({"totalSize": total, "done": done, "records": rows});
    if !done {
        let (base, offset) = locator.rsplit_once('-').unwrap_or((locator, "0"));
        let next = format!(
            "{base}-{}",
            offset.parse::<usize>().unwrap_or(0) + fake.page_size
        );
        fake.org().cursors.insert(next.clone(), rest);
        body["nextRecordsUrl"] = json!(format!("/services/data/v60.0/query/{next}"));
    }
    body
}

async fn run(fake: FakeSalesforce, headers: HeaderMap, q: String, all: bool) -> Response {
    let pause = fake.org().pause;
    tokio::time::sleep(pause).await;
    let out = match admit(&fake, &headers) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let deleted = q.contains("IsDeleted = true");
    if deleted && !all {
        return errors(
            StatusCode::BAD_REQUEST,
            "MALFORMED_QUERY",
            "IsDeleted needs queryAll",
        );
    }
    let since = q.split("SystemModstamp >= ").nth(1).and_then(|rest| {
        let t = rest.split_whitespace().next().unwrap_or_default();
        DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    });
    if q.contains(" FROM ContentDocumentLink ") {
        let rows: Vec<Value> = {
            let mut org = fake.org();
            org.queries.push(q.clone());
            let accounts: Vec<String> = org
                .accounts
                .iter()
                .filter(|a| !a.deleted)
                .map(|a| a.id.clone())
                .collect();
            let since = q.split("ContentModifiedDate >= ").nth(1).and_then(|rest| {
                DateTime::parse_from_rfc3339(rest.split_whitespace().next()?).ok()
            });
            org.documents
                .iter()
                .filter(|d| accounts.contains(&d.account_id))
                .filter(|d| since.is_none_or(|s| d.modified >= s))
                .map(|d| {
                    json!({
                        "attributes": {"type": "ContentDocumentLink", "url": format!("/services/data/v60.0/sobjects/ContentDocumentLink/06A{}", &d.document_id[3..])},
                        "ContentDocumentId": d.document_id,
                        "LinkedEntityId": d.account_id,
                        "ContentDocument": {
                            "attributes": {"type": "ContentDocument", "url": format!("/services/data/v60.0/sobjects/ContentDocument/{}", d.document_id)},
                            "Title": d.title,
                            "FileExtension": d.extension,
                            "ContentSize": d.bytes.len(),
                            "ContentModifiedDate": sf_time(d.modified),
                            "LatestPublishedVersionId": d.version_id,
                        }
                    })
                })
                .collect()
        };
        let locator = format!("01gFAKE{}-0", uuid::Uuid::new_v4().simple());
        return (out, Json(page(&fake, rows, &locator))).into_response();
    }
    if q.contains(" FROM Case ") {
        let rows = {
            let mut org = fake.org();
            org.queries.push(q.clone());
            let mut cases: Vec<Value> = org
                .cases
                .iter()
                .map(|(_, r)| r.clone())
                .filter(|r| {
                    since.is_none_or(|s| {
                        DateTime::parse_from_str(
                            r["SystemModstamp"].as_str().unwrap_or_default(),
                            "%Y-%m-%dT%H:%M:%S%.f%z",
                        )
                        .is_ok_and(|t| t >= s)
                    })
                })
                .collect();
            cases.sort_by_key(|r| (r["SystemModstamp"].to_string(), r["Id"].to_string()));
            cases.into_iter().map(case_row).collect()
        };
        let locator = format!("01gFAKE{}-0", uuid::Uuid::new_v4().simple());
        return (out, Json(page(&fake, rows, &locator))).into_response();
    }
    let rows: Vec<Value> = {
        let mut org = fake.org();
        org.queries.push(q.clone());
        let mut accounts: Vec<&Account> = org
            .accounts
            .iter()
            .filter(|a| a.deleted == deleted)
            .filter(|a| since.is_none_or(|s| a.modstamp >= s))
            .collect();
        accounts.sort_by(|a, b| (a.modstamp, &a.id).cmp(&(b.modstamp, &b.id)));
        accounts.iter().map(|a| record(a, deleted)).collect()
    };
    let locator = format!("01gFAKE{}-0", uuid::Uuid::new_v4().simple());
    (out, Json(page(&fake, rows, &locator))).into_response()
}

async fn query(
    State(fake): State<FakeSalesforce>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    run(
        fake,
        headers,
        q.get("q").cloned().unwrap_or_default(),
        false,
    )
    .await
}

async fn query_all(
    State(fake): State<FakeSalesforce>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    run(fake, headers, q.get("q").cloned().unwrap_or_default(), true).await
}

async fn more(
    State(fake): State<FakeSalesforce>,
    headers: HeaderMap,
    Path((_version, locator)): Path<(String, String)>,
) -> Response {
    let pause = fake.org().pause;
    tokio::time::sleep(pause).await;
    let out = match admit(&fake, &headers) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let Some(rows) = fake.org().cursors.remove(&locator) else {
        return errors(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY_LOCATOR",
            "invalid query locator",
        );
    };
    (out, Json(page(&fake, rows, &locator))).into_response()
}

async fn upsert_case(
    State(fake): State<FakeSalesforce>,
    Path((_version, field, value)): Path<(String, String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let limits = match admit(&fake, &headers) {
        Ok(h) => h,
        Err(refusal) => return refusal,
    };
    let (delay, created, id) = {
        let mut org = fake.org();
        org.case_calls += 1;
        if org.case_outages > 0 {
            org.case_outages -= 1;
            return errors(
                StatusCode::SERVICE_UNAVAILABLE,
                "SERVER_UNAVAILABLE",
                "The server is temporarily unavailable",
            );
        }
        if field != "Chronicle_Case_Id__c" {
            return errors(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!("Provided external ID field does not exist or is not accessible: {field}"),
            );
        }
        let subject = body["Subject"].as_str().unwrap_or_default();
        if subject.contains(REFUSED_SUBJECT) {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!([{"message": "Subject: the subject is not allowed", "errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "fields": ["Subject"]}])),
            )
                .into_response();
        }
        let delay = org.case_delay.take();
        let n = org.cases.len();
        match org.cases.iter_mut().find(|(v, _)| *v == value) {
            Some((_, record)) => {
                let id = record["Id"].clone();
                let mut merged = body.clone();
                merged["Id"] = id.clone();
                merged[&field] = json!(value);
                merged["_comments"] = record["_comments"].clone();
                merged["SystemModstamp"] = json!(sf_time(Utc::now()));
                *record = merged;
                (delay, false, id)
            }
            None => {
                let id = json!(format!("500FAKE{n:011}"));
                let mut record = body.clone();
                record["Id"] = id.clone();
                record[&field] = json!(value);
                record["SystemModstamp"] = json!(sf_time(Utc::now()));
                org.cases.push((value.clone(), record));
                (delay, true, id)
            }
        }
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    if created {
        (
            StatusCode::CREATED,
            limits,
            Json(json!({"id": id, "success": true, "errors": [], "created": true})),
        )
            .into_response()
    } else {
        (StatusCode::NO_CONTENT, limits).into_response()
    }
}

async fn case_by_key(
    State(fake): State<FakeSalesforce>,
    Path((_version, field, value)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let limits = match admit(&fake, &headers) {
        Ok(h) => h,
        Err(refusal) => return refusal,
    };
    let org = fake.org();
    match org.cases.iter().find(|(v, _)| *v == value) {
        Some((_, record)) => {
            let mut r = record.clone();
            r["attributes"] = json!({"type": "Case", "url": format!("/services/data/v60.0/sobjects/Case/{}", record["Id"].as_str().unwrap_or_default())});
            let _ = field;
            (limits, Json(r)).into_response()
        }
        None => errors(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource does not exist",
        ),
    }
}

/// A Case as a query answers it, with its comments as a child relationship.
fn case_row(mut r: Value) -> Value {
    let comments = r["_comments"].as_array().cloned().unwrap_or_default();
    if let Some(o) = r.as_object_mut() {
        o.remove("_comments");
    }
    r["attributes"] = json!({"type": "Case", "url": format!("/services/data/v60.0/sobjects/Case/{}", r["Id"].as_str().unwrap_or_default())});
    r["CaseComments"] = if comments.is_empty() {
        Value::Null
    } else {
        json!({"totalSize": comments.len(), "done": true, "records": comments})
    };
    r
}

/// A ContentVersion's bytes, sent in 64 KiB chunks.
async fn version_data(
    State(fake): State<FakeSalesforce>,
    Path((_version, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut limits = match admit(&fake, &headers) {
        Ok(h) => h,
        Err(refusal) => return refusal,
    };
    let bytes = {
        let mut org = fake.org();
        let found = org
            .documents
            .iter()
            .find(|d| d.version_id == id)
            .map(|d| d.bytes.clone());
        if found.is_some() {
            org.downloads += 1;
        }
        found
    };
    let Some(bytes) = bytes else {
        return errors(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource does not exist",
        );
    };
    limits.insert(
        "content-type",
        "application/octet-stream".parse().expect("header"),
    );
    limits.insert(
        "content-length",
        bytes.len().to_string().parse().expect("header"),
    );
    let chunks = (0..bytes.len().div_ceil(64 * 1024)).map(move |i| {
        let end = ((i + 1) * 64 * 1024).min(bytes.len());
        Ok::<_, std::io::Error>(axum::body::Bytes::copy_from_slice(
            &bytes[i * 64 * 1024..end],
        ))
    });
    (
        StatusCode::OK,
        limits,
        axum::body::Body::from_stream(futures::stream::iter(chunks)),
    )
        .into_response()
}
