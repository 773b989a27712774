//! Per-tenant rate limits by tier (governor's keyed GCRA limiter): one limiter per tier,
//! keyed by tenant, so a busy tenant never slows another. Answers carry `RateLimit-Limit`,
//! `RateLimit-Remaining` and `RateLimit-Reset`; a refused request is 429 with `Retry-After`.

use domain::{TenantId, Tier};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;

type Limiter = DefaultKeyedRateLimiter<TenantId, StateInformationMiddleware>;

pub struct RateLimits {
    tiers: Vec<(Tier, u32, Limiter)>,
    clock: DefaultClock,
}

/// Where a tenant stands after a request was let through.
#[derive(Debug, Clone, Copy)]
pub struct Allowed {
    pub limit: u32,
    pub remaining: u32,
}

/// A refused request: how long until the next is allowed.
#[derive(Debug, Clone, Copy)]
pub struct Refused {
    pub limit: u32,
    pub retry_after_secs: u64,
}

/// The default: requests per second per tenant, by tier; bursts of twice that.
pub const DEFAULT_SPEC: &str = "basic=100,premium=500,enterprise=2000";

impl RateLimits {
    /// Parses `basic=100,premium=500,enterprise=2000` (requests per second per tenant;
    /// a burst of twice that), or `off`.
    pub fn parse(spec: &str) -> Result<Option<Self>, String> {
        if spec.trim().eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let mut tiers = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (tier, rate) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not tier=rate"))?;
            let tier = Tier::parse(tier.trim())
                .ok_or_else(|| format!("{tier:?} is not basic, premium or enterprise"))?;
            let rate: u32 = rate
                .trim()
                .parse()
                .map_err(|_| format!("{rate:?} is not a number of requests per second"))?;
            let per_second = NonZeroU32::new(rate).ok_or("a rate must be positive")?;
            let burst = NonZeroU32::new(rate.saturating_mul(2)).unwrap_or(per_second);
            let limiter = RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))
                .with_middleware::<StateInformationMiddleware>();
            tiers.push((tier, rate, limiter));
        }
        for tier in [Tier::Basic, Tier::Premium, Tier::Enterprise] {
            if !tiers.iter().any(|(t, _, _)| *t == tier) {
                return Err(format!("no rate for the {} tier", tier.as_str()));
            }
        }
        Ok(Some(Self {
            tiers,
            clock: DefaultClock::default(),
        }))
    }

    /// Counts one request of `tenant` against its tier's limit.
    pub fn check(&self, tenant: &TenantId, tier: Tier) -> Result<Allowed, Refused> {
        let Some((_, limit, limiter)) = self.tiers.iter().find(|(t, _, _)| *t == tier) else {
            return Ok(Allowed {
                limit: 0,
                remaining: 0,
            });
        };
        match limiter.check_key(tenant) {
            Ok(state) => Ok(Allowed {
                limit: *limit,
                remaining: state.remaining_burst_capacity(),
            }),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(Refused {
                    limit: *limit,
                    retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
                })
            }
        }
    }

    /// Drops the state of tenants that are back to a full burst, to bound memory.
    pub fn retain_recent(&self) {
        for (_, _, limiter) in &self.tiers {
            limiter.retain_recent();
        }
    }
}

/// Sign-in attempts per tenant and email address: a burst of `SIGNIN_BURST`, then one more
/// every `SIGNIN_REFILL`, whether the address exists or not (the answer must not tell).
/// Guessing passwords for one account gets slow; other accounts are not affected.
pub struct SignInThrottle {
    limiter: governor::DefaultKeyedRateLimiter<(TenantId, String)>,
    clock: DefaultClock,
}

pub const SIGNIN_BURST: u32 = 10;
pub const SIGNIN_REFILL: std::time::Duration = std::time::Duration::from_secs(6);

impl Default for SignInThrottle {
    fn default() -> Self {
        let burst = NonZeroU32::new(SIGNIN_BURST).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(SIGNIN_REFILL)
            .unwrap_or_else(|| Quota::per_minute(burst))
            .allow_burst(burst);
        Self {
            limiter: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
        }
    }
}

impl SignInThrottle {
    /// Counts one attempt; the refusal says how long to wait.
    pub fn check(&self, tenant: &TenantId, email: &str) -> Result<(), Refused> {
        self.limiter
            .check_key(&(tenant.clone(), email.to_owned()))
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(self.clock.now());
                Refused {
                    limit: SIGNIN_BURST,
                    retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
                }
            })
    }

    /// Drops the state of keys that are back to a full burst, to bound memory.
    pub fn retain_recent(&self) {
        self.limiter.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_past_its_burst_is_refused_and_others_are_not() {
        let limits = RateLimits::parse("basic=1,premium=5,enterprise=10")
            .unwrap()
            .unwrap();
        let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
        assert!(limits.check(&a, Tier::Basic).is_ok());
        assert!(limits.check(&a, Tier::Basic).is_ok());
        let refused = limits.check(&a, Tier::Basic).unwrap_err();
        assert!(refused.retry_after_secs >= 1);
        assert!(
            limits.check(&b, Tier::Basic).is_ok(),
            "another tenant has its own budget"
        );
        assert!(
            limits.check(&a, Tier::Premium).is_ok(),
            "tiers are separate limiters"
        );
    }

    #[test]
    fn specs_are_checked() {
        assert!(RateLimits::parse("off").unwrap().is_none());
        assert!(
            RateLimits::parse("basic=1").is_err(),
            "every tier needs a rate"
        );
        assert!(RateLimits::parse("basic=0,premium=1,enterprise=1").is_err());
        assert!(RateLimits::parse("gold=1,basic=1,premium=1,enterprise=1").is_err());
    }
}
