//! The Salesforce REST API client (reqwest), per tenant org: the OAuth2 client-credentials
//! token (`POST <login_url>/services/oauth2/token`; the answer has no expiry, so a 401
//! `INVALID_SESSION_ID` fetches a new token once and retries), then SOQL over
//! `/services/data/v<version>/query` (`queryAll` for deletions), following
//! `nextRecordsUrl`. The org's `Sforce-Limit-Info` API usage is exported per tenant. The
//! client secret is opened from its sealed form only to be sent; it is never logged.

use crate::secrets::SecretBox;
use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use commands::customers::{
    AccountPage, AccountRecord, CaseRecord, CrmError, CrmSource, FileStream, Org, RemoteCase,
    RemoteDocument, Upserted,
};
use domain::TenantId;
use domain::customer::CustomerFields;
use domain::document::DocumentFields;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

#[derive(Clone)]
struct Token {
    access_token: String,
    instance_url: String,
}

/// A circuit breaker per tenant org: after `threshold` transient failures in a row (5xx,
/// timeouts, connection errors, the API limit), calls of that org fail at once for
/// `cool_down`; then one trial call goes through, and its outcome closes the circuit or
/// opens it again. An answer of Salesforce's that is no failure of its own (a refused
/// record, refused credentials) counts as an answer.
pub struct CircuitBreaker {
    threshold: u32,
    cool_down: Duration,
    orgs: Mutex<HashMap<TenantId, Circuit>>,
}

#[derive(Default)]
struct Circuit {
    failures: u32,
    open_until: Option<std::time::Instant>,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cool_down,
            orgs: Mutex::default(),
        }
    }

    /// Whether a call of `tenant`'s org may go out now.
    fn admit(&self, tenant: &TenantId) -> Result<(), CrmError> {
        let mut orgs = self.orgs.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(c) = orgs.get_mut(tenant) else {
            return Ok(());
        };
        match c.open_until {
            Some(until) if std::time::Instant::now() < until => Err(CrmError::Failed(format!(
                "Salesforce is not called for {} s after {} failures in a row (circuit open)",
                until
                    .saturating_duration_since(std::time::Instant::now())
                    .as_secs()
                    + 1,
                c.failures
            ))),
            Some(_) => {
                // Half open: this call is the trial; the others wait for its outcome.
                c.open_until = Some(std::time::Instant::now() + self.cool_down);
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn record<T>(&self, tenant: &TenantId, outcome: &Result<T, CrmError>) {
        let failed = outcome.as_ref().err().is_some_and(CrmError::is_transient);
        let mut orgs = self.orgs.lock().unwrap_or_else(PoisonError::into_inner);
        let c = orgs.entry(tenant.clone()).or_default();
        let was_open = c.open_until.is_some();
        if failed {
            c.failures += 1;
            if c.failures >= self.threshold {
                c.open_until = Some(std::time::Instant::now() + self.cool_down);
                if !was_open {
                    tracing::warn!(tenant_id = %tenant, failures = c.failures, "Salesforce circuit opened");
                    metrics::counter!("chronicle_salesforce_circuit_opened_total").increment(1);
                }
            }
        } else {
            c.failures = 0;
            c.open_until = None;
            if was_open {
                tracing::info!(tenant_id = %tenant, "Salesforce circuit closed");
            }
        }
        let open = orgs.values().filter(|c| c.open_until.is_some()).count();
        metrics::gauge!("chronicle_salesforce_circuits_open").set(open as f64);
    }

    /// Orgs whose circuit is open (or half open) now.
    pub fn open_circuits(&self) -> usize {
        self.orgs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|c| c.open_until.is_some())
            .count()
    }
}

pub struct SalesforceClient {
    breaker: std::sync::Arc<CircuitBreaker>,
    http: reqwest::Client,
    /// For downloads: a read timeout between chunks instead of one for the whole answer.
    streaming: reqwest::Client,
    secrets: SecretBox,
    tokens: Mutex<HashMap<TenantId, Token>>,
}

const FIELDS: &str = "Id, Name, Industry, Phone, Website, BillingCity, BillingCountry, SystemModstamp, \
     (SELECT Name, Email FROM Contacts ORDER BY CreatedDate ASC LIMIT 1)";

impl SalesforceClient {
    pub fn new(
        secrets: SecretBox,
        timeout: Duration,
        breaker: std::sync::Arc<CircuitBreaker>,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            breaker,
            http: reqwest::Client::builder().timeout(timeout).build()?,
            streaming: reqwest::Client::builder()
                .connect_timeout(timeout)
                .read_timeout(timeout)
                .build()?,
            secrets,
            tokens: Mutex::default(),
        })
    }

    fn cached(&self, tenant: &TenantId) -> Option<Token> {
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tenant)
            .cloned()
    }

    fn forget(&self, tenant: &TenantId) {
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(tenant);
    }

    /// A new token for the org (the client-credentials flow).
    async fn fetch_token(&self, org: &Org) -> Result<Token, CrmError> {
        let c = &org.connection;
        let secret = self
            .secrets
            .open(&c.client_secret)
            .map_err(|e| CrmError::Credentials(e.to_string()))?;
        let url = format!("{}/services/oauth2/token", c.login_url.as_str());
        let response = self
            .http
            .post(&url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", c.client_id.as_str()),
                ("client_secret", secret.as_str()),
            ])
            .send()
            .await
            .map_err(|e| {
                CrmError::Failed(format!("the token request failed: {}", e.without_url()))
            })?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let error = body["error"].as_str().unwrap_or("unknown_error");
            let description = body["error_description"].as_str().unwrap_or_default();
            return Err(CrmError::Credentials(format!(
                "{status}: {error}: {description}"
            )));
        }
        match (body["access_token"].as_str(), body["instance_url"].as_str()) {
            (Some(t), Some(i)) => {
                let token = Token {
                    access_token: t.to_owned(),
                    instance_url: i.trim_end_matches('/').to_owned(),
                };
                self.tokens
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(org.tenant.clone(), token.clone());
                Ok(token)
            }
            _ => Err(CrmError::Failed(
                "the token answer has no access_token or instance_url".into(),
            )),
        }
    }

    /// The records of a SOQL query, every page of them (following `nextRecordsUrl`).
    async fn query_all_pages(&self, org: &Org, soql: &str) -> Result<Vec<Value>, CrmError> {
        let path = format!(
            "/services/data/v{}/query",
            org.connection.api_version.as_str()
        );
        let mut body = self.get(org, &path, &[("q", soql)]).await?;
        let mut out = Vec::new();
        loop {
            let records = body["records"]
                .as_array()
                .ok_or_else(|| CrmError::Failed("a query answer without records".into()))?;
            out.extend(records.iter().cloned());
            let next = body["nextRecordsUrl"]
                .as_str()
                .filter(|_| !body["done"].as_bool().unwrap_or(true))
                .map(str::to_owned);
            match next {
                Some(n) if n.starts_with("/services/data/") => {
                    body = self.get(org, &n, &[]).await?;
                }
                Some(_) => {
                    return Err(CrmError::Failed(
                        "a nextRecordsUrl outside the data API".into(),
                    ));
                }
                None => return Ok(out),
            }
        }
    }

    /// GETs `path` (under the instance URL, with the query).
    async fn get(&self, org: &Org, path: &str, query: &[(&str, &str)]) -> Result<Value, CrmError> {
        self.call(org, reqwest::Method::GET, path, query, None)
            .await
            .map(|(_, body)| body)
    }

    /// Calls `path` (under the instance URL) with a token, once more with a new token
    /// after a 401 INVALID_SESSION_ID; the status and body of a success. A 400 is the
    /// record's fault (`Refused`), REQUEST_LIMIT_EXCEEDED the org's limit, the rest
    /// `Failed`.
    async fn call(
        &self,
        org: &Org,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<(reqwest::StatusCode, Value), CrmError> {
        self.breaker.admit(&org.tenant)?;
        let outcome = self.call_once(org, method, path, query, body).await;
        self.breaker.record(&org.tenant, &outcome);
        outcome
    }

    async fn call_once(
        &self,
        org: &Org,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<(reqwest::StatusCode, Value), CrmError> {
        for attempt in 0..2 {
            let token = match self.cached(&org.tenant) {
                Some(t) => t,
                None => self.fetch_token(org).await?,
            };
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", token.instance_url))
                .query(query)
                .bearer_auth(&token.access_token);
            if let Some(b) = body {
                request = request.json(b);
            }
            let response = request
                .send()
                .await
                .map_err(|e| CrmError::Failed(format!("the call failed: {}", e.without_url())))?;
            record_limits(&org.tenant, response.headers());
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            if status.is_success() {
                return Ok((status, body));
            }
            let first = body.as_array().and_then(|a| a.first());
            let code = first
                .and_then(|e| e["errorCode"].as_str())
                .unwrap_or("UNKNOWN");
            let message = first
                .and_then(|e| e["message"].as_str())
                .unwrap_or_default();
            if status == reqwest::StatusCode::UNAUTHORIZED
                && code == "INVALID_SESSION_ID"
                && attempt == 0
            {
                tracing::info!(tenant_id = %org.tenant, "Salesforce session expired; fetching a new token");
                self.forget(&org.tenant);
                continue;
            }
            let fields = first
                .and_then(|e| e["fields"].as_array())
                .map(|f| {
                    f.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .filter(|f| !f.is_empty())
                .map(|f| format!(" (fields: {f})"))
                .unwrap_or_default();
            let reason = format!("{status} {code}: {message}{fields}");
            return Err(if code == "REQUEST_LIMIT_EXCEEDED" {
                CrmError::RateLimited(reason)
            } else if status == reqwest::StatusCode::BAD_REQUEST {
                CrmError::Refused(reason)
            } else {
                CrmError::Failed(reason)
            });
        }
        Err(CrmError::Failed(
            "the session stayed invalid after a new token".into(),
        ))
    }
}

/// `Sforce-Limit-Info: api-usage=25/15000` as gauges per tenant.
fn record_limits(tenant: &TenantId, headers: &reqwest::header::HeaderMap) {
    let Some(info) = headers
        .get("sforce-limit-info")
        .and_then(|v| v.to_str().ok())
    else {
        return;
    };
    for part in info.split(',') {
        if let Some((name, value)) = part.trim().split_once('=')
            && name == "api-usage"
            && let Some((used, limit)) = value.split_once('/')
            && let (Ok(used), Ok(limit)) = (used.parse::<f64>(), limit.parse::<f64>())
        {
            let t = tenant.to_string();
            metrics::gauge!("chronicle_salesforce_api_requests_used", "tenant_id" => t.clone())
                .set(used);
            metrics::gauge!("chronicle_salesforce_api_requests_limit", "tenant_id" => t).set(limit);
        }
    }
}

fn text(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

fn record(r: &Value, deleted: bool) -> Result<AccountRecord, CrmError> {
    let bad = |what: &str| CrmError::Failed(format!("a record without {what}"));
    let id = text(&r["Id"]).ok_or_else(|| bad("Id"))?;
    let stamp = r["SystemModstamp"]
        .as_str()
        .ok_or_else(|| bad("SystemModstamp"))?;
    // Salesforce writes 2026-12-01T10:00:00.000+0000.
    let system_modstamp = DateTime::parse_from_str(stamp, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| DateTime::parse_from_rfc3339(stamp))
        .map_err(|_| bad("a readable SystemModstamp"))?
        .with_timezone(&Utc);
    let contact = r["Contacts"]["records"]
        .get(0)
        .cloned()
        .unwrap_or(Value::Null);
    Ok(AccountRecord {
        id,
        fields: CustomerFields {
            name: text(&r["Name"]).unwrap_or_default(),
            industry: text(&r["Industry"]),
            phone: text(&r["Phone"]),
            website: text(&r["Website"]),
            billing_city: text(&r["BillingCity"]),
            billing_country: text(&r["BillingCountry"]),
            contact_name: text(&contact["Name"]),
            contact_email: text(&contact["Email"]),
        },
        system_modstamp,
        deleted,
    })
}

fn page(body: &Value, deleted: bool) -> Result<AccountPage, CrmError> {
    let records = body["records"]
        .as_array()
        .ok_or_else(|| CrmError::Failed("a query answer without records".into()))?
        .iter()
        .map(|r| record(r, deleted))
        .collect::<Result<Vec<_>, _>>()?;
    let done = body["done"].as_bool().unwrap_or(true);
    let next = if done {
        None
    } else {
        body["nextRecordsUrl"].as_str().map(|n| {
            // The deleted pass is told by the cursor's own query, kept alongside.
            format!("{}{n}", if deleted { "D" } else { "L" })
        })
    };
    Ok(AccountPage { records, next })
}

#[async_trait]
impl CrmSource for SalesforceClient {
    async fn check(&self, org: &Org) -> Result<(), CrmError> {
        self.forget(&org.tenant);
        self.fetch_token(org).await.map(|_| ())
    }

    async fn accounts(
        &self,
        org: &Org,
        since: Option<DateTime<Utc>>,
        deleted: bool,
    ) -> Result<AccountPage, CrmError> {
        let mut filters = Vec::new();
        if deleted {
            filters.push("IsDeleted = true".to_owned());
        }
        if let Some(t) = since {
            filters.push(format!(
                "SystemModstamp >= {}",
                t.to_rfc3339_opts(SecondsFormat::Secs, true)
            ));
        }
        let fields = if deleted {
            "Id, SystemModstamp"
        } else {
            FIELDS
        };
        let filter = if filters.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", filters.join(" AND "))
        };
        let soql =
            format!("SELECT {fields} FROM Account{filter} ORDER BY SystemModstamp ASC, Id ASC");
        let endpoint = if deleted { "queryAll" } else { "query" };
        let path = format!(
            "/services/data/v{}/{endpoint}",
            org.connection.api_version.as_str()
        );
        let body = self.get(org, &path, &[("q", soql.as_str())]).await?;
        page(&body, deleted)
    }

    async fn next_page(&self, org: &Org, next: &str) -> Result<AccountPage, CrmError> {
        let (deleted, path) = match next.split_at_checked(1) {
            Some(("D", p)) => (true, p),
            Some(("L", p)) => (false, p),
            _ => return Err(CrmError::Failed("an unknown page cursor".into())),
        };
        if !path.starts_with("/services/data/") {
            return Err(CrmError::Failed(
                "a nextRecordsUrl outside the data API".into(),
            ));
        }
        let body = self.get(org, path, &[]).await?;
        page(&body, deleted)
    }

    async fn upsert_case(&self, org: &Org, case: &CaseRecord) -> Result<Upserted, CrmError> {
        let c = &org.connection;
        let path = format!(
            "/services/data/v{}/sobjects/Case/{}/{}",
            c.api_version.as_str(),
            c.case_external_id_field.as_str(),
            case.case_id
        );
        let record = serde_json::json!({
            "AccountId": case.account_id,
            "Subject": case.subject,
            "Description": case.description,
            "Priority": case.priority,
            "Status": case.status,
            "Origin": "Web",
        });
        let (status, body) = self
            .call(org, reqwest::Method::PATCH, &path, &[], Some(&record))
            .await?;
        let created =
            status == reqwest::StatusCode::CREATED || body["created"].as_bool().unwrap_or(false);
        if let Some(id) = text(&body["id"]) {
            return Ok(Upserted {
                salesforce_id: id,
                created,
            });
        }
        // 204: an update, which answers no body; the Case's Id is read by the same key.
        let found = self.get(org, &path, &[("fields", "Id")]).await?;
        let id = text(&found["Id"])
            .ok_or_else(|| CrmError::Failed("the upserted Case has no Id".into()))?;
        Ok(Upserted {
            salesforce_id: id,
            created,
        })
    }

    async fn documents(
        &self,
        org: &Org,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<RemoteDocument>, CrmError> {
        let mut filter = "LinkedEntityId IN (SELECT Id FROM Account)".to_owned();
        if let Some(t) = since {
            filter.push_str(&format!(
                " AND ContentDocument.ContentModifiedDate >= {}",
                t.to_rfc3339_opts(SecondsFormat::Secs, true)
            ));
        }
        let soql = format!(
            "SELECT ContentDocumentId, LinkedEntityId, ContentDocument.Title, \
             ContentDocument.FileExtension, ContentDocument.ContentSize, \
             ContentDocument.ContentModifiedDate, ContentDocument.LatestPublishedVersionId \
             FROM ContentDocumentLink WHERE {filter}"
        );
        self.query_all_pages(org, &soql)
            .await?
            .iter()
            .map(remote_document)
            .collect()
    }

    async fn version_data(&self, org: &Org, version_id: &str) -> Result<FileStream, CrmError> {
        self.breaker.admit(&org.tenant)?;
        let outcome = self.open_version_data(org, version_id).await;
        self.breaker.record(&org.tenant, &outcome);
        outcome
    }

    async fn cases(
        &self,
        org: &Org,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<RemoteCase>, CrmError> {
        self.remote_cases(org, since).await
    }
}

impl SalesforceClient {
    async fn open_version_data(&self, org: &Org, version_id: &str) -> Result<FileStream, CrmError> {
        use futures::StreamExt;
        let ok = !version_id.is_empty() && version_id.bytes().all(|b| b.is_ascii_alphanumeric());
        if !ok {
            return Err(CrmError::Refused("not a ContentVersion Id".into()));
        }
        let path = format!(
            "/services/data/v{}/sobjects/ContentVersion/{version_id}/VersionData",
            org.connection.api_version.as_str()
        );
        for attempt in 0..2 {
            let token = match self.cached(&org.tenant) {
                Some(t) => t,
                None => self.fetch_token(org).await?,
            };
            // No overall timeout here: a large file takes as long as it takes; the
            // connection's read timeout still applies between chunks.
            let response = self
                .streaming
                .get(format!("{}{path}", token.instance_url))
                .bearer_auth(&token.access_token)
                .send()
                .await
                .map_err(|e| {
                    CrmError::Failed(format!("the download failed: {}", e.without_url()))
                })?;
            record_limits(&org.tenant, response.headers());
            let status = response.status();
            if status == reqwest::StatusCode::UNAUTHORIZED && attempt == 0 {
                self.forget(&org.tenant);
                continue;
            }
            if !status.is_success() {
                let body: Value = response.json().await.unwrap_or(Value::Null);
                let first = body.as_array().and_then(|a| a.first());
                let code = first
                    .and_then(|e| e["errorCode"].as_str())
                    .unwrap_or("UNKNOWN");
                let reason = format!("{status} {code}");
                return Err(if status.is_server_error() {
                    CrmError::Failed(reason)
                } else {
                    CrmError::Refused(reason)
                });
            }
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            return Ok(FileStream {
                length: response.content_length(),
                content_type,
                chunks: response
                    .bytes_stream()
                    .map(|c| {
                        c.map_err(|e| {
                            CrmError::Failed(format!("the download broke off: {}", e.without_url()))
                        })
                    })
                    .boxed(),
            });
        }
        Err(CrmError::Failed(
            "the session stayed invalid after a new token".into(),
        ))
    }

    async fn remote_cases(
        &self,
        org: &Org,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<RemoteCase>, CrmError> {
        let c = &org.connection;
        let field = c.case_external_id_field.as_str();
        let mut filter = format!("{field} != null");
        if let Some(t) = since {
            filter.push_str(&format!(
                " AND SystemModstamp >= {}",
                t.to_rfc3339_opts(SecondsFormat::Secs, true)
            ));
        }
        let soql = format!(
            "SELECT Id, {field}, Status, SystemModstamp, \
             (SELECT Id, CommentBody, CreatedDate FROM CaseComments ORDER BY CreatedDate ASC) \
             FROM Case WHERE {filter} ORDER BY SystemModstamp ASC, Id ASC"
        );
        self.query_all_pages(org, &soql)
            .await?
            .iter()
            .map(|r| remote_case(r, field))
            .collect()
    }
}

fn remote_document(r: &Value) -> Result<RemoteDocument, CrmError> {
    let bad = |what: &str| CrmError::Failed(format!("a ContentDocumentLink without {what}"));
    let d = &r["ContentDocument"];
    Ok(RemoteDocument {
        document_id: text(&r["ContentDocumentId"]).ok_or_else(|| bad("ContentDocumentId"))?,
        fields: DocumentFields {
            customer_id: text(&r["LinkedEntityId"]).ok_or_else(|| bad("LinkedEntityId"))?,
            title: text(&d["Title"]).unwrap_or_default(),
            file_extension: text(&d["FileExtension"]),
            content_size: d["ContentSize"].as_u64().unwrap_or(0),
            modified_at: sf_time(&d["ContentModifiedDate"])
                .ok_or_else(|| bad("ContentDocument.ContentModifiedDate"))?,
            version_id: text(&d["LatestPublishedVersionId"])
                .ok_or_else(|| bad("ContentDocument.LatestPublishedVersionId"))?,
        },
    })
}

/// Salesforce's time: 2026-12-01T10:00:00.000+0000 (or RFC 3339).
fn sf_time(v: &Value) -> Option<DateTime<Utc>> {
    let stamp = v.as_str()?;
    DateTime::parse_from_str(stamp, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| DateTime::parse_from_rfc3339(stamp))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn remote_case(r: &Value, field: &str) -> Result<RemoteCase, CrmError> {
    let bad = |what: &str| CrmError::Failed(format!("a Case without {what}"));
    let comments = r["CaseComments"]["records"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|c| {
                    Some(domain::case::RemoteComment {
                        salesforce_id: text(&c["Id"])?,
                        body: text(&c["CommentBody"])?,
                        at: sf_time(&c["CreatedDate"])?,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(RemoteCase {
        salesforce_id: text(&r["Id"]).ok_or_else(|| bad("Id"))?,
        case_id: text(&r[field]).ok_or_else(|| bad(field))?,
        status: text(&r["Status"]).unwrap_or_default(),
        modified_at: sf_time(&r["SystemModstamp"]).ok_or_else(|| bad("SystemModstamp"))?,
        comments,
    })
}
