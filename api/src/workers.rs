//! The background workers' configuration, and their in-process driver (embedded backend):
//! a worker tails the log for the events that give it work (a submitted AI query, a
//! started Salesforce sync), runs several at once, and keeps a checkpoint below the oldest
//! still running, so that after a restart all unfinished work is run again (the workers
//! resume it; finished work is skipped).

use commands::ai_worker::AiWorker;
use commands::worker::{EventWorker, WorkFailure};
use domain::EventEnvelope;
use projections::{DeadLetter, EventFeed, IDLE_CHECKPOINT_EVERY, PACE, ReadModelStore};
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// Salesforce: the key that seals client secrets, and how the sync worker polls.
#[derive(Clone)]
pub struct SalesforceConfig {
    /// Key material of the secrets key (`CHRONICLE_SECRETS_KEY`, or the data dir's).
    pub secrets_key: Vec<u8>,
    /// One call of Salesforce.
    pub timeout: Duration,
    /// How far back of the watermark an incremental sync reads again.
    pub lookback: chrono::Duration,
    /// The scheduled incremental sync of every connected tenant; `None`: none.
    pub poll_interval: Option<Duration>,
    /// How often the SFTP scheduler looks for imports that are due; `None`: never.
    pub sftp_poll_interval: Option<Duration>,
    /// How the case delivery worker retries an upsert.
    pub delivery: commands::worker::RetryPolicy,
    /// Transient failures in a row that open an org's circuit, and how long it stays open.
    pub breaker: (u32, Duration),
}

impl std::fmt::Debug for SalesforceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SalesforceConfig")
            .field("secrets_key", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("lookback", &self.lookback)
            .field("poll_interval", &self.poll_interval)
            .field("sftp_poll_interval", &self.sftp_poll_interval)
            .field("delivery", &self.delivery)
            .field("breaker", &self.breaker)
            .finish()
    }
}

impl SalesforceConfig {
    /// The client and the sealing the API uses.
    pub fn access(&self) -> anyhow::Result<crate::salesforce::SalesforceAccess> {
        let secrets = infra::secrets::SecretBox::new(&self.secrets_key);
        let (failures, cool_down) = self.breaker;
        let breaker = Arc::new(infra::salesforce::CircuitBreaker::new(failures, cool_down));
        let crm = infra::salesforce::SalesforceClient::new(
            secrets.clone(),
            self.timeout,
            breaker.clone(),
        )?;
        Ok(crate::salesforce::SalesforceAccess {
            secrets,
            crm: Arc::new(crm),
            breaker,
        })
    }

    /// The sync worker over `handler`, sharing `access`'s client.
    pub fn worker(
        &self,
        handler: commands::CommandHandler,
        access: &crate::salesforce::SalesforceAccess,
    ) -> anyhow::Result<commands::sync_worker::SyncWorker> {
        Ok(commands::sync_worker::SyncWorker::new(
            handler,
            access.crm.clone(),
            self.lookback,
        )?)
    }

    /// The case delivery worker over `handler`, sharing `access`'s client.
    pub fn case_worker(
        &self,
        handler: commands::CommandHandler,
        access: &crate::salesforce::SalesforceAccess,
    ) -> anyhow::Result<commands::case_worker::CaseDeliveryWorker> {
        Ok(commands::case_worker::CaseDeliveryWorker::new(
            handler,
            access.crm.clone(),
            self.delivery.clone(),
        )?)
    }
}

/// Salesforce's key and schedule.
#[derive(clap::Args, Clone, Debug)]
pub struct SalesforceArgs {
    /// The key that seals tenants' Salesforce client secrets (any long random string).
    /// Embedded: generated into the data dir if unset; aws: required for connections.
    #[arg(long, env = "CHRONICLE_SECRETS_KEY", hide_env_values = true)]
    pub secrets_key: Option<String>,
    /// The scheduled incremental sync of every connected tenant (`30m`, `1h`), or `off`.
    #[arg(long, env = "CHRONICLE_SF_POLL_INTERVAL", default_value = "1h", value_parser = parse_interval)]
    pub sf_poll_interval: Interval,
    /// How often the SFTP scheduler starts the imports that are due by their connections'
    /// schedules (`1m`), or `off`. The same key seals SFTP secrets.
    #[arg(long, env = "CHRONICLE_SFTP_POLL_INTERVAL", default_value = "1m", value_parser = parse_interval)]
    pub sftp_poll_interval: Interval,
    /// How far back of the watermark an incremental sync reads again.
    #[arg(long, env = "CHRONICLE_SF_LOOKBACK", default_value = "2m", value_parser = parse_duration)]
    pub sf_lookback: Duration,
    /// One call of Salesforce.
    #[arg(long, env = "CHRONICLE_SF_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub sf_timeout: Duration,
    /// Failures in a row (5xx, timeouts, the API limit) after which an org is not called
    /// for a while (its circuit opens).
    #[arg(long, env = "CHRONICLE_SF_BREAKER_FAILURES", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub sf_breaker_failures: u32,
    /// How long an open circuit stays open before one trial call.
    #[arg(long, env = "CHRONICLE_SF_BREAKER_COOL_DOWN", default_value = "30s", value_parser = parse_duration)]
    pub sf_breaker_cool_down: Duration,
}

/// A period, or none.
#[derive(Debug, Clone, Copy)]
pub struct Interval(pub Option<Duration>);

fn parse_interval(s: &str) -> Result<Interval, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(Interval(None));
    }
    parse_duration(s).map(|d| Interval(Some(d)))
}

impl SalesforceArgs {
    /// The configuration: with the key given, or (with `data_dir`) the one kept there,
    /// generated on first use; `None` without either.
    pub fn config(
        &self,
        data_dir: Option<&std::path::Path>,
    ) -> anyhow::Result<Option<SalesforceConfig>> {
        let key = match (&self.secrets_key, data_dir) {
            (Some(k), _) => k.as_bytes().to_vec(),
            (None, Some(dir)) => crate::tokens::load_or_create_key(None, dir, "secrets-key")?,
            (None, None) => return Ok(None),
        };
        Ok(Some(SalesforceConfig {
            secrets_key: key,
            timeout: self.sf_timeout,
            lookback: chrono::Duration::from_std(self.sf_lookback)?,
            poll_interval: self.sf_poll_interval.0,
            sftp_poll_interval: self.sftp_poll_interval.0,
            delivery: commands::worker::RetryPolicy {
                max_attempts: 3,
                timeout: self.sf_timeout,
                ..Default::default()
            },
            breaker: (self.sf_breaker_failures, self.sf_breaker_cool_down),
        }))
    }
}

/// Runs `worker`'s scheduled poll (its `tick`: the Salesforce syncs, the SFTP imports
/// that are due) every `interval`, until `shutdown`.
pub async fn run_schedule(
    worker: Arc<dyn EventWorker>,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = &mut shutdown => return,
        }
        if let Err(e) = worker.tick().await {
            tracing::warn!(worker = worker.name(), error = %e, "scheduled work not started");
        }
    }
}

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
    #[arg(long, env = "CHRONICLE_AI_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
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

/// SFTP: the key that seals connection secrets (the same as Salesforce's), and how long
/// the server may take to answer.
#[derive(Clone)]
pub struct SftpConfig {
    pub secrets_key: Vec<u8>,
    pub timeout: Duration,
    /// How often the scheduler starts the imports that are due; `None`: never.
    pub poll_interval: Option<Duration>,
}

impl std::fmt::Debug for SftpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpConfig")
            .field("secrets_key", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("poll_interval", &self.poll_interval)
            .finish()
    }
}

impl SftpConfig {
    /// With the secrets key of the Salesforce connections.
    pub fn of(sf: &SalesforceConfig) -> Self {
        Self {
            secrets_key: sf.secrets_key.clone(),
            timeout: sf.timeout,
            poll_interval: sf.sftp_poll_interval,
        }
    }

    /// The sealing and client the API uses.
    pub fn access(&self) -> crate::sftp::SftpAccess {
        let secrets = infra::secrets::SecretBox::new(&self.secrets_key);
        crate::sftp::SftpAccess {
            server: Arc::new(infra::sftp::SftpClient::new(secrets.clone(), self.timeout)),
            secrets,
        }
    }

    /// The import worker over `handler`.
    pub fn worker(
        &self,
        handler: commands::CommandHandler,
    ) -> anyhow::Result<commands::sftp_worker::SftpWorker> {
        Ok(commands::sftp_worker::SftpWorker::new(
            handler,
            self.access().server,
        )?)
    }
}

/// How the mail worker reaches its SMTP server and how it retries.
#[derive(Debug, Clone)]
pub struct MailConfig {
    pub smtp: infra::smtp::SmtpSettings,
    pub policy: commands::worker::RetryPolicy,
    /// Messages one worker sends at once.
    pub concurrency: usize,
}

impl MailConfig {
    /// The worker this configuration describes, over `handler`.
    pub fn worker(
        &self,
        handler: commands::CommandHandler,
    ) -> anyhow::Result<commands::mail_worker::MailWorker> {
        let mailer = infra::smtp::SmtpMailer::new(&self.smtp)?;
        Ok(commands::mail_worker::MailWorker::new(
            handler,
            Arc::new(mailer),
            self.policy.clone(),
        )?)
    }

    /// What the API needs to know of it.
    pub fn provider(&self) -> crate::messages::MailProvider {
        crate::messages::MailProvider {
            from: self.smtp.from.clone(),
        }
    }
}

/// The mail server and the mail worker's policy.
#[derive(clap::Args, Clone, Debug)]
pub struct MailArgs {
    /// The SMTP server: `smtp://[user:password@]host[:port]` (STARTTLS whenever the server
    /// offers it; `?tls=required` to insist, `?tls=none` never), or `smtps://…` (TLS from
    /// the start). Without it, messages are refused (503). Set it in the environment
    /// rather than on the command line: it may hold a password.
    #[arg(long, env = "CHRONICLE_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// The `From` of every message: `Name <address>` or an address.
    #[arg(long, env = "CHRONICLE_SMTP_FROM")]
    pub smtp_from: Option<String>,
    /// How long the server may take to answer one SMTP command.
    #[arg(long, env = "CHRONICLE_SMTP_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub smtp_timeout: Duration,
    /// More roots (a PEM file) to trust for the server's certificate, besides the
    /// system's: a private relay's CA.
    #[arg(long, env = "CHRONICLE_SMTP_CA_FILE")]
    pub smtp_ca_file: Option<std::path::PathBuf>,
    /// Deliveries of a message before it fails for good (4xx replies and broken
    /// connections are retried with backoff; a 5xx reply fails it at once).
    #[arg(long, env = "CHRONICLE_SMTP_MAX_ATTEMPTS", default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub smtp_max_attempts: u32,
    /// The first pause before a retry; each next one doubles, up to 15 minutes.
    #[arg(long, env = "CHRONICLE_SMTP_BACKOFF", default_value = "30s", value_parser = parse_duration)]
    pub smtp_backoff: Duration,
    /// Messages one worker sends at once.
    #[arg(long, env = "CHRONICLE_SMTP_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub smtp_concurrency: u16,
}

impl MailArgs {
    /// The configuration these arguments describe; `None` without a URL.
    pub fn config(&self) -> anyhow::Result<Option<MailConfig>> {
        let Some(url) = self.smtp_url.clone().filter(|u| !u.trim().is_empty()) else {
            return Ok(None);
        };
        let from = self
            .smtp_from
            .clone()
            .filter(|f| !f.trim().is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!("CHRONICLE_SMTP_FROM is required with CHRONICLE_SMTP_URL: the From of every message")
            })?;
        let config = MailConfig {
            smtp: infra::smtp::SmtpSettings {
                url,
                from,
                timeout: self.smtp_timeout,
                ca_file: self.smtp_ca_file.clone(),
            },
            policy: commands::worker::RetryPolicy {
                max_attempts: self.smtp_max_attempts,
                // A whole delivery: connect, greet, STARTTLS, envelope, data.
                timeout: self.smtp_timeout.saturating_mul(4),
                base_backoff: self.smtp_backoff,
                max_backoff: Duration::from_secs(15 * 60),
                max_retry_after: Duration::from_secs(15 * 60),
            },
            concurrency: usize::from(self.smtp_concurrency),
        };
        // The URL and the From are checked now, not at the first message.
        infra::smtp::SmtpMailer::new(&config.smtp)?;
        Ok(Some(config))
    }
}

/// A positive duration on the command line: a number with ms, s, m, h or d (seconds if
/// bare), e.g. `500ms`, `60s`, `15m`, `1h`, `7d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration like 500ms, 60s, 15m, 1h or 7d");
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().map_err(|_| bad())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "d" => Duration::from_secs(n.saturating_mul(86_400)),
        _ => return Err(bad()),
    };
    if d.is_zero() {
        return Err("the duration must be positive".into());
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
    // Whether work finished since the checkpoint was stored: only then, or after
    // `IDLE_CHECKPOINT_EVERY` positions of events it ignores, is it stored again (the
    // events it ignores cost nothing but a read after a restart).
    let mut worked = false;
    let mut running: JoinSet<u64> = JoinSet::new();
    let mut open: BTreeSet<u64> = BTreeSet::new();
    let wanted = {
        let worker = worker.clone();
        move |e: &EventEnvelope| worker.starts_work(e)
    };
    let mut stepped = tokio::time::Instant::now();
    loop {
        // At most one read per `PACE` while the log keeps growing, as the projectors do.
        let next = stepped + PACE;
        if tokio::time::Instant::now() < next {
            tokio::select! {
                () = tokio::time::sleep_until(next) => {},
                () = &mut shutdown => break,
            }
        }
        stepped = tokio::time::Instant::now();
        head.borrow_and_update();
        let mut caught_up = true;
        if running.len() < concurrency {
            match feed.read_matching(at, BATCH, &wanted).await {
                Ok(found) => {
                    caught_up = found.looked < BATCH;
                    let mut through = found.through;
                    for e in found.events {
                        if running.len() >= concurrency {
                            // Not started: read again from just before it.
                            through = Some(e.position - 1);
                            caught_up = false;
                            break;
                        }
                        open.insert(e.position);
                        running.spawn(run_one(worker.clone(), store.clone(), e));
                    }
                    at = through.map_or(at, |t| t.max(at));
                }
                Err(e) => {
                    tracing::warn!(worker = name, error = %e, "cannot read the log; retrying")
                }
            }
        }
        // Everything before the oldest running event is done.
        let done = open.first().map_or(at, |p| p - 1);
        if done > saved && (worked || done - saved >= IDLE_CHECKPOINT_EVERY) {
            let checkpoint = Some((name.to_owned(), done));
            match store.commit(name, vec![], vec![], checkpoint).await {
                Ok(()) => {
                    saved = done;
                    worked = false;
                }
                Err(e) => tracing::warn!(worker = name, error = %e, "cannot store the checkpoint"),
            }
        }
        let room = running.len() < concurrency;
        tokio::select! {
            Some(finished) = running.join_next(), if !running.is_empty() => {
                if let Ok(position) = finished {
                    open.remove(&position);
                    worked = true;
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
    event: Arc<EventEnvelope>,
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
                    event: EventEnvelope::clone(&event),
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
