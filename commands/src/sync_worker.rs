//! The Salesforce sync worker: runs a started sync to its end. It reads the tenant's
//! Accounts in (SystemModstamp, Id) order, page by page (`nextRecordsUrl`); a full run
//! reads them all, an incremental one those modified since the watermark less a short
//! look-back, so that records sharing a timestamp at a page or run boundary, or committed
//! late, are read again (and, unchanged, write nothing). Each record becomes an event only
//! if something changed; after each page the run's counts and watermark are written, on
//! the slot too. Then the deleted Accounts (`queryAll`, `IsDeleted`) become CustomerDeleted.
//! Then the portal's Cases (those with Chronicle's case id in the External ID field),
//! modified since the same point: what agents changed there (a status, new comments)
//! becomes CaseUpdated with source `salesforce`; what Chronicle wrote itself is no change.
//! A Salesforce failure (the API limit, a query timeout, refused credentials) ends the run
//! FAILED with the reason, keeping the watermark of what was written.

use crate::customers::{
    AccountPage, CrmCommandError, CrmError, CrmSource, Org, StartSync, StepSync, apply_record,
    connected_tenants, connection, later, sync_stream,
};
use crate::handler::{CommandError, CommandHandler, CommandMeta, RequestIds};
use crate::worker::{EventWorker, WorkFailure, failure};
use chrono::{DateTime, Utc};
use domain::case::{Case, CaseCommand, CaseError, CaseStatus};
use domain::customer_sync::{
    CustomerSync, SlotError, SyncCommand, SyncCounts, SyncMode, SyncStatus, Watermark,
};
use domain::document::Document;
use domain::{Actor, Aggregate, EventEnvelope, Role, TenantId, UserId};
use std::sync::Arc;

/// The actor of the sync's events.
pub const SYNCER: &str = "system:salesforce-sync";

pub struct SyncWorker {
    handler: CommandHandler,
    crm: Arc<dyn CrmSource>,
    lookback: chrono::Duration,
    actor: Actor,
}

/// How a pass over one query ended.
enum Pass {
    Done,
    Failed(CrmError),
}

impl SyncWorker {
    pub fn new(
        handler: CommandHandler,
        crm: Arc<dyn CrmSource>,
        lookback: chrono::Duration,
    ) -> Result<Self, domain::ValidationError> {
        Ok(Self {
            handler,
            crm,
            lookback,
            actor: Actor {
                user_id: UserId::parse(SYNCER)?,
                role: Role::Admin,
            },
        })
    }

    fn meta(&self, tenant: &TenantId, cause: RequestIds) -> CommandMeta {
        CommandMeta::of(tenant.clone(), self.actor.clone(), cause.next(), None)
    }

    /// Runs sync `sync_id` of `tenant` to its end; its final status.
    pub async fn run(
        &self,
        tenant: &TenantId,
        sync_id: &str,
        cause: RequestIds,
    ) -> Result<SyncStatus, CommandError<CrmCommandError>> {
        let (sync, _) = self
            .handler
            .state::<CustomerSync>(tenant, &sync_stream(sync_id))
            .await
            .map_err(|e| e.map_rejected(CrmCommandError::from))?;
        let (Some(started), Some(SyncStatus::Running)) = (&sync.started, sync.status) else {
            return Ok(sync.status.unwrap_or(SyncStatus::Failed));
        };
        let mut counts = sync.counts;
        let mut watermark = sync.watermark.clone();
        let Some(connection) = connection(&self.handler, tenant).await? else {
            let end = SyncCommand::Fail {
                error: "the tenant has no Salesforce connection".into(),
                counts,
                watermark,
            };
            return self.step(tenant, sync_id, cause, end).await;
        };
        let org = Org {
            tenant: tenant.clone(),
            connection,
        };
        let since = match started.mode {
            SyncMode::Full => None,
            SyncMode::Incremental => watermark
                .as_ref()
                .map(|w| w.system_modstamp - self.lookback),
        };
        for deleted in [false, true] {
            let pass = self
                .pass(
                    &org,
                    (sync_id, cause),
                    since,
                    deleted,
                    &mut counts,
                    &mut watermark,
                )
                .await?;
            if let Pass::Failed(e) = pass {
                tracing::warn!(tenant_id = %tenant, sync_id, error = %e, "Salesforce sync failed");
                let end = SyncCommand::Fail {
                    error: e.to_string(),
                    counts,
                    watermark,
                };
                return self.step(tenant, sync_id, cause, end).await;
            }
        }
        let mut read = self
            .reconcile_cases(&org, cause, since, &mut counts)
            .await?;
        if read.is_ok() {
            read = self
                .sync_documents(&org, (sync_id, cause), since, &mut counts)
                .await?;
        }
        if let Err(e) = read {
            tracing::warn!(tenant_id = %tenant, sync_id, error = %e, "Salesforce sync failed reading cases or documents");
            let end = SyncCommand::Fail {
                error: e.to_string(),
                counts,
                watermark,
            };
            return self.step(tenant, sync_id, cause, end).await;
        }
        let end = SyncCommand::Complete { counts, watermark };
        self.step(tenant, sync_id, cause, end).await
    }

    /// Reads one query to its last page, writing each record and, after each page, the
    /// counts and the watermark. Only live records move the watermark.
    async fn pass(
        &self,
        org: &Org,
        (sync_id, cause): (&str, RequestIds),
        since: Option<DateTime<Utc>>,
        deleted: bool,
        counts: &mut SyncCounts,
        watermark: &mut Option<Watermark>,
    ) -> Result<Pass, CommandError<CrmCommandError>> {
        let tenant = &org.tenant;
        let mut page: Result<AccountPage, CrmError> = self.crm.accounts(org, since, deleted).await;
        loop {
            let p = match page {
                Ok(p) => p,
                Err(e) => return Ok(Pass::Failed(e)),
            };
            let meta = self.meta(tenant, cause);
            for record in &p.records {
                counts.fetched += 1;
                apply_record(&self.handler, &meta, sync_id, record)
                    .await?
                    .count(counts);
                if !deleted {
                    *watermark = later(watermark.take(), record);
                }
            }
            let progress = SyncCommand::Progress {
                counts: *counts,
                watermark: watermark.clone(),
            };
            self.step(tenant, sync_id, cause, progress).await?;
            match p.next {
                Some(next) => page = self.crm.next_page(org, &next).await,
                None => return Ok(Pass::Done),
            }
        }
    }

    /// Hands each portal Case the org has (modified since `since`) to its case; counts
    /// the cases that changed. `Err` inside: Salesforce failed.
    async fn reconcile_cases(
        &self,
        org: &Org,
        cause: RequestIds,
        since: Option<DateTime<Utc>>,
        counts: &mut SyncCounts,
    ) -> Result<Result<(), CrmError>, CommandError<CrmCommandError>> {
        let remote = match self.crm.cases(org, since).await {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let meta = self.meta(&org.tenant, cause);
        for r in remote {
            let command = CaseCommand::Reconcile {
                status: CaseStatus::from_salesforce(&r.status),
                comments: r.comments,
                modified_at: r.modified_at,
            };
            let stream = crate::cases::case_stream(&r.case_id);
            match self
                .handler
                .execute::<Case>(&meta, &stream, &command, None)
                .await
            {
                Ok(done) if !done.events.is_empty() => counts.cases_updated += 1,
                Ok(_) => {}
                // A Case whose id names no case of this tenant: not a portal case here.
                Err(CommandError::Rejected(CaseError::NotFound)) => {}
                Err(e) => return Err(e.map_rejected(CrmCommandError::from)),
            }
        }
        Ok(Ok(()))
    }

    /// Records each file linked to an Account (modified since `since`); counts the new or
    /// changed ones. `Err` inside: Salesforce failed.
    async fn sync_documents(
        &self,
        org: &Org,
        (sync_id, cause): (&str, RequestIds),
        since: Option<DateTime<Utc>>,
        counts: &mut SyncCounts,
    ) -> Result<Result<(), CrmError>, CommandError<CrmCommandError>> {
        let remote = match self.crm.documents(org, since).await {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let meta = self.meta(&org.tenant, cause);
        for d in remote {
            let command = crate::documents::sync_command(&d.document_id, d.fields, sync_id);
            let done = self
                .handler
                .execute::<Document>(
                    &meta,
                    &crate::documents::document_stream(&d.document_id),
                    &command,
                    None,
                )
                .await
                .map_err(|e| e.map_rejected(CrmCommandError::from))?;
            if !done.events.is_empty() {
                counts.documents_synced += 1;
            }
        }
        Ok(Ok(()))
    }

    async fn step(
        &self,
        tenant: &TenantId,
        sync_id: &str,
        cause: RequestIds,
        command: SyncCommand,
    ) -> Result<SyncStatus, CommandError<CrmCommandError>> {
        let ran = self
            .handler
            .run(
                &self.meta(tenant, cause),
                &StepSync {
                    sync_id: sync_id.to_owned(),
                    command,
                },
            )
            .await?;
        Ok(ran.output.status.unwrap_or(SyncStatus::Running))
    }

    /// Starts an incremental sync for every connected tenant that runs none: the scheduled
    /// poll. Returns the syncs started.
    pub async fn schedule(&self) -> Result<Vec<(TenantId, String)>, CommandError<CrmCommandError>> {
        let mut started = Vec::new();
        for tenant in connected_tenants(&self.handler).await? {
            let sync_id = uuid::Uuid::now_v7().to_string();
            let meta = self.meta(&tenant, RequestIds::fresh());
            let start = StartSync {
                sync_id: sync_id.clone(),
                mode: SyncMode::Incremental,
            };
            match self.handler.run(&meta, &start).await {
                Ok(_) => started.push((tenant, sync_id)),
                Err(CommandError::Rejected(
                    CrmCommandError::Slot(SlotError::Busy(_)) | CrmCommandError::Connection(_),
                )) => {}
                Err(e) => {
                    tracing::warn!(tenant_id = %tenant, error = %e, "scheduled sync not started");
                }
            }
        }
        Ok(started)
    }
}

/// The event type of a run's start.
const STARTED: &str = "CustomerSyncStarted";

#[async_trait::async_trait]
impl EventWorker for SyncWorker {
    fn name(&self) -> &'static str {
        "salesforce-sync"
    }

    fn starts_work(&self, event: &EventEnvelope) -> bool {
        event.stream_id.kind() == CustomerSync::KIND && event.event_type == STARTED
    }

    async fn handle(&self, event: &EventEnvelope) -> Result<(), WorkFailure> {
        let cause = RequestIds::caused_by(event);
        let status = self
            .run(&event.tenant_id, event.stream_id.instance(), cause)
            .await
            .map_err(failure)?;
        tracing::info!(tenant_id = %event.tenant_id, sync_id = event.stream_id.instance(), status = status.as_str(), "Salesforce sync ended");
        Ok(())
    }

    /// The scheduled poll: an incremental sync of every connected tenant.
    async fn tick(&self) -> Result<(), WorkFailure> {
        let started = self.schedule().await.map_err(failure)?;
        tracing::info!(syncs = started.len(), "scheduled Salesforce syncs started");
        Ok(())
    }
}
