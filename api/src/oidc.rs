//! External identity (AWS mode, Cognito): RS256 tokens verified against the issuer's JWKS
//! (`<issuer>/.well-known/jwks.json`), fetched over HTTP, cached, and fetched again when a
//! token names an unknown `kid` (at most once per `REFETCH_EVERY`). Cognito's claim names:
//! `custom:tenant_id`, `cognito:groups` (`admins` or `ADMIN` means ADMIN), `token_use`.

use crate::error::ApiError;
use crate::tokens::Principal;
use domain::{Actor, Role, TenantId, Tier, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::RwLock;

const REFETCH_EVERY: Duration = Duration::from_secs(10);

pub struct Oidc {
    issuer: String,
    audience: String,
    http: reqwest::Client,
    keys: RwLock<HashMap<String, DecodingKey>>,
    last_fetch: Mutex<Option<Instant>>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kid: Option<String>,
    kty: String,
    n: Option<String>,
    e: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(rename = "custom:tenant_id")]
    custom_tenant_id: Option<String>,
    tenant_id: Option<String>,
    #[serde(rename = "custom:tenant_tier")]
    custom_tier: Option<String>,
    /// A portal user's customer (with the `customers` group).
    #[serde(rename = "custom:customer_id")]
    custom_customer_id: Option<String>,
    #[serde(rename = "cognito:groups", default)]
    groups: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    token_use: Option<String>,
    aud: Option<serde_json::Value>,
    client_id: Option<String>,
}

fn unauthorized(detail: &str) -> ApiError {
    ApiError::Unauthenticated {
        detail: detail.to_owned(),
        challenge: format!(
            r#"Bearer realm="chronicle", error="invalid_token", error_description="{}""#,
            detail.replace('"', "'")
        ),
    }
}

impl Oidc {
    pub fn new(issuer: &str, audience: &str) -> Self {
        Self {
            issuer: issuer.trim_end_matches('/').to_owned(),
            audience: audience.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            keys: RwLock::default(),
            last_fetch: Mutex::new(None),
        }
    }

    /// Fetches the JWKS unless it was fetched within `REFETCH_EVERY`.
    async fn refresh(&self) -> Result<(), ApiError> {
        {
            let mut last = self
                .last_fetch
                .lock()
                .map_err(|_| ApiError::internal("jwks lock"))?;
            if last.is_some_and(|t| t.elapsed() < REFETCH_EVERY) {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        let url = format!("{}/.well-known/jwks.json", self.issuer);
        let jwks: Jwks = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| ApiError::Unavailable(format!("cannot fetch the issuer's keys: {e}")))?
            .json()
            .await
            .map_err(|e| ApiError::Unavailable(format!("the issuer's keys are unreadable: {e}")))?;
        let mut keys = HashMap::new();
        for k in jwks.keys.into_iter().filter(|k| k.kty == "RSA") {
            if let (Some(kid), Some(n), Some(e)) = (k.kid, k.n, k.e)
                && let Ok(key) = DecodingKey::from_rsa_components(&n, &e)
            {
                keys.insert(kid, key);
            }
        }
        tracing::info!(keys = keys.len(), %url, "fetched the issuer's signing keys");
        *self.keys.write().await = keys;
        Ok(())
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, ApiError> {
        if let Some(k) = self.keys.read().await.get(kid) {
            return Ok(k.clone());
        }
        self.refresh().await?;
        self.keys
            .read()
            .await
            .get(kid)
            .cloned()
            .ok_or_else(|| unauthorized("the token's signing key is unknown"))
    }

    /// The caller an RS256 token of this issuer stands for.
    pub async fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| unauthorized("the token is not a JWT"))?;
        if header.alg != Algorithm::RS256 {
            return Err(unauthorized("the token is not RS256"));
        }
        let kid = header
            .kid
            .ok_or_else(|| unauthorized("the token names no key (kid)"))?;
        let key = self.key(&kid).await?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        // Cognito access tokens carry client_id instead of aud; both are checked below.
        validation.validate_aud = false;
        validation.leeway = 5;
        let c = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| unauthorized(&format!("the token is not valid: {e}")))?
            .claims;
        let audience_ok = match &c.aud {
            Some(serde_json::Value::String(a)) => *a == self.audience,
            Some(serde_json::Value::Array(all)) => {
                all.iter().any(|a| a.as_str() == Some(&self.audience))
            }
            _ => c.client_id.as_deref() == Some(&self.audience),
        };
        if !audience_ok {
            return Err(unauthorized("the token is for another audience"));
        }
        if !matches!(c.token_use.as_deref(), None | Some("id" | "access")) {
            return Err(unauthorized(
                "the token is neither an id nor an access token",
            ));
        }
        let tenant = c
            .custom_tenant_id
            .or(c.tenant_id)
            .ok_or_else(|| ApiError::Forbidden("the token names no tenant".into()))?;
        let tenant_id =
            TenantId::parse(tenant).map_err(|_| unauthorized("the token's tenant is not valid"))?;
        let user_id =
            UserId::parse(c.sub).map_err(|_| unauthorized("the token's sub is not valid"))?;
        let in_group = |names: [&str; 2]| {
            c.groups
                .iter()
                .chain(&c.roles)
                .any(|g| names.contains(&g.as_str()))
        };
        let role = if in_group(["owners", "OWNER"]) {
            Role::Owner
        } else if in_group(["admins", "ADMIN"]) {
            Role::Admin
        } else if in_group(["customers", "CUSTOMER"]) {
            Role::Customer
        } else {
            Role::Member
        };
        let customer_id = crate::tokens::customer_of(role, c.custom_customer_id)?;
        Ok(Principal {
            tenant_id,
            actor: Actor { user_id, role },
            customer_id,
            tier: c
                .custom_tier
                .as_deref()
                .and_then(Tier::parse)
                .unwrap_or_default(),
            scope: crate::scope::ClientScope::All,
        })
    }
}
