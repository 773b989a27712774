//! The case delivery worker: puts each case into the tenant's Salesforce org as an upsert
//! on the connection's External ID field (Chronicle's case id), so an attempt retried
//! after a timeout updates the Case the first one made instead of making a second. A case
//! opened, or changed by staff in Chronicle, is sent as it then stands; a change read back
//! from Salesforce is not sent back.
//!
//! A transient failure (5xx, a timeout, the org's API limit) is tried again with backoff,
//! a few times in one go and then again later (the feeding's redelivery: the log tail's
//! retry in process, the SQS queue's on AWS), so delivery catches up once Salesforce
//! answers again. A refusal no retry can fix (400: a validation rule, a missing field)
//! ends the delivery with CaseDeliveryFailed and its reason; so does a tenant without a
//! connection.

use crate::customers::{CaseRecord, CrmError, CrmSource, Org, connection};
use crate::handler::{CommandError, CommandHandler, CommandMeta, RequestIds};
use crate::worker::{EventWorker, RetryPolicy, WorkFailure, failure};
use domain::case::{Case, CaseCommand, CaseError, Delivery};
use domain::{Actor, EventEnvelope, Role, TenantId, UserId};
use std::sync::Arc;

/// The actor of the worker's events.
pub const DELIVERER: &str = "system:case-delivery";

/// The events that (re)send a case.
const SENT_ON: &[&str] = &["CaseOpened", "CaseUpdated"];

pub struct CaseDeliveryWorker {
    handler: CommandHandler,
    crm: Arc<dyn CrmSource>,
    policy: RetryPolicy,
    actor: Actor,
}

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// Salesforce has it under this Id.
    Yes(String),
    /// It never will, for this reason.
    Failed(String),
}

impl CaseDeliveryWorker {
    pub fn new(
        handler: CommandHandler,
        crm: Arc<dyn CrmSource>,
        policy: RetryPolicy,
    ) -> Result<Self, domain::ValidationError> {
        Ok(Self {
            handler,
            crm,
            policy,
            actor: Actor {
                user_id: UserId::parse(DELIVERER)?,
                role: Role::Admin,
            },
        })
    }

    async fn mark(
        &self,
        tenant: &TenantId,
        case_id: &str,
        cause: RequestIds,
        command: CaseCommand,
    ) -> Result<(), CommandError<CaseError>> {
        let meta = CommandMeta::of(tenant.clone(), self.actor.clone(), cause.next(), None);
        self.handler
            .execute::<Case>(&meta, &crate::cases::case_stream(case_id), &command, None)
            .await
            .map(|_| ())
    }

    /// Sends the case as it stands now; how it ended, or the transient failure of the
    /// last attempt.
    pub async fn deliver(
        &self,
        tenant: &TenantId,
        case_id: &str,
        cause: RequestIds,
    ) -> Result<Delivered, WorkFailure> {
        let stream = crate::cases::case_stream(case_id);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (case, _) = self
                .handler
                .state::<Case>(tenant, &stream)
                .await
                .map_err(failure)?;
            let Some(opened) = case.opened.as_ref() else {
                return Err(WorkFailure::Poison(format!("no case {case_id}")));
            };
            if let Delivery::Failed { reason, .. } = &case.delivery {
                return Ok(Delivered::Failed(reason.clone()));
            }
            let Some(connection) = connection(&self.handler, tenant).await.map_err(failure)? else {
                let reason = "the tenant has no Salesforce connection".to_owned();
                self.end(tenant, case_id, cause, &reason).await?;
                return Ok(Delivered::Failed(reason));
            };
            let org = Org {
                tenant: tenant.clone(),
                connection,
            };
            let record = CaseRecord {
                case_id: case_id.to_owned(),
                account_id: opened.customer_id.clone(),
                subject: opened.subject.as_str().to_owned(),
                description: opened.description.as_str().to_owned(),
                priority: opened.priority.salesforce(),
                status: case.status.salesforce(),
            };
            let call = self.crm.upsert_case(&org, &record);
            let error = match tokio::time::timeout(self.policy.timeout, call).await {
                Ok(Ok(upserted)) => {
                    self.mark(
                        tenant,
                        case_id,
                        cause,
                        CaseCommand::MarkDelivered {
                            salesforce_id: upserted.salesforce_id.clone(),
                        },
                    )
                    .await
                    .map_err(failure)?;
                    metrics::counter!("chronicle_case_deliveries_total", "outcome" => "delivered")
                        .increment(1);
                    tracing::info!(tenant_id = %tenant, case_id, salesforce_id = %upserted.salesforce_id, created = upserted.created, attempt, "case delivered to Salesforce");
                    return Ok(Delivered::Yes(upserted.salesforce_id));
                }
                Ok(Err(e)) if !e.is_transient() => {
                    let reason = e.to_string();
                    self.end(tenant, case_id, cause, &reason).await?;
                    return Ok(Delivered::Failed(reason));
                }
                Ok(Err(e)) => e,
                Err(_) => CrmError::Failed(format!(
                    "no answer within {} ms",
                    self.policy.timeout.as_millis()
                )),
            };
            metrics::counter!("chronicle_case_deliveries_total", "outcome" => "retried")
                .increment(1);
            tracing::warn!(tenant_id = %tenant, case_id, attempt, error = %error, "case delivery failed; retrying");
            if attempt >= self.policy.max_attempts {
                return Err(WorkFailure::Retry(error.to_string()));
            }
            tokio::time::sleep(self.policy.pause(attempt, None)).await;
        }
    }

    async fn end(
        &self,
        tenant: &TenantId,
        case_id: &str,
        cause: RequestIds,
        reason: &str,
    ) -> Result<(), WorkFailure> {
        let command = CaseCommand::MarkDeliveryFailed {
            reason: reason.to_owned(),
        };
        self.mark(tenant, case_id, cause, command)
            .await
            .map_err(failure)?;
        metrics::counter!("chronicle_case_deliveries_total", "outcome" => "failed").increment(1);
        tracing::warn!(tenant_id = %tenant, case_id, reason, "case delivery failed for good");
        Ok(())
    }
}

#[async_trait::async_trait]
impl EventWorker for CaseDeliveryWorker {
    fn name(&self) -> &'static str {
        "case-delivery"
    }

    fn starts_work(&self, event: &EventEnvelope) -> bool {
        event.stream_id.kind() == "case"
            && SENT_ON.contains(&event.event_type.as_str())
            // What the sync read from Salesforce is already there.
            && event.payload["source"].as_str() != Some("salesforce")
    }

    async fn handle(&self, event: &EventEnvelope) -> Result<(), WorkFailure> {
        let cause = RequestIds::caused_by(event);
        self.deliver(&event.tenant_id, event.stream_id.instance(), cause)
            .await
            .map(|_| ())
    }
}
