//! The tenant as commands of other aggregates read it: for its tier, currency and status.

use crate::handler::CommandError;
use crate::pipeline::Tx;
use domain::tenant::{Tenant, TenantError};
use domain::{Aggregate, StreamId, Tier};

/// The tenant, read (not written). A suspended or deleted one refuses the command. A tenant
/// never signed up (an operator's token) has no lifecycle; its tier is the caller's.
pub(crate) async fn active_tenant<E>(
    tx: &mut Tx<'_>,
    callers_tier: Tier,
) -> Result<Tenant, CommandError<E>>
where
    E: std::error::Error + From<TenantError> + 'static,
{
    let stream = StreamId::for_aggregate(Tenant::KIND, &tx.meta().tenant_id);
    let (mut t, _) = tx
        .load::<Tenant>(&stream)
        .await
        .map_err(|e| e.map_rejected(E::from))?;
    if t.registered.is_some() {
        t.check_active()
            .map_err(|e| CommandError::Rejected(E::from(e)))?;
    } else {
        t.tier = callers_tier;
    }
    Ok(t)
}
