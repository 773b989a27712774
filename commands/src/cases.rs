//! Cases on the one pipeline: OpenCase writes the case and the customer's intake (the
//! hourly limit) in one append, for a customer the tenant has; the staff's changes, the
//! delivery worker's outcome and the sync's reconciliation are single-stream commands of
//! the Case aggregate (`CommandHandler::execute`).

use crate::handler::{CommandError, CommandHandler, CommandMeta};
use crate::pipeline::{Command, Tx};
use crate::tenancy::active_tenant;
use domain::case::{Case, CaseCommand, CaseDescription, CaseError, CasePriority, CaseSubject};
use domain::case_intake::{Admit, CaseIntake, TooManyCases};
use domain::customer::Customer;
use domain::tenant::TenantError;
use domain::{Aggregate, EventEnvelope, StreamId, Tier};
use std::sync::Arc;

/// Why a case command was refused.
#[derive(Debug, thiserror::Error)]
pub enum CaseCommandError {
    #[error(transparent)]
    Case(#[from] CaseError),
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error(transparent)]
    TooMany(#[from] TooManyCases),
    /// The customer is unknown to the tenant (never synced, or deleted in Salesforce).
    #[error("no such customer")]
    NoCustomer,
}

impl From<domain::customer::CustomerError> for CaseCommandError {
    fn from(e: domain::customer::CustomerError) -> Self {
        match e {
            domain::customer::CustomerError::NotFound => Self::NoCustomer,
        }
    }
}

impl From<std::convert::Infallible> for CaseCommandError {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}

fn lift<E: std::error::Error + 'static>(e: CommandError<E>) -> CommandError<CaseCommandError>
where
    CaseCommandError: From<E>,
{
    e.map_rejected(CaseCommandError::from)
}

fn rejected(e: impl Into<CaseCommandError>) -> CommandError<CaseCommandError> {
    CommandError::Rejected(e.into())
}

pub fn case_stream(id: &str) -> StreamId {
    StreamId::for_aggregate(Case::KIND, id)
}

pub fn intake_stream(customer_id: &str) -> StreamId {
    StreamId::for_aggregate(CaseIntake::KIND, customer_id)
}

/// OpenCase: a NEW case of a customer the tenant has, if the customer has opened fewer
/// than the tier's `cases_per_customer_per_hour` in the last hour.
pub struct OpenCase {
    pub case_id: String,
    pub customer_id: String,
    /// The caller's tier, for a tenant that was never signed up.
    pub tier: Tier,
    pub subject: CaseSubject,
    pub description: CaseDescription,
    pub priority: CasePriority,
}

impl Command for OpenCase {
    type Output = Case;
    type Error = CaseCommandError;
    const NAME: &'static str = "case";

    async fn decide(&self, tx: &mut Tx<'_>) -> Result<Case, CommandError<CaseCommandError>> {
        let tenant = active_tenant::<CaseCommandError>(tx, self.tier).await?;
        let customer_stream = crate::customers::customer_stream(&self.customer_id);
        let (customer, _) = tx.load::<Customer>(&customer_stream).await.map_err(lift)?;
        if customer.customer_id.is_none() || customer.deleted {
            return Err(rejected(CaseCommandError::NoCustomer));
        }
        let intake = intake_stream(&self.customer_id);
        let (admitted, _) = tx.load_tail::<CaseIntake>(&intake).await.map_err(lift)?;
        let admit = Admit {
            case_id: self.case_id.clone(),
            per_hour: tenant.limits().cases_per_customer_per_hour,
        };
        let intake_events = admitted.decide(&admit, tx.ctx()).map_err(rejected)?;
        let mut case = Case::default();
        let events = case
            .decide(
                &CaseCommand::Open {
                    case_id: self.case_id.clone(),
                    customer_id: self.customer_id.clone(),
                    subject: self.subject.clone(),
                    description: self.description.clone(),
                    priority: self.priority,
                },
                tx.ctx(),
            )
            .map_err(rejected)?;
        tx.write::<Case>(&case_stream(&self.case_id), &events);
        tx.write::<CaseIntake>(&intake, &intake_events);
        for e in &events {
            case.apply(e);
        }
        Ok(case)
    }

    async fn replayed(
        &self,
        handler: &CommandHandler,
        meta: &CommandMeta,
        events: &[Arc<EventEnvelope>],
    ) -> Result<Case, CommandError<CaseCommandError>> {
        handler
            .replayed_of_kind::<Case>(meta, events)
            .await
            .map_err(lift)
    }
}
