//! The one router every entry point serves (binary, tests, later Lambda), and `serve`.

use crate::error::ApiError;
use crate::extract::BODY_LIMIT;
use crate::policy::Policy;
use crate::tokens::TokenKeys;
use crate::{analytics, auth, health, orders, policy, products, tasks, tenants, users};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::{HeaderName, Method, Request, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use commands::CommandHandler;
use metrics_exporter_prometheus::PrometheusHandle;
use projections::{Freshness, ReadModelStore};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, PoisonError};
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// What every handler shares. Cheap to clone (one reference count): the router clones its
/// state for every request and every layer, so it is one `Arc`, not a bundle of them.
/// Set it up through `DerefMut` before serving; a change after that copies the services.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

#[derive(Clone)]
pub struct Services {
    pub commands: CommandHandler,
    pub views: Arc<dyn ReadModelStore>,
    pub freshness: Arc<dyn Freshness>,
    pub keys: Arc<TokenKeys>,
    /// How long a query that carries `X-Consistency-Token` waits for the read model.
    pub consistency_timeout: Duration,
    pub metrics: Option<PrometheusHandle>,
    /// Per-tenant rate limits by tier; `None` turns them off.
    pub rate_limits: Option<Arc<crate::limits::RateLimits>>,
    /// External identity provider (Cognito); RS256 tokens verify against its JWKS.
    pub oidc: Option<Arc<crate::oidc::Oidc>>,
    /// Tenants, users and sign-in.
    pub access: commands::AccessService,
    /// Tenant lifecycle and tier, checked on every authenticated request.
    pub tenants: Arc<crate::tenancy::TenantGate>,
    /// Sign-in attempts per tenant and email.
    pub signin_throttle: Arc<crate::limits::SignInThrottle>,
    /// Request metrics by route, method and status.
    pub http_metrics: Arc<HttpMetrics>,
    /// Who may call which route; `app` reads it from the routes' declarations.
    pub policy: Arc<Policy>,
    /// `/openapi.json`, rendered once by `app`.
    pub openapi: crate::openapi::Document,
    /// The AI model provider; `None` without `OPENAI_API_KEY` (queries are then 503).
    pub ai: Option<crate::ai::AiProvider>,
    /// Sealing of Salesforce secrets and the credentials check; `None` without a secrets
    /// key (connections are then 503).
    pub salesforce: Option<crate::salesforce::SalesforceAccess>,
    /// The mail server; `None` without `CHRONICLE_SMTP_URL` (messages are then 503).
    pub mail: Option<crate::messages::MailProvider>,
    /// Sealing of SFTP secrets and the client that checks a connection; `None` without a
    /// secrets key (connections are then 503).
    pub sftp: Option<crate::sftp::SftpAccess>,
    /// The event streams open per tenant (`GET /events/stream`).
    pub streams: Arc<crate::events::OpenStreams>,
    /// Which tenants' read models changed: what wakes those streams.
    pub changes: Arc<projections::ViewChanges>,
}

/// How long the tenant gate trusts what it read: the delay before a suspension made by
/// another process (the operator CLI, another instance) takes effect here.
pub const TENANT_CACHE_TTL: Duration = Duration::from_secs(2);

impl AppState {
    /// State over `commands` with everything optional off.
    pub fn new(
        commands: CommandHandler,
        views: Arc<dyn ReadModelStore>,
        freshness: Arc<dyn Freshness>,
        keys: TokenKeys,
        consistency_timeout: Duration,
    ) -> Self {
        Self(Arc::new(Services {
            access: commands::AccessService::new(commands.clone()),
            commands,
            views,
            freshness,
            keys: Arc::new(keys),
            consistency_timeout,
            metrics: None,
            rate_limits: None,
            oidc: None,
            tenants: Arc::new(crate::tenancy::TenantGate::new(TENANT_CACHE_TTL)),
            signin_throttle: Arc::new(crate::limits::SignInThrottle::default()),
            http_metrics: Arc::default(),
            policy: Arc::default(),
            openapi: crate::openapi::Document(axum::body::Bytes::new()),
            ai: None,
            salesforce: None,
            mail: None,
            sftp: None,
            streams: Arc::default(),
            changes: Arc::default(),
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0
    }
}

impl std::ops::DerefMut for AppState {
    fn deref_mut(&mut self) -> &mut Services {
        Arc::make_mut(&mut self.0)
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A resource's routes with their OpenAPI entries: `routes!(handler, …)` registers each
/// handler at the path and method its `#[utoipa::path]` declares.
pub type Routes = OpenApiRouter<AppState>;

/// Every route, with the document its declarations make.
fn all_routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .merge(tasks::routes())
        .merge(products::routes())
        .merge(orders::routes())
        .merge(analytics::routes())
        .merge(crate::ai::routes())
        .merge(crate::llm::routes())
        .merge(crate::messages::routes())
        .merge(crate::sftp::routes())
        .merge(crate::salesforce::routes())
        .merge(crate::customers::routes())
        .merge(crate::agents::routes())
        .merge(crate::cases::routes())
        .merge(crate::customer_cases::routes())
        .merge(crate::customer_documents::routes())
        .merge(crate::downloads::routes())
        .merge(crate::accounts::routes())
        .merge(crate::transactions::routes())
        .merge(crate::transaction_logs::routes())
        .merge(crate::audit::routes())
        .merge(crate::events::routes())
        .merge(tenants::routes())
        .merge(users::routes())
        .merge(auth::routes())
        .merge(health::routes())
        .split_for_parts()
}

/// The OpenAPI document of every route, as `/openapi.json` serves it, and its policy.
fn document_and_policy(raw: &utoipa::openapi::OpenApi) -> (serde_json::Value, Policy) {
    let mut doc = serde_json::to_value(raw).expect("an OpenAPI document serializes");
    let policy = Policy::of(&doc);
    crate::openapi::finish(&mut doc, &policy);
    (doc, policy)
}

/// The OpenAPI document `/openapi.json` serves.
pub fn document() -> serde_json::Value {
    document_and_policy(&all_routes().1).0
}

/// The access policy of every route, read from the routes' declarations.
pub fn policy() -> Policy {
    document_and_policy(&all_routes().1).1
}

pub fn app(mut state: AppState) -> Router {
    let (router, raw) = all_routes();
    let (doc, policy) = document_and_policy(&raw);
    state.policy = Arc::new(policy);
    state.openapi = crate::openapi::Document(doc.to_string().into());
    let routes = router
        .route_layer(middleware::from_fn_with_state(state.clone(), track))
        .fallback(|uri: Uri| async move {
            record_route(uri.path());
            ApiError::NotFound("no such route".into())
        })
        .method_not_allowed_fallback(|uri: Uri| async move {
            record_route(uri.path());
            ApiError::MethodNotAllowed
        })
        .with_state(state);
    // The request-wide layers wrap the router once. `Router::layer` would wrap every route
    // with its own copy, cloned on each request; the price is that the matched route is
    // only known inside, so `track` (or a fallback) records it on the span.
    let layered = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let request_id = req
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                tracing::info_span!(
                    "request",
                    method = req.method().as_str(),
                    route = tracing::field::Empty,
                    request_id,
                    tenant_id = tracing::field::Empty,
                    user_id = tracing::field::Empty,
                )
            }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .service(routes);
    Router::new()
        .merge(crate::console::routes())
        .fallback_service(layered)
}

/// Names the request's route on its span, which the layers outside the router open before
/// the route is known.
fn record_route(route: &str) {
    tracing::Span::current().record("route", route);
}

/// The request metrics of one route, method and status, registered once: building a
/// metric's key from its labels and looking it up on every request costs more than all
/// the rest of this bookkeeping.
struct RouteMetrics {
    requests: metrics::Counter,
    /// Only for 5xx statuses, so that no zero error series appear for the others.
    errors: Option<metrics::Counter>,
    duration: metrics::Histogram,
}

/// Route, method and status.
type RouteKey = (&'static str, Method, u16);

/// Handles of the request metrics, by route, method and status.
#[derive(Default)]
pub struct HttpMetrics {
    routes: std::sync::RwLock<HashMap<RouteKey, Arc<RouteMetrics>>>,
}

impl HttpMetrics {
    fn route(&self, route: &'static str, method: &Method, status: StatusCode) -> Arc<RouteMetrics> {
        let key = (route, method.clone(), status.as_u16());
        let known = self
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        if let Some(m) = known {
            return m;
        }
        let labels = [
            ("route", route.to_owned()),
            ("method", method.to_string()),
            ("status", status.as_u16().to_string()),
        ];
        let m = Arc::new(RouteMetrics {
            requests: metrics::counter!("chronicle_http_requests_total", &labels),
            errors: status
                .is_server_error()
                .then(|| metrics::counter!("chronicle_http_errors_total", &labels)),
            duration: metrics::histogram!("chronicle_http_request_duration_seconds", &labels),
        });
        self.routes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, m.clone());
        m
    }
}

/// Request count, errors and latency by route and status, for `/metrics`, around the
/// access policy (`policy::authorize`): one middleware layer rather than two, since each
/// layer clones the route's service and boxes a future on every request.
///
/// The latency is the handler's, from the route found to the response built. Reading the
/// request off the socket, writing the answer and any wait for a request worker are outside
/// it: in one wrk run on two shared cores with a `POST /tasks` p99 of 30 ms, all but 64 of
/// 206k requests took under 10 ms here.
async fn track(State(state): State<AppState>, req: axum::extract::Request, next: Next) -> Response {
    // Routes are a fixed set (every one has a rule); anything else is not counted by path.
    let rule = state.policy.rule_of(&req).cloned();
    let route = rule.as_ref().map_or("unmatched", |r| r.path);
    record_route(route);
    let method = req.method().clone();
    let started = std::time::Instant::now();
    let response = policy::authorize(&state, rule.as_ref(), req, next).await;
    let m = state.http_metrics.route(route, &method, response.status());
    m.requests.increment(1);
    if let Some(errors) = &m.errors {
        errors.increment(1);
    }
    m.duration.record(started.elapsed().as_secs_f64());
    response
}

/// Serves `app(state)` on `listener` until `shutdown` resolves, then drains requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}
