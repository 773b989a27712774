//! The tenant gate: every authenticated request passes the tenant's lifecycle check (a
//! suspended or deleted tenant's tokens are refused with 403) and takes its tier and its
//! `customer_access` and `audit_reads` settings from the tenant aggregate, not from the token.
//!
//! The tenant's state is read from the event store (consistent) and cached briefly. This
//! process's own tenant commands update the cache at once; a change made elsewhere (the
//! operator CLI, another instance) is seen within `ttl`.

use crate::error::ApiError;
use commands::AccessService;
use domain::tenant::{CustomerAccess, Tenant, TenantError, TenantStatus};
use domain::{TenantId, Tier};
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// What the gate needs of a tenant; `None` for a tenant that was never registered (tokens
/// an operator minted with `chronicle token`, which carry their own tier).
type Known = Option<(TenantStatus, Admitted)>;

/// What a request of an active tenant runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    pub tier: Tier,
    pub customer_access: CustomerAccess,
    /// Whether staff reads of client data are recorded.
    pub audit_reads: bool,
}

impl Admitted {
    fn of(t: &Tenant) -> Self {
        Self {
            tier: t.tier,
            customer_access: t.customer_access(),
            audit_reads: t.audit_reads(),
        }
    }
}

pub struct TenantGate {
    ttl: Duration,
    cache: RwLock<HashMap<TenantId, (Instant, Known)>>,
}

/// Bound on cached tenants; past it the cache starts over.
const MAX_CACHED: usize = 100_000;

impl TenantGate {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// What a request of `tenant` runs under, or the 403 that refuses it.
    pub async fn admit(
        &self,
        access: &AccessService,
        tenant: &TenantId,
        token_tier: Tier,
    ) -> Result<Admitted, ApiError> {
        let known = match self.cached(tenant) {
            Some(k) => k,
            None => {
                let known = match access.tenant(tenant).await {
                    Ok((t, _)) => Some((t.status, Admitted::of(&t))),
                    Err(commands::AccessError::Tenant(TenantError::NotFound)) => None,
                    Err(e) => return Err(e.into()),
                };
                self.store(tenant, known);
                known
            }
        };
        match known {
            None => Ok(Admitted {
                tier: token_tier,
                customer_access: CustomerAccess::default(),
                audit_reads: false,
            }),
            Some((TenantStatus::Active, admitted)) => Ok(admitted),
            Some((TenantStatus::Suspended, _)) => Err(ApiError::TenantSuspended),
            Some((TenantStatus::Deleted, _)) => Err(ApiError::TenantDeleted),
        }
    }

    /// Records a tenant's state right after this process changed it.
    pub fn remember(&self, tenant: &TenantId, state: &Tenant) {
        let known = state
            .registered
            .as_ref()
            .map(|_| (state.status, Admitted::of(state)));
        self.store(tenant, known);
    }

    fn cached(&self, tenant: &TenantId) -> Option<Known> {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        cache
            .get(tenant)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, k)| *k)
    }

    fn store(&self, tenant: &TenantId, known: Known) {
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(tenant.clone(), (Instant::now(), known));
    }
}
