//! Embedded-mode authentication: HS256 JWTs with `sub`, `tenant_id`, `roles`, `exp` and
//! `iss`. The tenant and role come from the verified token only, never from the URL or
//! the body.

use crate::app::AppState;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use domain::{Actor, Role, TenantId, Tier, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const ISSUER: &str = "chronicle";
/// Shortest accepted HMAC secret, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;
const SECRET_FILE: &str = "jwt-secret";

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub tenant_id: String,
    pub roles: Vec<String>,
    pub exp: u64,
    pub iat: u64,
    pub iss: String,
    /// The tenant's plan (`basic` when absent); sets its rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_tier: Option<String>,
    /// A CUSTOMER's customer: the only one whose portal routes the token opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant_id: TenantId,
    pub actor: Actor,
    /// A CUSTOMER's customer, from the verified token; `None` for staff.
    pub customer_id: Option<String>,
    pub tier: Tier,
    /// Which of the tenant's customers the caller sees: set by `policy::authorize` from
    /// the tenant's `customer_access`.
    pub scope: crate::scope::ClientScope,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.actor.role.is_admin()
    }

    /// ADMIN or MEMBER: the tenant's own people.
    pub fn is_staff(&self) -> bool {
        self.actor.role.is_staff()
    }
}

/// The customer a token's role binds it to: a CUSTOMER token must name one, and a staff
/// token's is ignored.
pub(crate) fn customer_of(role: Role, claimed: Option<String>) -> Result<Option<String>, ApiError> {
    match (role, claimed) {
        (Role::Customer, Some(id)) if !id.is_empty() => Ok(Some(id)),
        (Role::Customer, _) => Err(ApiError::Forbidden(
            "the token carries the CUSTOMER role but names no customer".into(),
        )),
        _ => Ok(None),
    }
}

/// Signs and verifies embedded-mode tokens.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    verified: Arc<VerifiedTokens>,
}

/// Tokens this process has verified, with the caller each stands for and its expiry. A
/// client sends the same token on every request until it expires; decoding it and checking
/// its HMAC again each time is most of the cost of authenticating. Keyed by the whole token,
/// so only a byte-identical copy of a verified token is ever found here.
#[derive(Default)]
struct VerifiedTokens {
    tokens: RwLock<HashMap<String, (Principal, u64)>>,
}

/// Most tokens remembered; past that the cache starts over.
const MAX_VERIFIED: usize = 10_000;

impl VerifiedTokens {
    fn get(&self, token: &str, now: u64) -> Option<Principal> {
        let tokens = self.tokens.read().unwrap_or_else(PoisonError::into_inner);
        tokens
            .get(token)
            .filter(|(_, exp)| now <= *exp)
            .map(|(p, _)| p.clone())
    }

    fn put(&self, token: &str, principal: &Principal, exp: u64) {
        let mut tokens = self.tokens.write().unwrap_or_else(PoisonError::into_inner);
        if tokens.len() >= MAX_VERIFIED {
            tokens.clear();
        }
        tokens.insert(token.to_owned(), (principal.clone(), exp));
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TokenKeys {
    pub fn from_secret(secret: &[u8]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            secret.len() >= MIN_SECRET_BYTES,
            "the JWT secret must be at least {MIN_SECRET_BYTES} bytes"
        );
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 5;
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            verified: Arc::default(),
        })
    }

    /// A signed token for `user` of `tenant` with `role`, valid for `ttl`.
    pub fn mint(
        &self,
        tenant: &TenantId,
        user: &UserId,
        role: Role,
        ttl: Duration,
    ) -> anyhow::Result<String> {
        self.mint_with_tier(tenant, user, role, Tier::Basic, ttl)
    }

    /// A signed token that also names the tenant's tier.
    pub fn mint_with_tier(
        &self,
        tenant: &TenantId,
        user: &UserId,
        role: Role,
        tier: Tier,
        ttl: Duration,
    ) -> anyhow::Result<String> {
        self.mint_for(tenant, user, (role, None), tier, ttl)
    }

    /// A signed token for a user of `role`, and (a CUSTOMER) the customer they are a
    /// contact of.
    pub fn mint_for(
        &self,
        tenant: &TenantId,
        user: &UserId,
        (role, customer_id): (Role, Option<&str>),
        tier: Tier,
        ttl: Duration,
    ) -> anyhow::Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let claims = Claims {
            sub: user.to_string(),
            tenant_id: tenant.to_string(),
            roles: vec![role.as_str().to_owned()],
            exp: now + ttl.as_secs(),
            iat: now,
            iss: ISSUER.to_owned(),
            tenant_tier: Some(tier.as_str().to_owned()),
            customer_id: customer_id.map(str::to_owned),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// The caller a bearer token stands for.
    pub fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        // Accepted up to the same leeway past `exp` as a full check would.
        let now = unix_now().saturating_sub(self.validation.leeway);
        if let Some(p) = self.verified.get(token, now) {
            return Ok(p);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| invalid_token(&format!("the token is not valid: {e}")))?;
        let c = data.claims;
        let exp = c.exp;
        let tenant_id = TenantId::parse(c.tenant_id)
            .map_err(|_| invalid_token("the token's tenant_id is not valid"))?;
        let user_id =
            UserId::parse(c.sub).map_err(|_| invalid_token("the token's sub is not valid"))?;
        let role = if c.roles.iter().any(|r| r == "OWNER") {
            Role::Owner
        } else if c.roles.iter().any(|r| r == "ADMIN") {
            Role::Admin
        } else if c.roles.iter().any(|r| r == "MEMBER") {
            Role::Member
        } else if c.roles.iter().any(|r| r == "CUSTOMER") {
            Role::Customer
        } else {
            return Err(ApiError::Forbidden(
                "the token carries none of the OWNER, ADMIN, MEMBER and CUSTOMER roles".into(),
            ));
        };
        let customer_id = customer_of(role, c.customer_id)?;
        let tier = c
            .tenant_tier
            .as_deref()
            .and_then(Tier::parse)
            .unwrap_or_default();
        let principal = Principal {
            tenant_id,
            actor: Actor { user_id, role },
            customer_id,
            tier,
            scope: crate::scope::ClientScope::All,
        };
        self.verified.put(token, &principal, exp);
        Ok(principal)
    }
}

/// The issuer of download links: never that of a bearer token, so neither opens as the
/// other.
pub const DOWNLOAD_ISSUER: &str = "chronicle-download";

/// What a signed download link (`/downloads/<token>`) carries: one document of one
/// customer, for whom, until when, and its id (`jti`, redeemed once).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DownloadClaims {
    pub iss: String,
    /// The user the link was made for, and their role.
    pub sub: String,
    pub role: String,
    pub tenant_id: String,
    pub customer_id: String,
    pub document_id: String,
    /// The ContentVersion whose bytes the link serves.
    pub version_id: String,
    pub jti: String,
    pub exp: u64,
    pub iat: u64,
}

impl TokenKeys {
    /// A link's token for `claims` (its `iss`, `iat` and `exp` set here), valid for `ttl`.
    pub fn sign_download(
        &self,
        mut claims: DownloadClaims,
        ttl: Duration,
    ) -> anyhow::Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        claims.iss = DOWNLOAD_ISSUER.to_owned();
        claims.iat = now;
        claims.exp = now + ttl.as_secs();
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// The claims of a link this server signed and that has not expired (no leeway); an
    /// altered, expired or foreign one is 403.
    pub fn verify_download(&self, token: &str) -> Result<DownloadClaims, ApiError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[DOWNLOAD_ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub", "jti"]);
        validation.leeway = 0;
        jsonwebtoken::decode::<DownloadClaims>(token, &self.decoding, &validation)
            .map(|d| d.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                let why = match e.kind() {
                    ErrorKind::ExpiredSignature => "the download link has expired",
                    _ => "the download link is not valid",
                };
                ApiError::Forbidden(why.into())
            })
    }
}

fn invalid_token(detail: &str) -> ApiError {
    let description = detail.replace('"', "'");
    ApiError::Unauthenticated {
        detail: detail.to_owned(),
        challenge: format!(
            r#"Bearer realm="chronicle", error="invalid_token", error_description="{description}""#
        ),
    }
}

/// The HMAC secret: `explicit` if given, else the one kept in `data_dir`, created with mode
/// 0600 on first use.
pub fn load_or_create_secret(explicit: Option<&str>, data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    load_or_create_key(explicit, data_dir, SECRET_FILE)
}

/// A server key: `explicit` if given, else the one kept in `data_dir/file`, 32 random bytes
/// (hex) created with mode 0600 on first use.
pub fn load_or_create_key(
    explicit: Option<&str>,
    data_dir: &Path,
    file: &str,
) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = explicit {
        return Ok(secret.as_bytes().to_vec());
    }
    let path = data_dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(s) => return Ok(s.trim().as_bytes().to_vec()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(anyhow::anyhow!("cannot read {}: {e}", path.display()));
        }
        Err(_) => {}
    }
    std::fs::create_dir_all(data_dir)?;
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => {
            file.write_all(secret.as_bytes())?;
            file.sync_all()?;
            Ok(secret.into_bytes())
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(std::fs::read_to_string(&path)?.trim().as_bytes().to_vec())
        }
        Err(e) => Err(anyhow::anyhow!("cannot create {}: {e}", path.display())),
    }
}

/// The caller of a request from its `Authorization: Bearer` header.
pub async fn authenticate(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<Principal, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthenticated {
            detail: "an Authorization: Bearer token is required".into(),
            challenge: r#"Bearer realm="chronicle""#.into(),
        })?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .ok_or_else(|| invalid_token("the Authorization header is not a Bearer token"))?;
    let token = token.trim();
    let external = state
        .oidc
        .as_ref()
        .filter(|_| jsonwebtoken::decode_header(token).is_ok_and(|h| h.alg == Algorithm::RS256));
    let principal = match external {
        Some(oidc) => oidc.verify(token).await?,
        None => state.keys.verify(token)?,
    };
    record_caller(&tracing::Span::current(), &principal);
    Ok(principal)
}

/// Puts the caller's tenant and user on the request span, both in one record: a JSON log
/// format re-parses a span's fields on every record.
fn record_caller(span: &tracing::Span, principal: &Principal) {
    let Some(meta) = span.metadata() else {
        return;
    };
    let fields = meta.fields();
    let (Some(tenant), Some(user)) = (fields.field("tenant_id"), fields.field("user_id")) else {
        return;
    };
    let (tenant_id, user_id) = (
        principal.tenant_id.as_str(),
        principal.actor.user_id.as_str(),
    );
    span.record_all(&fields.value_set(&[
        (&tenant, Some(&tenant_id as &dyn tracing::Value)),
        (&user, Some(&user_id as &dyn tracing::Value)),
    ]));
}

/// Handlers take the caller that `policy::authorize` authenticated.
impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Principal::from_extensions(&parts.extensions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::from_secret(&[7u8; 32]).unwrap()
    }

    #[test]
    fn a_remembered_token_still_expires_and_a_tampered_copy_is_not_remembered() {
        let keys = keys();
        let token = keys
            .mint(
                &TenantId::parse("acme").unwrap(),
                &UserId::parse("alice").unwrap(),
                Role::Member,
                Duration::from_secs(60),
            )
            .unwrap();
        assert!(keys.verify(&token).is_ok());
        let exp = keys.verified.tokens.read().unwrap()[&token].1;
        assert!(exp >= unix_now() + 59);
        assert!(keys.verified.get(&token, exp).is_some());
        assert!(keys.verified.get(&token, exp + 1).is_none(), "expired");
        // Same header and claims, another signature.
        let mut forged = token.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == 'A' { 'B' } else { 'A' });
        assert!(keys.verify(&forged).is_err());
        assert!(keys.verified.get(&forged, 0).is_none());
    }

    #[test]
    fn a_minted_token_verifies_to_its_principal() {
        let t = keys()
            .mint(
                &TenantId::parse("acme").unwrap(),
                &UserId::parse("alice").unwrap(),
                Role::Admin,
                Duration::from_secs(60),
            )
            .unwrap();
        let p = keys().verify(&t).unwrap();
        assert_eq!(p.tenant_id.as_str(), "acme");
        assert_eq!(p.actor.user_id.as_str(), "alice");
        assert!(p.is_admin());
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let other = TokenKeys::from_secret(&[8u8; 32]).unwrap();
        let t = other
            .mint(
                &TenantId::parse("acme").unwrap(),
                &UserId::parse("alice").unwrap(),
                Role::Admin,
                Duration::from_secs(60),
            )
            .unwrap();
        assert!(matches!(
            keys().verify(&t),
            Err(ApiError::Unauthenticated { .. })
        ));
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(TokenKeys::from_secret(b"short").is_err());
    }

    #[test]
    fn the_generated_secret_is_kept_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_secret(None, dir.path()).unwrap();
        let b = load_or_create_secret(None, dir.path()).unwrap();
        assert_eq!(a, b);
        assert!(a.len() >= MIN_SECRET_BYTES);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
