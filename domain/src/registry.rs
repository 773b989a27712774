//! Which tenants use an integration (Salesforce, SFTP): the list a scheduler walks to
//! start each tenant's periodic run. One stream per integration (`registry-<name>`), in
//! the system tenant's streams, never published.

use crate::aggregate::{Aggregate, CommandContext};
use crate::ids::TenantId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The tenant whose streams hold what belongs to no tenant (the registries).
pub const SYSTEM_TENANT: &str = "system:chronicle";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryChanged {
    pub tenant_id: TenantId,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

crate::domain_events!(RegistryEvent, "integration registry" {
    Enrolled(RegistryChanged) = "IntegrationTenantEnrolled",
    Withdrawn(RegistryChanged) = "IntegrationTenantWithdrawn",
});

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryCommand {
    Enroll(TenantId),
    Withdraw(TenantId),
}

/// The tenants with a connection to one integration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantRegistry {
    pub tenants: BTreeSet<TenantId>,
}

impl Aggregate for TenantRegistry {
    const KIND: &'static str = "registry";
    type Command = RegistryCommand;
    type Event = RegistryEvent;
    type Error = std::convert::Infallible;

    /// Idempotent: enrolling an enrolled tenant (or withdrawing one that is not) writes
    /// nothing.
    fn decide(
        &self,
        c: &RegistryCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<RegistryEvent>, Self::Error> {
        let changed = |t: &TenantId| RegistryChanged {
            tenant_id: t.clone(),
            at: ctx.now,
        };
        Ok(match c {
            RegistryCommand::Enroll(t) if !self.tenants.contains(t) => {
                vec![RegistryEvent::Enrolled(changed(t))]
            }
            RegistryCommand::Withdraw(t) if self.tenants.contains(t) => {
                vec![RegistryEvent::Withdrawn(changed(t))]
            }
            _ => vec![],
        })
    }

    fn apply(&mut self, e: &RegistryEvent) {
        match e {
            RegistryEvent::Enrolled(r) => {
                self.tenants.insert(r.tenant_id.clone());
            }
            RegistryEvent::Withdrawn(r) => {
                self.tenants.remove(&r.tenant_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrolling_is_idempotent() {
        let ctx = CommandContext {
            actor: crate::aggregate::Actor {
                user_id: crate::ids::UserId::parse("admin").unwrap(),
                role: crate::aggregate::Role::Admin,
            },
            now: Utc::now(),
        };
        let t = TenantId::parse("acme").unwrap();
        let mut r = TenantRegistry::default();
        let events = r.decide(&RegistryCommand::Enroll(t.clone()), &ctx).unwrap();
        assert_eq!(events.len(), 1);
        r.apply(&events[0]);
        assert!(
            r.decide(&RegistryCommand::Enroll(t.clone()), &ctx)
                .unwrap()
                .is_empty()
        );
        let events = r
            .decide(&RegistryCommand::Withdraw(t.clone()), &ctx)
            .unwrap();
        r.apply(&events[0]);
        assert!(r.tenants.is_empty());
        assert!(
            r.decide(&RegistryCommand::Withdraw(t), &ctx)
                .unwrap()
                .is_empty()
        );
        assert!(TenantId::parse(SYSTEM_TENANT).is_ok());
    }
}
