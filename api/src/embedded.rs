//! Wires the embedded backend: the SQLite event store and read models under the data
//! directory, the in-process projector that tails the log, and the AI and mail workers.

use crate::app::AppState;
use crate::tokens::TokenKeys;
use commands::CommandHandler;
use infra::SystemClock;
use infra::sqlite::{SqliteEventStore, SqliteReadModelStore};
use projections::{AllProjections, ProjectionProgress, Projector, ProjectorConfig};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct EmbeddedConfig {
    pub data_dir: PathBuf,
    pub jwt_secret: Vec<u8>,
    pub consistency_timeout: Duration,
    /// The AI worker's model and policy; without it, AI queries are refused (503).
    pub ai: Option<crate::workers::AiConfig>,
    /// Salesforce connections, their sync worker and its schedule.
    pub salesforce: Option<crate::workers::SalesforceConfig>,
    /// The mail worker's SMTP server and policy; without it, messages are refused (503).
    pub mail: Option<crate::workers::MailConfig>,
    /// SFTP connections and their import worker.
    pub sftp: Option<crate::workers::SftpConfig>,
}

/// A running embedded Chronicle minus the HTTP listener.
pub struct Embedded {
    pub state: AppState,
    pub events: SqliteEventStore,
    pub views: SqliteReadModelStore,
    stop: watch::Sender<bool>,
    projector: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
    /// The Salesforce sync worker, for a scheduled poll on demand.
    pub sync: Option<Arc<commands::sync_worker::SyncWorker>>,
}

impl Embedded {
    pub fn start(config: EmbeddedConfig) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)?;
        let events = SqliteEventStore::open(&config.data_dir.join("events.db"))?;
        let views = SqliteReadModelStore::open(&config.data_dir.join("views.db"))?;
        let changes = Arc::new(projections::ViewChanges::fed());
        let projectors = projectors(&events, &views, Some(changes.clone()));
        let progress = AllProjections(projectors.iter().map(|p| p.progress().clone()).collect());
        let analytics = projectors
            .iter()
            .find(|p| p.name() == projections::analytics::STREAMS)
            .map(|p| p.progress().clone());
        let (stop, stopped) = watch::channel(false);
        let feed = Arc::new(events.clone());
        // One thread and runtime for all projectors, of their own: under load the request tasks would otherwise queue
        // ahead of it on the shared workers, and read-model lag would grow with them.
        let (done, projector_done) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        infra::placement::spawn_store_thread("projector", move || {
            let group: Vec<&Projector> = projectors.iter().collect();
            let mut stopped = stopped;
            runtime.block_on(projections::run_group(&group, feed, async move {
                let _ = stopped.wait_for(|s| *s).await;
            }));
            let _ = done.send(());
        })?;
        let projector = tokio::spawn(async move {
            let _ = projector_done.await;
        });
        let handler = CommandHandler::new(Arc::new(events.clone()), Arc::new(SystemClock));
        let mut state = AppState::new(
            handler.clone(),
            Arc::new(views.clone()),
            Arc::new(progress),
            TokenKeys::from_secret(&config.jwt_secret)?,
            config.consistency_timeout,
        );
        state.changes = changes;
        let mut workers = Vec::new();
        let mut sync = None;
        let stopped = |stop: &watch::Sender<bool>| {
            let mut rx = stop.subscribe();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let tail = |worker: Arc<dyn commands::worker::EventWorker>, concurrency| {
            tokio::spawn(crate::workers::run_worker(
                Arc::new(events.clone()),
                Arc::new(views.clone()),
                worker,
                concurrency,
                stopped(&stop),
            ))
        };
        if let Some(progress) = analytics {
            workers.push(tokio::spawn(analytics_lag(
                events.clone(),
                progress,
                stopped(&stop),
            )));
        }
        if let Some(ai) = &config.ai {
            state.ai = Some(ai.provider());
            workers.push(tail(Arc::new(ai.worker(handler.clone())?), ai.concurrency));
        }
        if let Some(mail) = &config.mail {
            state.mail = Some(mail.provider());
            workers.push(tail(
                Arc::new(mail.worker(handler.clone())?),
                mail.concurrency,
            ));
        }
        if let Some(sftp) = &config.sftp {
            state.sftp = Some(sftp.access());
            let worker = Arc::new(sftp.worker(handler.clone())?);
            if let Some(every) = sftp.poll_interval {
                workers.push(tokio::spawn(crate::workers::run_schedule(
                    worker.clone(),
                    every,
                    stopped(&stop),
                )));
            }
            workers.push(tail(worker, 2));
        }
        if let Some(sf) = &config.salesforce {
            let access = sf.access()?;
            let worker = Arc::new(sf.worker(handler.clone(), &access)?);
            workers.push(tail(Arc::new(sf.case_worker(handler.clone(), &access)?), 4));
            state.salesforce = Some(access);
            workers.push(tail(worker.clone(), 4));
            sync = Some(worker.clone());
            if let Some(every) = sf.poll_interval {
                workers.push(tokio::spawn(crate::workers::run_schedule(
                    worker.clone(),
                    every,
                    stopped(&stop),
                )));
            }
        }
        Ok(Self {
            state,
            events,
            views,
            stop,
            projector,
            workers,
            sync,
        })
    }

    /// Stops the projector after its current batch, and the workers (work they cut off
    /// resumes at the next start).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.projector.await;
        for w in self.workers {
            let _ = w.await;
        }
    }
}

/// The analytics consumer's lag, the log positions it has yet to apply, as the gauge
/// `chronicle_analytics_positions_behind`, every second until `stop`.
pub async fn analytics_lag(
    events: SqliteEventStore,
    progress: ProjectionProgress,
    stop: impl std::future::Future<Output = ()>,
) {
    let gauge = metrics::gauge!("chronicle_analytics_positions_behind");
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                gauge.set(events.last_position().saturating_sub(progress.applied()) as f64);
            }
            () = &mut stop => return,
        }
    }
}

/// The analytics consumer alone, over the SQLite store and views.
pub fn analytics_projector(events: &SqliteEventStore, views: &SqliteReadModelStore) -> Projector {
    Projector::new(
        Arc::new(projections::analytics::AnalyticsProjection),
        Arc::new(views.clone()),
        Arc::new(events.clone()),
        ProjectionProgress::default(),
        ProjectorConfig::default(),
    )
}

/// A projector for every read model, over the SQLite store and views; each commit tells
/// `changes` (if any) which tenants' rows it changed.
pub fn projectors(
    events: &SqliteEventStore,
    views: &SqliteReadModelStore,
    changes: Option<Arc<projections::ViewChanges>>,
) -> Vec<Projector> {
    projections::all()
        .into_iter()
        .map(|projection| {
            Projector::new(
                projection,
                Arc::new(views.clone()),
                Arc::new(events.clone()),
                ProjectionProgress::default(),
                ProjectorConfig {
                    changes: changes.clone(),
                    ..ProjectorConfig::default()
                },
            )
        })
        .collect()
}
