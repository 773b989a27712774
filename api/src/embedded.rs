//! Wires the embedded backend: the SQLite event store and read models under the data
//! directory, the in-process projector that tails the log, and the AI worker.

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
}

/// A running embedded Chronicle minus the HTTP listener.
pub struct Embedded {
    pub state: AppState,
    pub events: SqliteEventStore,
    pub views: SqliteReadModelStore,
    stop: watch::Sender<bool>,
    projector: JoinHandle<()>,
    ai_worker: Option<JoinHandle<()>>,
}

impl Embedded {
    pub fn start(config: EmbeddedConfig) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)?;
        let events = SqliteEventStore::open(&config.data_dir.join("events.db"))?;
        let views = SqliteReadModelStore::open(&config.data_dir.join("views.db"))?;
        let projectors = projectors(&events, &views);
        let progress = AllProjections(projectors.iter().map(|p| p.progress().clone()).collect());
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
        let ai_worker = match &config.ai {
            Some(ai) => {
                state.ai = Some(ai.provider());
                let worker = Arc::new(ai.worker(handler)?);
                let mut stopped = stop.subscribe();
                Some(tokio::spawn(crate::workers::run_worker(
                    Arc::new(events.clone()),
                    Arc::new(views.clone()),
                    worker,
                    ai.concurrency,
                    async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    },
                )))
            }
            None => None,
        };
        Ok(Self {
            state,
            events,
            views,
            stop,
            projector,
            ai_worker,
        })
    }

    /// Stops the projector after its current batch, and the AI worker (queries it cuts
    /// off resume at the next start).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.projector.await;
        if let Some(ai) = self.ai_worker {
            let _ = ai.await;
        }
    }
}

/// A projector for every read model, over the SQLite store and views.
pub fn projectors(events: &SqliteEventStore, views: &SqliteReadModelStore) -> Vec<Projector> {
    projections::all()
        .into_iter()
        .map(|projection| {
            Projector::new(
                projection,
                Arc::new(views.clone()),
                Arc::new(events.clone()),
                ProjectionProgress::default(),
                ProjectorConfig::default(),
            )
        })
        .collect()
}
