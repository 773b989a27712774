//! The background workers' configuration, and their in-process driver (embedded backend):
//! a worker tails the log for the events that give it work (a submitted AI query, a
//! started Salesforce sync), runs several at once, and keeps a checkpoint below the oldest
//! still running, so that after a restart all unfinished work is run again (the workers
//! resume it; finished work is skipped).

use commands::ai_worker::AiWorker;
use commands::worker::{EventWorker, WorkFailure};
use domain::EventEnvelope;
use projections::{DeadLetter, EventFeed, ReadModelStore};
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// How the AI worker reaches its model and how it retries.
#[derive(Debug, Clone)]
pub struct AiConfig {
    pub openai: infra::openai::OpenAiSettings,
    /// The model a query gets when it names none.
    pub default_model: domain::ai_query::ModelName,
    pub policy: commands::ai_worker::RetryPolicy,
    /// Queries run at once by one worker.
    pub concurrency: usize,
}

impl AiConfig {
    /// The worker this configuration describes, over `handler`.
    pub fn worker(&self, handler: commands::CommandHandler) -> anyhow::Result<AiWorker> {
        let model = infra::openai::OpenAiModel::new(&self.openai)?;
        Ok(AiWorker::new(
            handler,
            Arc::new(model),
            self.policy.clone(),
        )?)
    }

    /// What the API needs to know of it.
    pub fn provider(&self) -> crate::ai::AiProvider {
        crate::ai::AiProvider {
            default_model: self.default_model.clone(),
        }
    }
}

/// The AI provider and the AI worker's policy.
#[derive(clap::Args, Clone, Debug)]
pub struct AiArgs {
    /// The provider's API key; without it, AI queries are refused (503). Set it in the
    /// environment rather than on the command line, where other users can see it.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<String>,
    /// The provider's API, OpenAI's or any compatible server's (`…/v1`).
    #[arg(long, env = "OPENAI_BASE_URL", default_value = infra::openai::DEFAULT_BASE_URL)]
    pub openai_base_url: String,
    /// The model of a query that names none.
    #[arg(long, env = "CHRONICLE_AI_MODEL", default_value = "gpt-4o-mini")]
    pub ai_model: String,
    /// How long one call of the model may take: a number with ms, s or m (seconds if bare).
    #[arg(long, env = "CHRONICLE_AI_TIMEOUT", default_value = "60s", value_parser = parse_timeout)]
    pub ai_timeout: Duration,
    /// Calls of the model per query before it fails for good.
    #[arg(long, env = "CHRONICLE_AI_MAX_ATTEMPTS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub ai_max_attempts: u32,
    /// Queries one worker runs at once.
    #[arg(long, env = "CHRONICLE_AI_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub ai_concurrency: u16,
}

impl AiArgs {
    /// The configuration these arguments describe; `None` without a key.
    pub fn config(&self) -> anyhow::Result<Option<AiConfig>> {
        let Some(key) = self.openai_api_key.clone().filter(|k| !k.trim().is_empty()) else {
            return Ok(None);
        };
        let default_model = domain::ai_query::ModelName::parse(&self.ai_model)
            .map_err(|e| anyhow::anyhow!("CHRONICLE_AI_MODEL: {e}"))?;
        Ok(Some(AiConfig {
            openai: infra::openai::OpenAiSettings {
                api_key: key,
                base_url: self.openai_base_url.clone(),
                timeout: self.ai_timeout,
            },
            default_model,
            policy: commands::ai_worker::RetryPolicy {
                max_attempts: self.ai_max_attempts,
                timeout: self.ai_timeout,
                ..Default::default()
            },
            concurrency: usize::from(self.ai_concurrency),
        }))
    }
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration like 500ms, 60s or 2m");
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().map_err(|_| bad())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        _ => return Err(bad()),
    };
    if d.is_zero() {
        return Err("the timeout must be positive".into());
    }
    Ok(d)
}

/// Events read per step of the tail.
const BATCH: usize = 256;

/// Tails `feed` for the events that give `worker` work and runs up to `concurrency` of
/// them at once until `shutdown`, with a checkpoint (named after the worker, among the
/// read models') below the oldest still running: work cut off by a shutdown is run again
/// at the next start.
pub async fn run_worker(
    feed: Arc<dyn EventFeed>,
    store: Arc<dyn ReadModelStore>,
    worker: Arc<dyn EventWorker>,
    concurrency: usize,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let name = worker.name();
    let concurrency = concurrency.max(1);
    let mut head = feed.head();
    let mut at = loop {
        match store.checkpoint(name).await {
            Ok(p) => break p,
            Err(e) => {
                tracing::warn!(worker = name, error = %e, "cannot read the worker's checkpoint; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = &mut shutdown => return,
                }
            }
        }
    };
    let mut saved = at;
    let mut running: JoinSet<u64> = JoinSet::new();
    let mut open: BTreeSet<u64> = BTreeSet::new();
    loop {
        head.borrow_and_update();
        let mut caught_up = true;
        if running.len() < concurrency {
            match feed.read_after(at, BATCH).await {
                Ok(batch) => {
                    caught_up = batch.len() < BATCH;
                    for e in batch {
                        if worker.starts_work(&e) {
                            if running.len() >= concurrency {
                                caught_up = false;
                                break;
                            }
                            open.insert(e.position);
                            running.spawn(run_one(worker.clone(), store.clone(), e.clone()));
                        }
                        at = e.position;
                    }
                }
                Err(e) => {
                    tracing::warn!(worker = name, error = %e, "cannot read the log; retrying")
                }
            }
        }
        // Everything before the oldest running event is done.
        let done = open.first().map_or(at, |p| p - 1);
        if done > saved {
            let checkpoint = Some((name.to_owned(), done));
            match store.commit(name, vec![], vec![], checkpoint).await {
                Ok(()) => saved = done,
                Err(e) => tracing::warn!(worker = name, error = %e, "cannot store the checkpoint"),
            }
        }
        let room = running.len() < concurrency;
        tokio::select! {
            Some(finished) = running.join_next(), if !running.is_empty() => {
                if let Ok(position) = finished {
                    open.remove(&position);
                }
            }
            r = head.changed(), if room && caught_up => if r.is_err() { break },
            () = tokio::time::sleep(Duration::ZERO), if room && !caught_up => {}
            () = &mut shutdown => break,
        }
    }
    running.abort_all();
}

/// Does one event's work. A failure worth retrying is retried with backoff; work that can
/// never be done goes to the dead letters (of the worker's name).
async fn run_one(
    worker: Arc<dyn EventWorker>,
    store: Arc<dyn ReadModelStore>,
    event: EventEnvelope,
) -> u64 {
    let name = worker.name();
    let mut pause = Duration::from_millis(100);
    loop {
        match worker.handle(&event).await {
            Ok(()) => break,
            Err(WorkFailure::Retry(e)) => {
                tracing::warn!(worker = name, tenant_id = %event.tenant_id, stream_id = %event.stream_id, error = %e, "work failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(10));
            }
            Err(WorkFailure::Poison(e)) => {
                tracing::error!(worker = name, tenant_id = %event.tenant_id, stream_id = %event.stream_id, error = %e, "work sent to the dead letters");
                let dead = DeadLetter {
                    view: name.to_owned(),
                    event: event.clone(),
                    error: e,
                };
                if let Err(e) = store.commit(name, vec![], vec![dead], None).await {
                    tracing::error!(error = %e, "could not record the dead letter");
                }
                break;
            }
        }
    }
    event.position
}
