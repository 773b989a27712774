//! The integration registries on the one pipeline: a connection command enrolls its
//! tenant (or withdraws it) in the integration's registry, a second append on the system
//! tenant's stream (idempotent, so a retry of the whole command repeats it harmlessly),
//! and a scheduler lists the enrolled tenants. A tenant enrolled without a connection (its
//! connection command failed after the enrollment) is skipped by the scheduler.

use crate::handler::{CommandError, CommandHandler, CommandMeta};
use domain::registry::{RegistryCommand, SYSTEM_TENANT, TenantRegistry};
use domain::{Aggregate, StreamId, TenantId};
use std::convert::Infallible;

/// An integration with a registry: its name is the registry stream's instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integration {
    Salesforce,
    Sftp,
}

impl Integration {
    pub fn stream(self) -> StreamId {
        let name = match self {
            Self::Salesforce => "salesforce",
            Self::Sftp => "sftp",
        };
        StreamId::for_aggregate(TenantRegistry::KIND, name)
    }
}

/// The system tenant, whose streams belong to no tenant.
pub fn system_tenant() -> TenantId {
    // A constant of the id alphabet (checked by a domain test).
    TenantId::parse(SYSTEM_TENANT).unwrap_or_else(|_| unreachable!("a valid tenant id"))
}

/// Enrolls `meta`'s tenant in `integration`'s registry (`enrolled`) or withdraws it.
pub async fn enroll(
    handler: &CommandHandler,
    meta: &CommandMeta,
    integration: Integration,
    enrolled: bool,
) -> Result<(), CommandError<Infallible>> {
    let tenant = meta.tenant_id.clone();
    let command = if enrolled {
        RegistryCommand::Enroll(tenant)
    } else {
        RegistryCommand::Withdraw(tenant)
    };
    let system = CommandMeta::of(system_tenant(), meta.actor.clone(), meta.ids(), None);
    handler
        .execute::<TenantRegistry>(&system, &integration.stream(), &command, None)
        .await?;
    Ok(())
}

/// The tenants enrolled in `integration`.
pub async fn enrolled(
    handler: &CommandHandler,
    integration: Integration,
) -> Result<Vec<TenantId>, CommandError<Infallible>> {
    let (r, _) = handler
        .state::<TenantRegistry>(&system_tenant(), &integration.stream())
        .await?;
    Ok(r.tenants.into_iter().collect())
}
