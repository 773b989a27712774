//! Who may call what: one table of routes, each with its operation and the access it
//! needs. The router registers a route only through this table (`app::routed` refuses a
//! route without a rule), and `authorize`, run by the router's route layer (`app::track`),
//! applies it to every request before any handler runs, so no handler can forget to check. Finer rules that depend on the resource
//! (a MEMBER updates only tasks they created or are assigned) live in the domain.

use crate::app::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token needed.
    Public,
    /// Any authenticated user of the tenant: MEMBER or ADMIN.
    Member,
    /// ADMIN of the tenant only.
    Admin,
}

#[derive(Debug)]
pub struct Rule {
    pub method: Method,
    pub path: &'static str,
    pub operation: &'static str,
    pub access: Access,
}

const fn rule(method: Method, path: &'static str, operation: &'static str, access: Access) -> Rule {
    Rule {
        method,
        path,
        operation,
        access,
    }
}

/// The policy: role × operation, for every route the router has.
pub const POLICY: &[Rule] = &[
    rule(Method::GET, "/tasks", "ListTasks", Access::Member),
    rule(Method::POST, "/tasks", "CreateTask", Access::Member),
    rule(Method::GET, "/tasks/{id}", "GetTask", Access::Member),
    rule(Method::PUT, "/tasks/{id}", "UpdateTask", Access::Member),
    rule(Method::DELETE, "/tasks/{id}", "DeleteTask", Access::Admin),
    rule(Method::POST, "/tenants", "RegisterTenant", Access::Public),
    rule(Method::GET, "/tenants/{id}", "GetTenant", Access::Member),
    rule(Method::PUT, "/tenants/{id}", "UpdateTenant", Access::Admin),
    rule(
        Method::DELETE,
        "/tenants/{id}",
        "DeleteTenant",
        Access::Admin,
    ),
    rule(Method::GET, "/users", "ListUsers", Access::Member),
    rule(Method::POST, "/users", "RegisterUser", Access::Admin),
    rule(Method::GET, "/users/{id}", "GetUser", Access::Member),
    rule(Method::PUT, "/users/{id}", "UpdateUser", Access::Admin),
    rule(
        Method::POST,
        "/users/invitations",
        "InviteUser",
        Access::Admin,
    ),
    rule(Method::POST, "/auth/signup", "SignUp", Access::Public),
    rule(Method::POST, "/auth/signin", "SignIn", Access::Public),
    rule(
        Method::POST,
        "/auth/refresh",
        "RefreshToken",
        Access::Public,
    ),
    rule(Method::POST, "/auth/signout", "SignOut", Access::Public),
    rule(Method::GET, "/health", "Health", Access::Public),
    rule(Method::GET, "/ready", "Ready", Access::Public),
    rule(Method::GET, "/metrics", "Metrics", Access::Public),
    rule(Method::GET, "/openapi.json", "OpenApi", Access::Public),
];

pub fn rule_for(method: &Method, path: &str) -> Option<&'static Rule> {
    POLICY
        .iter()
        .find(|r| r.method == *method && r.path == path)
}

/// The rule of the route the router matched for `req`, if it has one.
pub fn rule_of(req: &Request) -> Option<&'static Rule> {
    req.extensions()
        .get::<MatchedPath>()
        .and_then(|m| rule_for(req.method(), m.as_str()))
}

/// Authenticates and authorizes a request by its route's rule (`rule_of`, which the caller
/// has looked up); puts the `Principal` in the request for the handler. A route without a
/// rule is refused (fail closed).
pub async fn authorize(
    state: &AppState,
    rule: Option<&'static Rule>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(rule) = rule else {
        return ApiError::internal(format!(
            "{} {} has no access rule",
            req.method(),
            req.uri().path()
        ))
        .into_response();
    };
    if rule.access != Access::Public {
        let mut principal = match crate::auth::authenticate(state, req.headers()).await {
            Ok(p) => p,
            Err(e) => return e.into_response(),
        };
        // A suspended or deleted tenant is refused whatever its tokens say; the tier (and
        // so the rate limit) is the tenant aggregate's.
        match state
            .tenants
            .admit(&state.access, &principal.tenant_id, principal.tier)
            .await
        {
            Ok(tier) => principal.tier = tier,
            Err(e) => return e.into_response(),
        }
        if rule.access == Access::Admin && !principal.is_admin() {
            return ApiError::Forbidden(format!("{} needs the ADMIN role", rule.operation))
                .into_response();
        }
        let limits = state.rate_limits.as_ref();
        let allowed = match limits.map(|l| l.check(&principal.tenant_id, principal.tier)) {
            Some(Err(refused)) => {
                metrics::counter!("chronicle_rate_limited_total", "tier" => principal.tier.as_str()).increment(1);
                return ApiError::RateLimited {
                    limit: refused.limit,
                    retry_after_secs: refused.retry_after_secs,
                }
                .into_response();
            }
            Some(Ok(allowed)) => Some(allowed),
            None => None,
        };
        req.extensions_mut().insert(principal);
        let mut response = next.run(req).await;
        if let Some(a) = allowed {
            let headers = response.headers_mut();
            for (name, value) in [
                ("ratelimit-limit", a.limit),
                ("ratelimit-remaining", a.remaining),
                ("ratelimit-reset", 1),
            ] {
                headers.insert(name, axum::http::HeaderValue::from(value));
            }
        }
        return response;
    }
    next.run(req).await
}

impl Principal {
    /// The caller `authorize` put in the request.
    pub(crate) fn from_extensions(req: &axum::http::Extensions) -> Result<Self, ApiError> {
        req.get::<Principal>().cloned().ok_or_else(|| {
            ApiError::internal("a handler needing a caller ran without the authorize layer")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_is_unique() {
        for (i, r) in POLICY.iter().enumerate() {
            assert!(
                POLICY[..i]
                    .iter()
                    .all(|o| o.method != r.method || o.path != r.path),
                "{} {} twice",
                r.method,
                r.path
            );
        }
    }
}
