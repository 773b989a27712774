//! AssignAgent on the one pipeline: an ADMIN makes one of the tenant's active staff users
//! the agent of a customer (seed 002's "clients assigned to them"), or leaves it with none.
//! The customer's stream records it; the user's stream is read to check who the agent is.

use crate::access::user_stream;
use crate::customers::customer_stream;
use crate::handler::CommandError;
use crate::pipeline::{Command, Tx};
use domain::Aggregate;
use domain::UserId;
use domain::customer::{Customer, CustomerCommand, CustomerError};
use domain::user::{User, UserError};

/// Why an assignment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Customer(#[from] CustomerError),
    #[error(transparent)]
    User(#[from] UserError),
    /// The user is unknown to the tenant, disabled, or a CUSTOMER (who serves no one).
    #[error("user {0} is not an active staff user of this tenant")]
    NotStaff(UserId),
}

pub struct AssignAgent {
    pub customer_id: String,
    pub agent: Option<UserId>,
}

impl Command for AssignAgent {
    /// The customer after, and its version.
    type Output = (Customer, u64);
    type Error = AgentError;
    const NAME: &'static str = "customer";

    async fn decide(&self, tx: &mut Tx<'_>) -> Result<(Customer, u64), CommandError<AgentError>> {
        let stream = customer_stream(&self.customer_id);
        let (mut customer, version) = tx
            .load::<Customer>(&stream)
            .await
            .map_err(|e| e.map_rejected(AgentError::from))?;
        if !customer.is_live() {
            return Err(CommandError::Rejected(CustomerError::NotFound.into()));
        }
        if let Some(agent) = &self.agent {
            let (user, _) = tx
                .load::<User>(&user_stream(agent))
                .await
                .map_err(|e| e.map_rejected(AgentError::from))?;
            let staff = user.registered.is_some()
                && !user.disabled
                && user.role.is_some_and(domain::Role::is_staff);
            if !staff {
                return Err(CommandError::Rejected(AgentError::NotStaff(agent.clone())));
            }
        }
        let events = customer
            .decide(
                &CustomerCommand::AssignAgent {
                    agent: self.agent.clone(),
                },
                tx.ctx(),
            )
            .map_err(|e| CommandError::Rejected(e.into()))?;
        tx.write::<Customer>(&stream, &events);
        for e in &events {
            customer.apply(e);
        }
        Ok((customer, version + events.len() as u64))
    }
}
