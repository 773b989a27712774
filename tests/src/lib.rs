//! Shared pieces of the black-box tests: the event-store conformance suite that every
//! backend runs, and a harness that drives Chronicle's router in process.

pub mod aws;
pub mod browser;
pub mod conformance;
pub mod fake_openai;
pub mod fake_salesforce;
pub mod ledger;
pub mod replayed;
pub mod sftp;
pub mod smtp;

use api::{Embedded, EmbeddedConfig, app};
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use domain::{Role, TenantId, UserId};
use http_body_util::BodyExt;
use serde_json::Value;
use std::time::Duration;
use tower::ServiceExt;

pub const SECRET: &[u8] = b"test-secret-test-secret-test-secret!";

/// A ten-minute token for `user` of `tenant` with `role`, signed with `secret`.
pub fn mint(secret: &[u8], tenant: &str, user: &str, role: Role) -> String {
    api::TokenKeys::from_secret(secret)
        .expect("keys")
        .mint(
            &TenantId::parse(tenant).expect("tenant"),
            &UserId::parse(user).expect("user"),
            role,
            Duration::from_secs(600),
        )
        .expect("mint")
}

/// An embedded Chronicle on a temporary data dir, driven through its router.
pub struct TestApp {
    pub embedded: Embedded,
    pub router: Router,
    pub dir: tempfile::TempDir,
}

/// What a request got back.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn token(&self) -> String {
        self.header("x-consistency-token")
            .expect("a consistency token")
            .to_owned()
    }

    /// The problem `type` of an error reply, checking the media type on the way.
    pub fn problem(&self) -> &str {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        self.body["type"].as_str().expect("problem type")
    }
}

/// One Server-Sent Event: its type, data and id (the fields it had).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sse {
    pub event: Option<String>,
    pub data: String,
    pub id: Option<String>,
    /// A comment line (`: …`), as heartbeats are.
    pub comment: Option<String>,
}

/// An open `text/event-stream` answer, read event by event.
pub struct EventStream {
    body: Body,
    buffer: String,
}

impl EventStream {
    /// The events of an answer's body (a live server's, or the in-process app's).
    pub fn of(body: Body) -> Self {
        Self {
            body,
            buffer: String::new(),
        }
    }

    /// The next event or comment, or `None` when none comes within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut e = Sse::default();
                let mut data = Vec::new();
                for line in block.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "" => e.comment = Some(value.to_owned()),
                        "event" => e.event = Some(value.to_owned()),
                        "data" => data.push(value.to_owned()),
                        "id" => e.id = Some(value.to_owned()),
                        _ => {}
                    }
                }
                e.data = data.join("\n");
                return Some(e);
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .ok()??;
            if let Ok(bytes) = frame.expect("a frame").into_data() {
                self.buffer
                    .push_str(std::str::from_utf8(&bytes).expect("UTF-8"));
            }
        }
    }

    /// The next event that is not a comment, within `wait`.
    pub async fn next_event(&mut self, wait: Duration) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let e = self.next(left).await?;
            if e.event.is_some() || !e.data.is_empty() {
                return Some(e);
            }
        }
    }
}

impl TestApp {
    pub fn start() -> Self {
        Self::start_with_limits("off")
    }

    /// With per-tenant rate limits (`RateLimits::parse` syntax).
    pub fn start_with_limits(spec: &str) -> Self {
        Self::start_in(tempfile::tempdir().expect("tempdir"), spec, None, None)
    }

    /// With the AI worker calling `fake`, in a fresh data dir.
    pub fn start_with_ai(fake: &fake_openai::FakeOpenAi) -> Self {
        Self::start_in(
            tempfile::tempdir().expect("tempdir"),
            "off",
            Some(ai_config(fake)),
            None,
        )
    }

    /// With the mail worker sending through `smtp` (and the AI worker calling `ai`, when
    /// given), in a fresh data dir.
    pub fn start_with_mail(
        smtp: api::workers::MailConfig,
        ai: Option<&fake_openai::FakeOpenAi>,
    ) -> Self {
        Self::start_in(
            tempfile::tempdir().expect("tempdir"),
            "off",
            ai.map(ai_config),
            Some(smtp),
        )
    }

    /// Stops this one (its projector and workers) and starts another on the same data
    /// dir, as a restart of the process would.
    pub async fn restart(self, ai: Option<api::workers::AiConfig>) -> Self {
        let Self { embedded, dir, .. } = self;
        embedded.shutdown().await;
        Self::start_in(dir, "off", ai, None)
    }

    /// With the SFTP scheduler looking for due imports every `every`.
    pub fn start_with_sftp_schedule(every: Duration) -> Self {
        Self::start_configured(
            tempfile::tempdir().expect("tempdir"),
            "off",
            (None, None),
            Some(every),
        )
    }

    fn start_in(
        dir: tempfile::TempDir,
        spec: &str,
        ai: Option<api::workers::AiConfig>,
        mail: Option<api::workers::MailConfig>,
    ) -> Self {
        Self::start_configured(dir, spec, (ai, mail), None)
    }

    fn start_configured(
        dir: tempfile::TempDir,
        spec: &str,
        (ai, mail): (
            Option<api::workers::AiConfig>,
            Option<api::workers::MailConfig>,
        ),
        sftp_poll: Option<Duration>,
    ) -> Self {
        let embedded = Embedded::start(EmbeddedConfig {
            data_dir: dir.path().to_owned(),
            jwt_secret: SECRET.to_vec(),
            consistency_timeout: Duration::from_secs(5),
            ai,
            salesforce: Some(api::workers::SalesforceConfig {
                secrets_key: b"test-secrets-key".to_vec(),
                timeout: Duration::from_secs(5),
                lookback: chrono::Duration::minutes(2),
                poll_interval: None,
                sftp_poll_interval: None,
                delivery: commands::worker::RetryPolicy {
                    max_attempts: 2,
                    timeout: Duration::from_secs(1),
                    base_backoff: Duration::from_millis(20),
                    max_backoff: Duration::from_millis(100),
                    max_retry_after: Duration::from_secs(1),
                },
                breaker: (4, Duration::from_millis(400)),
            }),
            mail,
            sftp: Some(api::workers::SftpConfig {
                secrets_key: b"test-secrets-key".to_vec(),
                timeout: Duration::from_secs(5),
                poll_interval: sftp_poll,
            }),
        })
        .expect("start");
        let mut embedded = embedded;
        embedded.state.rate_limits = api::limits::RateLimits::parse(spec)
            .expect("limits")
            .map(std::sync::Arc::new);
        let router = app(embedded.state.clone());
        Self {
            embedded,
            router,
            dir,
        }
    }

    pub fn token(&self, tenant: &str, user: &str, role: Role) -> String {
        mint(SECRET, tenant, user, role)
    }

    /// A ten-minute CUSTOMER token for `user`, bound to `customer` of `tenant`.
    pub fn customer_token(&self, tenant: &str, user: &str, customer: &str) -> String {
        api::TokenKeys::from_secret(SECRET)
            .expect("keys")
            .mint_for(
                &TenantId::parse(tenant).expect("tenant"),
                &UserId::parse(user).expect("user"),
                (Role::Customer, Some(customer)),
                domain::Tier::Enterprise,
                Duration::from_secs(600),
            )
            .expect("mint")
    }

    /// Sends a request; `body` is sent as JSON when given.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
            .expect("request");
        let res = self
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("router is infallible");
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON body")
        };
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// Opens a stream of Server-Sent Events (`GET path`); an error answer is read whole.
    pub async fn open_events(
        &self,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<EventStream, Reply> {
        let (parts, body) = self.get_raw(path, token, headers).await.into_parts();
        if !parts.status.is_success() {
            let bytes = body.collect().await.expect("body").to_bytes();
            return Err(Reply {
                status: parts.status,
                headers: parts.headers,
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            });
        }
        assert_eq!(
            parts
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("text/event-stream")
        );
        Ok(EventStream::of(body))
    }

    /// A GET whose answer is read as bytes (a file), with or without a token.
    pub async fn get_bytes(
        &self,
        path: &str,
        token: Option<&str>,
    ) -> (StatusCode, HeaderMap, axum::body::Bytes) {
        let (parts, body) = self.get_raw(path, token, &[]).await.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        (parts.status, parts.headers, bytes)
    }

    /// A GET's answer as the router gives it, its body unread.
    async fn get_raw(
        &self,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> axum::response::Response {
        let mut req = Request::builder().method(Method::GET).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.router
            .clone()
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("router is infallible")
    }

    pub async fn get(&self, path: &str, token: &str, consistency: Option<&str>) -> Reply {
        let headers: Vec<(&str, &str)> = consistency
            .map(|c| ("x-consistency-token", c))
            .into_iter()
            .collect();
        self.send(Method::GET, path, Some(token), &headers, None)
            .await
    }

    pub async fn post(&self, path: &str, token: &str, body: &str) -> Reply {
        self.send(Method::POST, path, Some(token), &[], Some(body))
            .await
    }

    /// A POST without a token (sign-up, sign-in).
    pub async fn post_public(&self, path: &str, body: &str) -> Reply {
        self.send(Method::POST, path, None, &[], Some(body)).await
    }

    /// Registers a tenant through `POST /tenants`; its first ADMIN's tokens.
    /// A MEMBER `admin` adds to its tenant under `email`, signed in.
    pub async fn member(&self, admin: &SignedUp, email: &str) -> SignedUp {
        let body = serde_json::json!({"email": email, "password": PASSWORD, "role": "MEMBER"});
        let added = self.post("/users", &admin.access, &body.to_string()).await;
        assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);
        let body =
            serde_json::json!({"tenant_id": admin.tenant_id, "email": email, "password": PASSWORD});
        let reply = self.post_public("/auth/signin", &body.to_string()).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        SignedUp::from_reply(&reply)
    }

    pub async fn register_tenant(&self, company: &str, email: &str, tier: &str) -> SignedUp {
        let body = serde_json::json!({
            "company_name": company,
            "admin_email": email,
            "admin_password": PASSWORD,
            "tier": tier,
        });
        let reply = self.post_public("/tenants", &body.to_string()).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        SignedUp::from_reply(&reply)
    }

    pub async fn put(&self, path: &str, token: &str, body: &str) -> Reply {
        self.send(Method::PUT, path, Some(token), &[], Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.send(Method::DELETE, path, Some(token), &[], None)
            .await
    }

    /// Connects `admin`'s tenant to `org` and runs a sync to its end (waiting out one
    /// still running); the sync's id.
    pub async fn connect_and_sync(
        &self,
        admin: &SignedUp,
        org: &fake_salesforce::FakeSalesforce,
    ) -> String {
        let body = serde_json::json!({"login_url": org.url, "client_id": org.client_id, "client_secret": org.client_secret});
        let c = self
            .put("/salesforce/connection", &admin.access, &body.to_string())
            .await;
        assert_eq!(c.status, StatusCode::OK, "{:?}", c.body);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let sync = loop {
            let sync = self.post("/salesforce/sync", &admin.access, "").await;
            if sync.status != StatusCode::CONFLICT || std::time::Instant::now() > deadline {
                break sync;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(sync.status, StatusCode::ACCEPTED, "{:?}", sync.body);
        let id = sync.body["sync_id"].as_str().unwrap_or_default().to_owned();
        loop {
            let s = self
                .get(&format!("/salesforce/sync/{id}"), &admin.access, None)
                .await;
            if s.body["status"] == "COMPLETED" {
                return id;
            }
            assert!(std::time::Instant::now() < deadline, "{:?}", s.body);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A CUSTOMER of `customer_id`: invited by `admin`, signed up with the code.
    pub async fn portal_user(&self, admin: &SignedUp, customer_id: &str, email: &str) -> SignedUp {
        let invite = self
            .post(
                &format!("/customers/{customer_id}/portal-invitations"),
                &admin.access,
                &serde_json::json!({"email": email}).to_string(),
            )
            .await;
        assert_eq!(invite.status, StatusCode::CREATED, "{:?}", invite.body);
        let body = serde_json::json!({
            "tenant_id": admin.tenant_id,
            "invitation_code": invite.body["code"],
            "email": email,
            "password": PASSWORD,
        });
        let signed = self.post_public("/auth/signup", &body.to_string()).await;
        assert_eq!(signed.status, StatusCode::CREATED, "{:?}", signed.body);
        assert_eq!(signed.body["role"], "CUSTOMER");
        assert_eq!(signed.body["customer_id"], customer_id);
        SignedUp::from_reply(&signed)
    }
}

pub mod process;
pub mod read_models;

/// The AI worker's configuration for tests: `fake` as the provider, a 1 s timeout, three
/// attempts, short pauses.
pub fn ai_config(fake: &fake_openai::FakeOpenAi) -> api::workers::AiConfig {
    api::workers::AiConfig {
        openai: infra::openai::OpenAiSettings {
            api_key: fake.key.clone(),
            base_url: fake.base_url.clone(),
            timeout: Duration::from_secs(1),
        },
        default_model: domain::ai_query::ModelName::parse("gpt-test").expect("model"),
        policy: commands::ai_worker::RetryPolicy {
            max_attempts: 3,
            timeout: Duration::from_secs(1),
            base_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            max_retry_after: Duration::from_secs(2),
        },
        concurrency: 4,
    }
}

/// The password the harness signs tenants up with.
pub const PASSWORD: &str = "correct horse battery staple";

/// The tokens and ids of a sign-up or sign-in.
#[derive(Debug, Clone)]
pub struct SignedUp {
    pub tenant_id: String,
    pub user_id: String,
    pub access: String,
    pub refresh: String,
}

impl SignedUp {
    pub fn from_reply(reply: &Reply) -> Self {
        let field = |name: &str| {
            reply.body[name]
                .as_str()
                .unwrap_or_else(|| panic!("{name} in {:?}", reply.body))
                .to_owned()
        };
        Self {
            tenant_id: field("tenant_id"),
            user_id: field("user_id"),
            access: field("access_token"),
            refresh: field("refresh_token"),
        }
    }
}

/// A small deterministic generator (xorshift64*), so a failure replays the same workload.
pub struct Dice(pub u64);

impl Dice {
    pub fn roll(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}
