//! The one router every entry point serves (binary, tests, later Lambda), and `serve`.

use crate::auth::TokenKeys;
use crate::error::ApiError;
use crate::extract::BODY_LIMIT;
use crate::{health, policy, tasks};
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath};
use axum::handler::Handler;
use axum::http::{HeaderName, Method, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{MethodFilter, on};
use commands::CommandHandler;
use metrics_exporter_prometheus::PrometheusHandle;
use projections::{Freshness, ReadModelStore};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

#[derive(Clone)]
pub struct AppState {
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
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Registers `handler` for `method path`, which must have a rule in `policy::POLICY`.
fn routed<H, T>(
    router: Router<AppState>,
    method: Method,
    path: &'static str,
    handler: H,
) -> Router<AppState>
where
    H: Handler<T, AppState>,
    T: 'static,
{
    assert!(
        policy::rule_for(&method, path).is_some(),
        "{method} {path} has no access rule in policy::POLICY"
    );
    let filter = MethodFilter::try_from(method).expect("a standard method");
    router.route(path, on(filter, handler))
}

pub fn app(state: AppState) -> Router {
    let mut router = Router::new();
    router = routed(router, Method::GET, "/tasks", tasks::list);
    router = routed(router, Method::POST, "/tasks", tasks::create);
    router = routed(router, Method::GET, "/tasks/{id}", tasks::get);
    router = routed(router, Method::PUT, "/tasks/{id}", tasks::update);
    router = routed(router, Method::DELETE, "/tasks/{id}", tasks::delete);
    router = routed(router, Method::GET, "/health", health::health);
    router = routed(router, Method::GET, "/ready", health::ready);
    router = routed(router, Method::GET, "/metrics", health::metrics);
    router = routed(
        router,
        Method::GET,
        "/openapi.json",
        crate::openapi::openapi_json,
    );
    router
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            policy::authorize,
        ))
        .route_layer(middleware::from_fn(track))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let route = req
                    .extensions()
                    .get::<MatchedPath>()
                    .map_or_else(|| req.uri().path().to_owned(), |m| m.as_str().to_owned());
                let request_id = req
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                tracing::info_span!(
                    "request",
                    method = %req.method(),
                    route,
                    request_id,
                    tenant_id = tracing::field::Empty,
                    user_id = tracing::field::Empty,
                )
            }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}

/// Request count, errors and latency by route and status, for `/metrics`.
async fn track(req: axum::extract::Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = req.method().to_string();
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!("chronicle_http_requests_total", &labels).increment(1);
    if response.status().is_server_error() {
        metrics::counter!("chronicle_http_errors_total", &labels).increment(1);
    }
    metrics::histogram!("chronicle_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
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
