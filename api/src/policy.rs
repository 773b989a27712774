//! Who may call what: one table of routes, each with its operation and the access it
//! needs, read from the routes' own declarations. Each handler's `#[utoipa::path]` names its
//! access in `security` (`("bearer" = ["ADMIN"])`, `("bearer" = [])` for any of the
//! tenant's staff, `("bearer" = ["CUSTOMER"])` for a customer's portal route,
//! `("bearer" = ["ADMIN", "MEMBER", "CUSTOMER"])` for anyone of the tenant, `(())` for
//! public), so the document clients read is the policy the server
//! applies; a route that declares none is refused at start-up (fail closed). `authorize`,
//! run by the router's route layer (`app::track`), applies the table to every request
//! before any handler runs, so no handler can forget to check. Finer rules that depend on
//! the resource (a MEMBER updates only tasks they created or are assigned) live in the
//! domain.

use crate::app::AppState;
use crate::error::ApiError;
use crate::tokens::Principal;
use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token needed.
    Public,
    /// The tenant's staff: MEMBER, ADMIN or OWNER.
    Member,
    /// ADMIN (or OWNER) of the tenant only.
    Admin,
    /// A portal route of one customer (`/customer/{id}/...`): a CUSTOMER of that customer
    /// (another customer's id is 404, as an unknown one is), or the tenant's staff.
    Portal,
    /// Anyone of the tenant, staff or CUSTOMER; the route itself narrows what each sees.
    Tenant,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub method: Method,
    pub path: &'static str,
    pub operation: &'static str,
    pub access: Access,
    /// A read of a client's data (a GET of a route tagged with one of `CLIENT_DATA_TAGS`):
    /// recorded when a staff user calls it in a tenant with `settings.audit_reads` on.
    pub reads_client_data: bool,
}

/// The OpenAPI tags of the routes that serve a client's data.
pub const CLIENT_DATA_TAGS: [&str; 5] =
    ["customers", "accounts", "transactions", "cases", "portal"];

/// The policy: role × operation, for every route the router has.
#[derive(Debug, Default)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

/// The scheme every protected route names.
pub const BEARER: &str = "bearer";

impl Policy {
    /// The rules the routes declared in `doc` (an OpenAPI document as JSON).
    ///
    /// # Panics
    /// When an operation declares no access, or one this table cannot express: a router
    /// must not start with a route nobody decided the access of.
    pub fn of(doc: &Value) -> Self {
        let mut rules = Vec::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                    .unwrap_or_else(|_| panic!("{method} {path}: not an HTTP method"));
                let operation = op["operationId"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{method} {path} has no operation_id"));
                let access = access_of(&op["security"])
                    .unwrap_or_else(|why| panic!("{method} {path}: {why}"));
                let tagged = op["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|t| CLIENT_DATA_TAGS.iter().any(|c| t == c));
                rules.push(Rule {
                    reads_client_data: tagged && method == Method::GET,
                    method,
                    path: intern(path),
                    operation: intern(operation),
                    access,
                });
            }
        }
        Self { rules }
    }

    /// The rule of `method` (in either case) on the route `path`.
    pub fn rule(&self, method: &str, path: &str) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|r| r.path == path && r.method.as_str().eq_ignore_ascii_case(method))
    }

    /// The rule of the route the router matched for `req`, if it has one.
    pub fn rule_of(&self, req: &Request) -> Option<&Rule> {
        let path = req.extensions().get::<MatchedPath>()?.as_str();
        self.rules
            .iter()
            .find(|r| r.method == *req.method() && r.path == path)
    }
}

/// The access an operation's `security` declares.
fn access_of(security: &Value) -> Result<Access, String> {
    let Some(requirements) = security.as_array() else {
        return Err("declares no access: add security(...) to its #[utoipa::path]".into());
    };
    // `[]` or `[{}]`: no credentials needed.
    if requirements
        .iter()
        .all(|r| r.as_object().is_some_and(|o| o.is_empty()))
    {
        return Ok(Access::Public);
    }
    match requirements.as_slice() {
        [one] => match one
            .as_object()
            .and_then(|o| o.get(BEARER))
            .and_then(Value::as_array)
        {
            Some(roles) if roles.is_empty() => Ok(Access::Member),
            Some(roles) if roles.len() == 1 && roles[0] == "ADMIN" => Ok(Access::Admin),
            Some(roles) if roles.len() == 1 && roles[0] == "CUSTOMER" => Ok(Access::Portal),
            Some(roles) if roles == &["ADMIN", "MEMBER", "CUSTOMER"] => Ok(Access::Tenant),
            _ => Err(format!(
                "security {one} is not bearer with [], [\"ADMIN\"], [\"CUSTOMER\"] or [\"ADMIN\", \"MEMBER\", \"CUSTOMER\"]"
            )),
        },
        _ => Err("more than one security requirement".into()),
    }
}

/// A route's path or operation for the life of the process: the request metrics key on
/// them by reference, and each distinct string is kept once however many routers start.
fn intern(s: &str) -> &'static str {
    static SEEN: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(PoisonError::into_inner);
    let seen = seen.get_or_insert_with(HashSet::new);
    if let Some(known) = seen.get(s) {
        return known;
    }
    let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
    seen.insert(leaked);
    leaked
}

/// Authenticates and authorizes a request by its route's rule (`rule_of`, which the caller
/// has looked up); puts the `Principal` in the request for the handler. A route without a
/// rule is refused (fail closed).
pub async fn authorize(
    state: &AppState,
    rule: Option<&Rule>,
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
        let audited;
        let mut principal = match crate::tokens::authenticate(state, req.headers()).await {
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
            Ok(admitted) => {
                principal.tier = admitted.tier;
                principal.scope =
                    crate::scope::ClientScope::of(&principal, admitted.customer_access);
                audited = admitted.audit_reads && rule.reads_client_data && principal.is_staff();
            }
            Err(e) => return e.into_response(),
        }
        if let Err(refused) = admits(rule, &principal, req.uri().path()) {
            return refused.into_response();
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
        let read = audited.then(|| crate::data_reads::Pending::of(rule, &req, &principal));
        req.extensions_mut().insert(principal);
        let mut response = next.run(req).await;
        if let Some(read) = read
            && response.status().is_success()
            && let Err(e) = read.record(state).await
        {
            // A read that could not be recorded is not served.
            return e.into_response();
        }
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

/// Whether the rule lets `principal` call `path` (the request's, matched by the rule).
fn admits(rule: &Rule, principal: &Principal, path: &str) -> Result<(), ApiError> {
    match rule.access {
        Access::Public | Access::Tenant => Ok(()),
        Access::Admin if principal.is_admin() => Ok(()),
        Access::Admin => Err(ApiError::Forbidden(format!(
            "{} needs the ADMIN role",
            rule.operation
        ))),
        Access::Member if principal.is_staff() => Ok(()),
        Access::Member => Err(ApiError::Forbidden(format!(
            "{} is for the tenant's staff (ADMIN or MEMBER); a CUSTOMER calls only the portal routes of their customer",
            rule.operation
        ))),
        Access::Portal if principal.is_staff() => Ok(()),
        Access::Portal => {
            let id = rule
                .path
                .split('/')
                .position(|s| s == "{id}")
                .and_then(|i| path.split('/').nth(i));
            match (id, principal.customer_id.as_deref()) {
                (Some(id), Some(own)) if id == own => Ok(()),
                _ => Err(ApiError::NotFound("no such customer".into())),
            }
        }
    }
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
    use serde_json::json;

    #[test]
    fn access_is_read_from_security_and_fails_closed() {
        assert_eq!(access_of(&json!([])), Ok(Access::Public));
        assert_eq!(access_of(&json!([{}])), Ok(Access::Public));
        assert_eq!(access_of(&json!([{"bearer": []}])), Ok(Access::Member));
        assert_eq!(
            access_of(&json!([{"bearer": ["ADMIN"]}])),
            Ok(Access::Admin)
        );
        assert!(access_of(&Value::Null).is_err());
        assert_eq!(
            access_of(&json!([{"bearer": ["CUSTOMER"]}])),
            Ok(Access::Portal)
        );
        assert_eq!(
            access_of(&json!([{"bearer": ["ADMIN", "MEMBER", "CUSTOMER"]}])),
            Ok(Access::Tenant)
        );
        assert!(access_of(&json!([{"bearer": ["OWNER"]}])).is_err());
        assert!(access_of(&json!([{"other": []}])).is_err());
    }

    #[test]
    fn every_rule_is_unique() {
        let doc = crate::app::document();
        let policy = Policy::of(&doc);
        for (i, r) in policy.rules.iter().enumerate() {
            assert!(
                policy.rules[..i]
                    .iter()
                    .all(|o| o.method != r.method || o.path != r.path),
                "{} {} twice",
                r.method,
                r.path
            );
        }
    }
}
