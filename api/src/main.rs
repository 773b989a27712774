//! `chronicle`: the one binary. `serve` (the default) runs the REST API with the embedded
//! store and projector in process; `token` mints a signed JWT for local use.

use anyhow::Context;
use api::tokens::load_or_create_secret;
use api::{Embedded, EmbeddedConfig, TokenKeys};
use clap::{Args, Parser, Subcommand};
use domain::{Role, TenantId, UserId};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

/// mimalloc: request handling allocates many small, short-lived buffers, where the system
/// allocator showed up at a fifth of the CPU profile under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "chronicle",
    version,
    about = "Event-sourced CQRS backend for multi-tenant SaaS"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the REST API (the default). Embedded: with the store and projector in process.
    Serve(ServeArgs),
    /// Run a projector worker (aws: long-poll SQS; embedded: tail the log).
    Project(ProjectArgs),
    /// Run the AI query worker and the Salesforce sync worker (aws: their SQS queues;
    /// embedded: tail the log).
    Worker(WorkerArgs),
    /// Relay DynamoDB Streams to EventBridge and Kinesis (aws only).
    Relay(RelayArgs),
    /// Create the AWS resources, idempotently (aws only).
    Setup(BackendArgs),
    /// Print a signed access token for a tenant, user and role, alone on stdout.
    Token(TokenArgs),
    /// Operator actions on a tenant: show, suspend, reactivate.
    Tenant(TenantArgs),
    /// Audits of the store: the timeline, a stream's state as of a point, the hash
    /// chains, the history's digest.
    Audit(AuditArgs),
    /// Rebuild read models from position zero into a fresh copy and swap it in atomically;
    /// the live copy serves until the swap, and stays as it was if interrupted.
    Replay(ReplayArgs),
    /// The analytics consumer: folds the event feed into per-tenant daily figures (aws:
    /// the Kinesis stream, shards leased like the Kinesis Client Library does; embedded:
    /// the log tail, which `serve` also runs in-process).
    Analytics(AnalyticsArgs),
}

#[derive(Args)]
struct AnalyticsArgs {
    #[command(flatten)]
    backend: BackendArgs,
    #[arg(long, env = "CHRONICLE_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Serve /metrics (the consumer's lag among them) on this address.
    #[arg(long, env = "CHRONICLE_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// This consumer's name in the shard leases (aws); unique per process.
    #[arg(long)]
    owner: Option<String>,
    /// How long a shard lease lasts unless renewed, in seconds (aws).
    #[arg(long, default_value_t = 10)]
    lease_seconds: u64,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("tenants").args(["tenant", "all"]).required(true)))]
struct ReplayArgs {
    /// The tenant whose rows to rebuild.
    #[arg(long)]
    tenant: Option<String>,
    /// A projection to rebuild, by its view's name (repeatable; `revenue` names the orders
    /// projection, whose tallies write it).
    #[arg(long = "projection")]
    projections: Vec<String>,
    /// Every tenant, and every projection unless --projection names some.
    #[arg(long)]
    all: bool,
    /// Events read from the log at a time.
    #[arg(long, default_value_t = 4096)]
    batch_size: usize,
    #[command(flatten)]
    backend: BackendArgs,
    #[arg(long, env = "CHRONICLE_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
}

#[derive(Args)]
struct AuditArgs {
    #[command(subcommand)]
    action: AuditAction,
    #[command(flatten)]
    backend: BackendArgs,
    #[arg(
        long,
        env = "CHRONICLE_DATA_DIR",
        default_value = "./data",
        global = true
    )]
    data_dir: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// Aligned columns, for people.
    Table,
    /// One JSON array.
    Json,
    /// One JSON object per line.
    Ndjson,
}

#[derive(Subcommand)]
enum AuditAction {
    /// Who did what, when, through which command and correlation id, in order. Streams:
    /// the first line comes at once, memory stays flat.
    Timeline {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        stream: Option<String>,
        /// RFC 3339.
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// RFC 3339.
        #[arg(long)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long)]
        actor: Option<String>,
        #[arg(long = "type")]
        event_type: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// A stream's state as of a time or a version, as JSON.
    State {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        stream: String,
        /// RFC 3339.
        #[arg(long, conflicts_with = "version", required_unless_present = "version")]
        at: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long)]
        version: Option<u64>,
    },
    /// Checks every stream's hash chain and version sequence (of one tenant, or of all on
    /// the embedded store); with --digest, that the history it covers is unchanged.
    Verify {
        #[arg(long)]
        tenant: Option<String>,
        /// A digest printed by `chronicle audit digest` (a file, or - for stdin).
        #[arg(long)]
        digest: Option<PathBuf>,
    },
    /// Prints the history's digest (events, streams, head position, Merkle root of the
    /// streams' heads): keep it outside the system.
    Digest {
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Args)]
struct TenantArgs {
    #[command(subcommand)]
    action: TenantAction,
}

#[derive(Subcommand)]
enum TenantAction {
    /// Print the tenant's state as JSON.
    Show(TenantTarget),
    /// Refuse every call of the tenant's users (403) until reactivated.
    Suspend {
        #[command(flatten)]
        target: TenantTarget,
        /// Why, kept in the event.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift a suspension.
    Reactivate(TenantTarget),
}

#[derive(Args)]
struct TenantTarget {
    #[arg(long, env = "CHRONICLE_TENANT")]
    tenant: String,
    #[command(flatten)]
    backend: BackendArgs,
    #[arg(long, env = "CHRONICLE_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Backend {
    /// One process, SQLite files under the data dir.
    Embedded,
    /// DynamoDB, DynamoDB Streams, EventBridge, SQS, Kinesis (standard AWS environment).
    Aws,
}

#[derive(Args, Clone)]
struct BackendArgs {
    #[arg(
        long,
        env = "CHRONICLE_BACKEND",
        value_enum,
        default_value = "embedded",
        global = true
    )]
    backend: Backend,
    /// Prefix of every AWS resource name (tables, bus, queues, stream).
    #[arg(
        long,
        env = "CHRONICLE_AWS_PREFIX",
        default_value = "chronicle",
        global = true
    )]
    aws_prefix: String,
}

#[derive(Args, Clone)]
struct ProjectArgs {
    #[command(flatten)]
    backend: BackendArgs,
    #[arg(long, env = "CHRONICLE_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// SQS long-poll wait, in seconds (aws).
    #[arg(long, env = "CHRONICLE_SQS_WAIT_SECONDS", default_value_t = 10)]
    wait_seconds: u64,
}

#[derive(Args, Clone)]
struct WorkerArgs {
    #[command(flatten)]
    backend: BackendArgs,
    #[arg(long, env = "CHRONICLE_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// SQS long-poll wait, in seconds (aws).
    #[arg(long, env = "CHRONICLE_SQS_WAIT_SECONDS", default_value_t = 10)]
    wait_seconds: u64,
    #[command(flatten)]
    ai: api::workers::AiArgs,
    #[command(flatten)]
    mail: api::workers::MailArgs,
    #[command(flatten)]
    salesforce: api::workers::SalesforceArgs,
}

#[derive(Args, Clone)]
struct RelayArgs {
    #[command(flatten)]
    backend: BackendArgs,
    /// Pause between polls of the stream when it had nothing new, in milliseconds.
    #[arg(long, env = "CHRONICLE_RELAY_INTERVAL_MS", default_value_t = 200)]
    interval_ms: u64,
}

#[derive(Args, Clone)]
struct ServeArgs {
    #[command(flatten)]
    backend: BackendArgs,
    /// Address to listen on.
    #[arg(long, env = "CHRONICLE_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Directory of the embedded store, read models and generated secret.
    #[arg(long, env = "CHRONICLE_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// HMAC secret for tokens (at least 32 bytes); generated and kept in the data dir if unset.
    #[arg(long, env = "CHRONICLE_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Issuer of external RS256 tokens (a Cognito user pool URL); their keys come from
    /// `<issuer>/.well-known/jwks.json`. Needs --oidc-audience.
    #[arg(long, env = "CHRONICLE_OIDC_ISSUER", requires = "oidc_audience")]
    oidc_issuer: Option<String>,
    /// The audience (app client id) external tokens must carry in `aud` or `client_id`.
    #[arg(long, env = "CHRONICLE_OIDC_AUDIENCE", requires = "oidc_issuer")]
    oidc_audience: Option<String>,
    /// Requests per second per tenant by tier, as `basic=100,premium=500,enterprise=2000`
    /// (bursts of twice that), or `off`.
    #[arg(long, env = "CHRONICLE_RATE_LIMITS", default_value = api::limits::DEFAULT_SPEC)]
    rate_limits: String,
    /// Longest wait of a query that sends X-Consistency-Token, in milliseconds.
    #[arg(long, env = "CHRONICLE_CONSISTENCY_TIMEOUT_MS", default_value_t = 2000)]
    consistency_timeout_ms: u64,
    /// Threads serving requests. Default: one per core.
    #[arg(long, env = "CHRONICLE_WORKERS", value_parser = clap::value_parser!(u16).range(1..))]
    workers: Option<u16>,
    /// Embedded backend: run the store's writer, fsync, projector and checkpointer threads
    /// on the last CPU and the request workers on the others (with two CPUs or more).
    /// Off by default: on two cores, left to the scheduler with a request worker per core,
    /// `POST /tasks` under wrk ran 20-25% faster than pinned.
    #[arg(long, env = "CHRONICLE_PIN_THREADS", default_value_t = false, action = clap::ArgAction::Set)]
    pin_threads: bool,
    #[command(flatten)]
    ai: api::workers::AiArgs,
    #[command(flatten)]
    mail: api::workers::MailArgs,
    #[command(flatten)]
    salesforce: api::workers::SalesforceArgs,
}

impl ServeArgs {
    fn workers(&self) -> usize {
        // One per core on either backend. Embedded, one fewer had been faster while the
        // store's threads were pinned to a core of their own (`--pin-threads`); unpinned,
        // two workers on two cores served 12.4k POST /tasks a second under wrk against
        // 9.7-10.1k pinned with one, at 116-117 us of CPU per request against 129-131.
        self.workers.map_or_else(
            || std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            usize::from,
        )
    }

    /// The thread placement to install before the runtime starts: embedded only, since the
    /// aws backend has no store threads of its own.
    fn placement(&self) -> Option<infra::placement::Placement> {
        match self.backend.backend {
            Backend::Embedded if self.pin_threads => infra::placement::Placement::split(),
            _ => None,
        }
    }
}

#[derive(Args)]
struct TokenArgs {
    #[arg(long, env = "CHRONICLE_TENANT")]
    tenant: String,
    #[arg(long, env = "CHRONICLE_USER")]
    user: String,
    /// OWNER, ADMIN or MEMBER.
    #[arg(long, env = "CHRONICLE_ROLE", value_parser = parse_role)]
    role: Role,
    /// The tenant's tier, which sets its rate limit: basic, premium or enterprise.
    #[arg(long, env = "CHRONICLE_TIER", default_value = "basic", value_parser = parse_tier)]
    tier: domain::Tier,
    /// Lifetime: a number with s, m, h or d.
    #[arg(long, env = "CHRONICLE_TOKEN_TTL", default_value = "1h", value_parser = api::workers::parse_duration)]
    ttl: Duration,
    #[arg(long, env = "CHRONICLE_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    #[arg(long, env = "CHRONICLE_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
}

fn parse_tier(s: &str) -> Result<domain::Tier, String> {
    domain::Tier::parse(s).ok_or_else(|| format!("{s:?} is not basic, premium or enterprise"))
}

/// A staff role: a CUSTOMER's token must name its customer, which this command does not.
fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(&s.to_ascii_uppercase())
        .filter(|r| r.is_staff())
        .ok_or_else(|| format!("{s:?} is not OWNER, ADMIN or MEMBER"))
}

fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if std::env::var("CHRONICLE_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.init();
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    let serving = match &cli.command {
        Some(Command::Serve(args)) => Some(args),
        None => Some(&cli.serve),
        Some(_) => None,
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(args) = serving {
        runtime.worker_threads(args.workers());
        // Before the runtime exists, so that its threads inherit the workers' CPUs.
        if let Some(placement) = args.placement() {
            match placement.install() {
                Ok(()) => tracing::info!(
                    store_cpu = placement.store,
                    worker_cpus = ?placement.workers,
                    "store threads pinned to one CPU, request workers to the others"
                ),
                Err(e) => tracing::warn!(error = %e, "could not pin threads; running unpinned"),
            }
        }
    }
    runtime.enable_all().build()?.block_on(async move {
        match cli.command {
            Some(Command::Token(args)) => token(args),
            Some(Command::Serve(args)) => serve(args).await,
            Some(Command::Project(args)) => project(args).await,
            Some(Command::Worker(args)) => worker(args).await,
            Some(Command::Relay(args)) => relay(args).await,
            Some(Command::Setup(args)) => setup(args).await,
            Some(Command::Tenant(args)) => tenant(args).await,
            Some(Command::Audit(args)) => audit(args).await,
            Some(Command::Replay(args)) => replay(args).await,
            Some(Command::Analytics(args)) => analytics(args).await,
            None => serve(cli.serve).await,
        }
    })
}

fn token(args: TokenArgs) -> anyhow::Result<()> {
    let tenant = TenantId::parse(args.tenant).context("--tenant")?;
    let user = UserId::parse(args.user).context("--user")?;
    let secret = load_or_create_secret(args.jwt_secret.as_deref(), &args.data_dir)?;
    let token = TokenKeys::from_secret(&secret)?
        .mint_with_tier(&tenant, &user, args.role, args.tier, args.ttl)?;
    println!("{token}");
    Ok(())
}

/// `chronicle tenant ...`: runs the tenant command straight against the store, as the
/// operator `system:operator`. A running server sees the change within its tenant cache's
/// lifetime (`api::app::TENANT_CACHE_TTL`).
async fn tenant(args: TenantArgs) -> anyhow::Result<()> {
    use domain::tenant::{Tenant, TenantCommand};
    let (target, command) = match args.action {
        TenantAction::Show(t) => (t, None),
        TenantAction::Suspend { target, reason } => {
            (target, Some(TenantCommand::Suspend { reason }))
        }
        TenantAction::Reactivate(t) => (t, Some(TenantCommand::Reactivate)),
    };
    let tenant = TenantId::parse(target.tenant).context("--tenant")?;
    let (store, _) = open_store(&target.backend, &target.data_dir).await?;
    let handler = commands::CommandHandler::new(store, std::sync::Arc::new(infra::SystemClock));
    let stream = commands::access::tenant_stream(&tenant);
    let (state, version) = match command {
        None => handler.state::<Tenant>(&tenant, &stream).await?,
        Some(command) => {
            let operator = domain::Actor {
                user_id: UserId::parse("system:operator")?,
                role: Role::Admin,
            };
            let meta = commands::CommandMeta::of(
                tenant.clone(),
                operator,
                commands::RequestIds::fresh(),
                None,
            );
            let done = handler
                .execute::<Tenant>(&meta, &stream, &command, None)
                .await?;
            (done.state, done.version)
        }
    };
    anyhow::ensure!(state.registered.is_some(), "no tenant {tenant}");
    let out = serde_json::json!({
        "tenant_id": tenant.as_str(),
        "company_name": state.company_name.as_ref().map(|n| n.as_str()),
        "tier": state.tier.as_str(),
        "status": state.status.as_str(),
        "users": state.seats.len(),
        "version": version,
    });
    println!("{out}");
    Ok(())
}

/// The event store a command-line tool reads: the data dir's, or DynamoDB.
async fn open_store(
    backend: &BackendArgs,
    data_dir: &std::path::Path,
) -> anyhow::Result<(
    std::sync::Arc<dyn commands::EventStore>,
    Option<infra::sqlite::SqliteEventStore>,
)> {
    Ok(match backend.backend {
        Backend::Embedded => {
            let path = data_dir.join("events.db");
            anyhow::ensure!(path.exists(), "no event store at {}", path.display());
            let store = infra::sqlite::SqliteEventStore::open(&path)?;
            (std::sync::Arc::new(store.clone()), Some(store))
        }
        #[cfg(feature = "aws")]
        Backend::Aws => {
            let aws = infra::aws::Aws::load(&backend.aws_prefix).await;
            (
                std::sync::Arc::new(infra::aws::DynamoEventStore::new(&aws)),
                None,
            )
        }
        #[cfg(not(feature = "aws"))]
        Backend::Aws => anyhow::bail!(NO_AWS),
    })
}

async fn audit(args: AuditArgs) -> anyhow::Result<()> {
    use commands::audit::{ChainCheck, HistoryDigest, TimelineFilter, compare};
    use std::io::Write;
    let (store, embedded) = open_store(&args.backend, &args.data_dir).await?;
    let parse_tenant = |t: &str| TenantId::parse(t).context("--tenant");
    match args.action {
        AuditAction::Timeline {
            tenant,
            stream,
            since,
            until,
            actor,
            event_type,
            format,
        } => {
            let tenant = parse_tenant(&tenant)?;
            let filter = TimelineFilter {
                stream: stream
                    .map(domain::StreamId::parse)
                    .transpose()
                    .context("--stream")?,
                since,
                until,
                actor,
                event_type,
            };
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut cursor = commands::FeedCursor::start();
            let mut first = true;
            if format == Format::Json {
                write!(out, "[")?;
            }
            if format == Format::Table {
                writeln!(
                    out,
                    "{:<27} {:>8}  {:<44} {:>4}  {:<24} {:<24} {:<36} correlation_id",
                    "recorded_at",
                    "position",
                    "stream_id",
                    "v",
                    "event_type",
                    "actor",
                    "command_id"
                )?;
            }
            loop {
                let (events, next) = commands::audit::timeline_page(
                    store.as_ref(),
                    &tenant,
                    &filter,
                    &cursor,
                    commands::audit::PAGE,
                )
                .await?;
                for e in events
                    .into_iter()
                    .filter(|e| !domain::user::is_private(&e.stream_id))
                {
                    match format {
                        Format::Table => writeln!(
                            out,
                            "{:<27} {:>8}  {:<44} {:>4}  {:<24} {:<24} {:<36} {}",
                            domain::envelope::format_time(&e.recorded_at),
                            e.position,
                            e.stream_id.as_str(),
                            e.version,
                            e.event_type,
                            e.actor,
                            e.command_id,
                            e.correlation_id
                        )?,
                        Format::Ndjson => {
                            writeln!(out, "{}", serde_json::to_string(&e)?)?;
                        }
                        Format::Json => {
                            write!(
                                out,
                                "{}{}",
                                if first { "" } else { "," },
                                serde_json::to_string(&e)?
                            )?;
                        }
                    }
                    first = false;
                }
                out.flush()?;
                match next {
                    Some(n) => cursor = n,
                    None => break,
                }
            }
            if format == Format::Json {
                writeln!(out, "]")?;
            }
            out.flush()?;
        }
        AuditAction::State {
            tenant,
            stream,
            at,
            version,
        } => {
            let tenant = parse_tenant(&tenant)?;
            let stream = domain::StreamId::parse(stream).context("--stream")?;
            let as_of = api::audit::AsOf { version, time: at };
            let state = api::audit::state_at(store.as_ref(), &tenant, &stream, as_of)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{}", serde_json::to_string_pretty(&state)?);
        }
        AuditAction::Digest { tenant } => {
            let tenant = tenant.as_deref().map(parse_tenant).transpose()?;
            let check = history(store.as_ref(), embedded.as_ref(), tenant.as_ref(), None).await?;
            println!("{}", serde_json::to_string(&check.digest(tenant.as_ref()))?);
        }
        AuditAction::Verify { tenant, digest } => {
            let kept: Option<HistoryDigest> = match &digest {
                Some(path) => {
                    let text = if path.as_os_str() == "-" {
                        std::io::read_to_string(std::io::stdin())?
                    } else {
                        std::fs::read_to_string(path)
                            .with_context(|| format!("cannot read {}", path.display()))?
                    };
                    Some(serde_json::from_str(&text).context("not a digest")?)
                }
                None => None,
            };
            let tenant = match (tenant, kept.as_ref().and_then(|d| d.tenant_id.clone())) {
                (Some(t), _) | (None, Some(t)) => Some(parse_tenant(&t)?),
                (None, None) => None,
            };
            let until = kept.as_ref().map(|d| d.head_position);
            let check: ChainCheck =
                history(store.as_ref(), embedded.as_ref(), tenant.as_ref(), until).await?;
            let mut failed = false;
            for b in &check.broken {
                eprintln!(
                    "BROKEN tenant {} stream {} version {}: {}",
                    b.tenant_id, b.stream_id, b.version, b.reason
                );
                failed = true;
            }
            if let Some(kept) = &kept {
                for difference in compare(kept, &check.digest(tenant.as_ref())) {
                    eprintln!("DIGEST MISMATCH: {difference}");
                    failed = true;
                }
            }
            println!(
                "verified {} streams, {} events{}",
                check.streams(),
                check.events,
                if kept.is_some() {
                    " against the digest"
                } else {
                    ""
                }
            );
            if failed {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}

/// Every event of `tenant`, or of every tenant (the embedded store's log), through a
/// chain check.
async fn history(
    store: &dyn commands::EventStore,
    embedded: Option<&infra::sqlite::SqliteEventStore>,
    tenant: Option<&TenantId>,
    until: Option<u64>,
) -> anyhow::Result<commands::audit::ChainCheck> {
    let mut check = commands::audit::ChainCheck::default();
    match (tenant, embedded) {
        (Some(t), _) => commands::audit::check_tenant(store, t, until, &mut check).await?,
        (None, Some(log)) => api::audit::check_log(log, until, &mut check).await?,
        (None, None) => anyhow::bail!("on the aws backend, name the --tenant to audit"),
    }
    Ok(check)
}

/// Fine below 10 ms, where request latency and projection lag live on one machine; 9.5 ms
/// tells a p99 just under 10 ms from one just over.
const LAG_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.0075, 0.0085, 0.0095, 0.01, 0.0125, 0.015,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    use projections::replay::{LogHistory, Plan, rebuild};
    use std::sync::Arc;
    anyhow::ensure!(
        args.all || !args.projections.is_empty(),
        "name the --projection to rebuild, or --all"
    );
    anyhow::ensure!(
        !(args.all && args.tenant.is_some() && !args.projections.is_empty()),
        "--all with both --tenant and --projection leaves nothing for it to mean"
    );
    let plan = Plan {
        projections: api::replay::projections_named(&args.projections)
            .map_err(|e| anyhow::anyhow!("--projection: {e}"))?,
        tenant: args
            .tenant
            .as_deref()
            .map(TenantId::parse)
            .transpose()
            .context("--tenant")?,
        batch_size: args.batch_size.clamp(1, 10_000),
    };
    // Listening before anything is said: an interrupt from here on leaves the live copy.
    let mut interrupted = std::pin::pin!(shutdown_signal());
    if futures::FutureExt::now_or_never(&mut interrupted).is_some() {
        anyhow::bail!("interrupted");
    }
    let names: Vec<&str> = plan.projections.iter().map(|p| p.name()).collect();
    let whose = plan
        .tenant
        .as_ref()
        .map_or("every tenant".to_owned(), |t| format!("tenant {t}"));
    let shown = api::replay::Shown::on_stderr();
    let started = std::time::Instant::now();
    let run = async {
        match args.backend.backend {
            Backend::Embedded => {
                let (_, events) = open_store(&args.backend, &args.data_dir).await?;
                let events = events.context("the embedded event store")?;
                let views =
                    infra::sqlite::SqliteReadModelStore::open(&args.data_dir.join("views.db"))?;
                eprintln!("replay: rebuilding {} for {whose}", names.join(", "));
                let history = LogHistory::new(Arc::new(events.committed_log()));
                let run = rebuild(views.clone(), &history, Arc::new(events), &plan, &shown);
                with_cleanup(run, views, &plan, interrupted.as_mut(), &shown).await
            }
            #[cfg(feature = "aws")]
            Backend::Aws => {
                let tenant = plan.tenant.clone().context(
                    "on the aws backend, name the --tenant to rebuild (DynamoDB keeps no log of all tenants)",
                )?;
                let aws = infra::aws::Aws::load(&args.backend.aws_prefix).await;
                let events = Arc::new(infra::aws::DynamoEventStore::new(&aws));
                let views = infra::aws::DynamoReadModelStore::new(&aws);
                eprintln!("replay: rebuilding {} for {whose}", names.join(", "));
                let history = api::replay::TenantHistory::new(events.clone(), tenant);
                let run = rebuild(views.clone(), &history, events, &plan, &shown);
                with_cleanup(run, views, &plan, interrupted.as_mut(), &shown).await
            }
            #[cfg(not(feature = "aws"))]
            Backend::Aws => anyhow::bail!(NO_AWS),
        }
    };
    let report = run.await?;
    shown.finish();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "replay: swapped in {} rows of {} for {whose} at position {}: {} events read in {secs:.2}s ({:.0} events/s), {} dead letters, caught up again {} times",
        report.rows,
        plan.views().join(", "),
        report.position,
        report.read,
        report.read as f64 / secs.max(1e-6),
        report.dead_letters,
        report.catch_ups
    );
    Ok(())
}

async fn analytics(args: AnalyticsArgs) -> anyhow::Result<()> {
    use std::sync::Arc;
    let handle = install_metrics()?;
    if let Some(addr) = args.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(%addr, "serving /metrics");
        let router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let text = handle.render();
                async move { text }
            }),
        );
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "metrics listener failed");
            }
        });
    }
    match args.backend.backend {
        #[cfg(feature = "aws")]
        Backend::Aws => {
            let aws = infra::aws::Aws::load(&args.backend.aws_prefix).await;
            let owner = args.owner.unwrap_or_else(|| {
                format!(
                    "analytics-{}-{}",
                    std::process::id(),
                    uuid::Uuid::new_v4().simple()
                )
            });
            let config = infra::aws::ConsumerConfig {
                lease: Duration::from_secs(args.lease_seconds.max(1)),
                ..infra::aws::ConsumerConfig::default()
            };
            let consumer = infra::aws::KinesisConsumer::new(&aws, owner, config);
            tracing::info!(stream = %aws.names.kinesis_stream, owner = consumer.owner(), "analytics consuming");
            consumer.run(shutdown_signal()).await;
        }
        #[cfg(not(feature = "aws"))]
        Backend::Aws => anyhow::bail!(NO_AWS),
        Backend::Embedded => {
            let events = infra::sqlite::SqliteEventStore::open(&args.data_dir.join("events.db"))?;
            let views = infra::sqlite::SqliteReadModelStore::open(&args.data_dir.join("views.db"))?;
            let projector = api::embedded::analytics_projector(&events, &views);
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let lag = tokio::spawn(api::embedded::analytics_lag(
                events.clone(),
                projector.progress().clone(),
                async move {
                    let mut stopped = stopped;
                    let _ = stopped.wait_for(|s| *s).await;
                },
            ));
            tracing::info!(data_dir = %args.data_dir.display(), "analytics tailing the log");
            projector
                .run(Arc::new(events.committed_log()), shutdown_signal())
                .await;
            let _ = stop.send(true);
            let _ = lag.await;
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Runs a rebuild until it ends or `interrupted`: then the partial copy is dropped, the
/// live one left as it was, and the process exits 130.
async fn with_cleanup<S: projections::ReadModelStore + Clone + 'static>(
    run: impl std::future::Future<
        Output = Result<projections::replay::Report, projections::ReadModelError>,
    >,
    views: S,
    plan: &projections::replay::Plan,
    interrupted: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    shown: &api::replay::Shown,
) -> anyhow::Result<projections::replay::Report> {
    tokio::select! {
        r = run => r.map_err(|e| anyhow::anyhow!("replay failed, the live read models are unchanged: {e}")),
        () = interrupted => {
            shown.finish();
            let shadow = projections::replay::Shadow(views);
            for view in plan.views() {
                if let Err(e) = projections::ReadModelStore::reset(&shadow, &view, plan.tenant.as_ref()).await {
                    eprintln!("replay: the partial copy of {view} stays until the next replay: {e}");
                }
            }
            eprintln!("replay: interrupted; the live read models are unchanged");
            std::process::exit(130);
        }
    }
}

/// How often the recorder folds the histogram samples recorded since into its buckets.
const METRICS_UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// Installs the Prometheus recorder, and a thread that keeps it small. The recorder keeps
/// every histogram sample until its upkeep folds them into buckets, which `install_recorder`
/// leaves to the caller: with nothing scraping /metrics, each `POST /tasks` left its
/// latency and projection-lag samples behind, and the process grew by 1.4 MB/s under load
/// (78 MiB after 10 s, 127 MiB after 40 s).
fn install_metrics() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LAG_BUCKETS)?
        .install_recorder()?;
    let upkept = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(METRICS_UPKEEP_EVERY);
                upkept.run_upkeep();
            }
        })?;
    Ok(handle)
}

/// How often `runtime_delay` looks.
const RUNTIME_DELAY_EVERY: Duration = Duration::from_millis(10);

/// Records, in `chronicle_runtime_delay_seconds`, how late the request runtime runs a task
/// that is due: a timer due every `RUNTIME_DELAY_EVERY` notes how long after its deadline
/// it ran. A long delay means every request waited for a worker (the workers were busy, or
/// the CPUs were taken by other threads or processes), which the request latency in
/// `/metrics`, timed inside the handler, cannot show.
async fn runtime_delay() {
    let delay = metrics::histogram!("chronicle_runtime_delay_seconds");
    let mut tick = tokio::time::interval(RUNTIME_DELAY_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let due = tick.tick().await;
        delay.record(due.elapsed().as_secs_f64());
    }
}

/// What a build without the AWS backend says when asked for it.
#[cfg(not(feature = "aws"))]
const NO_AWS: &str = "this chronicle was built without the AWS backend: build it with \
     `cargo build --release --features aws` (the test command builds it so)";

fn require_aws(backend: &BackendArgs, what: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        backend.backend == Backend::Aws,
        "`chronicle {what}` works on the aws backend only (--backend aws); the embedded store needs none"
    );
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let metrics = install_metrics()?;
    tokio::spawn(runtime_delay());
    let secret = load_or_create_secret(args.jwt_secret.as_deref(), &args.data_dir)?;
    let timeout = Duration::from_millis(args.consistency_timeout_ms);
    let ai = args.ai.config()?;
    match &ai {
        Some(c) => {
            tracing::info!(base_url = %c.openai.base_url, model = c.default_model.as_str(), "AI provider configured")
        }
        None => tracing::info!("no OPENAI_API_KEY: AI queries are refused (503)"),
    }
    let mail = args.mail.config()?;
    match &mail {
        Some(c) => {
            tracing::info!(smtp = %infra::smtp::redacted(&c.smtp.url), from = %c.smtp.from, "mail server configured")
        }
        None => tracing::info!("no CHRONICLE_SMTP_URL: messages are refused (503)"),
    }
    let (mut state, embedded) = match args.backend.backend {
        Backend::Embedded => {
            let salesforce = args.salesforce.config(Some(&args.data_dir))?;
            let e = Embedded::start(EmbeddedConfig {
                data_dir: args.data_dir.clone(),
                jwt_secret: secret,
                consistency_timeout: timeout,
                ai: ai.clone(),
                salesforce: salesforce.clone(),
                mail: mail.clone(),
                sftp: salesforce.as_ref().map(api::workers::SftpConfig::of),
            })?;
            (e.state.clone(), Some(e))
        }
        #[cfg(feature = "aws")]
        Backend::Aws => {
            let aws = infra::aws::Aws::load(&args.backend.aws_prefix).await;
            let state = api::aws::aws_state(&aws, TokenKeys::from_secret(&secret)?, timeout);
            // The views' changes wake the tenants' event streams (`GET /events/stream`).
            tokio::spawn(infra::aws::follow_view_changes(
                aws.clone(),
                state.changes.clone(),
                std::future::pending(),
            ));
            (state, None)
        }
        #[cfg(not(feature = "aws"))]
        Backend::Aws => anyhow::bail!(NO_AWS),
    };
    state.metrics = Some(metrics);
    // On AWS the API queues queries; `chronicle worker` runs them.
    state.ai = ai.as_ref().map(api::workers::AiConfig::provider);
    state.mail = mail.as_ref().map(api::workers::MailConfig::provider);
    if args.backend.backend == Backend::Aws
        && let Some(sf) = args.salesforce.config(None)?
    {
        state.salesforce = Some(sf.access()?);
        state.sftp = Some(api::workers::SftpConfig::of(&sf).access());
    }
    if let (Some(issuer), Some(audience)) = (&args.oidc_issuer, &args.oidc_audience) {
        tracing::info!(%issuer, %audience, "accepting RS256 tokens of this issuer");
        state.oidc = Some(std::sync::Arc::new(api::oidc::Oidc::new(issuer, audience)));
    }
    state.rate_limits = api::limits::RateLimits::parse(&args.rate_limits)
        .map_err(|e| anyhow::anyhow!("--rate-limits: {e}"))?
        .map(std::sync::Arc::new);
    let limits = state.rate_limits.clone();
    let throttle = state.signin_throttle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            if let Some(limits) = &limits {
                limits.retain_recent();
            }
            throttle.retain_recent();
        }
    });
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %args.data_dir.display(), workers = tokio::runtime::Handle::current().metrics().num_workers(), "chronicle listening on http://{addr}");
    tracing::info!(
        "sign up: POST http://{addr}/tenants with company_name, admin_email, admin_password; \
         or mint a token: cargo run --release -- token --tenant demo --user alice --role ADMIN --data-dir {}",
        args.data_dir.display()
    );
    api::serve(listener, state, shutdown_signal()).await?;
    if let Some(e) = embedded {
        tracing::info!("draining: stopping the projector");
        e.shutdown().await;
    }
    tracing::info!("stopped");
    Ok(())
}

async fn project(args: ProjectArgs) -> anyhow::Result<()> {
    let _metrics = install_metrics()?;
    match args.backend.backend {
        #[cfg(feature = "aws")]
        Backend::Aws => {
            let aws = infra::aws::Aws::load(&args.backend.aws_prefix).await;
            let worker = infra::aws::SqsProjector::new(
                &aws,
                projections::queue_fed(),
                Duration::from_secs(args.wait_seconds),
            )
            .await?;
            tracing::info!(queue = %aws.names.projector_queue, "projector consuming");
            worker.run(shutdown_signal()).await;
        }
        #[cfg(not(feature = "aws"))]
        Backend::Aws => anyhow::bail!(NO_AWS),
        Backend::Embedded => {
            use std::sync::Arc;
            let events = infra::sqlite::SqliteEventStore::open(&args.data_dir.join("events.db"))?;
            let views = infra::sqlite::SqliteReadModelStore::open(&args.data_dir.join("views.db"))?;
            let projectors = api::embedded::projectors(&events, &views, None);
            let group: Vec<&projections::Projector> = projectors.iter().collect();
            tracing::info!(data_dir = %args.data_dir.display(), "projectors tailing the log");
            projections::run_group(&group, Arc::new(events.committed_log()), shutdown_signal())
                .await;
        }
    }
    tracing::info!("stopped");
    Ok(())
}

async fn worker(args: WorkerArgs) -> anyhow::Result<()> {
    use std::sync::Arc;
    let _metrics = install_metrics()?;
    let aws = args.backend.backend == Backend::Aws;
    let ai = args.ai.config()?;
    let mail = args.mail.config()?;
    let sf = args
        .salesforce
        .config((!aws).then_some(args.data_dir.as_path()))?;
    anyhow::ensure!(
        ai.is_some() || mail.is_some() || sf.is_some(),
        "no worker to run: set OPENAI_API_KEY for the AI worker, CHRONICLE_SMTP_URL for the mail worker, CHRONICLE_SECRETS_KEY for the Salesforce sync worker"
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let until_stopped = || {
        let mut rx = stopped.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let clock = Arc::new(infra::SystemClock);
    let mut runs: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>> = Vec::new();
    if aws {
        #[cfg(not(feature = "aws"))]
        anyhow::bail!(NO_AWS);
        #[cfg(feature = "aws")]
        {
            let aws = infra::aws::Aws::load(&args.backend.aws_prefix).await;
            let handler = commands::CommandHandler::new(
                Arc::new(infra::aws::DynamoEventStore::new(&aws)),
                clock,
            );
            let wait = Duration::from_secs(args.wait_seconds);
            if let Some(config) = &ai {
                let worker = Arc::new(config.worker(handler.clone())?);
                let queue = infra::aws::QueueWorker::new(
                    &aws,
                    &aws.names.ai_queue,
                    worker,
                    (wait, config.concurrency),
                    infra::aws::AI_VISIBILITY_SECS,
                )
                .await?;
                tracing::info!(queue = %aws.names.ai_queue, "AI worker consuming");
                let shutdown = until_stopped();
                runs.push(Box::pin(async move { queue.run(shutdown).await }));
            }
            if let Some(config) = &mail {
                let queue = infra::aws::QueueWorker::new(
                    &aws,
                    &aws.names.mail_queue,
                    Arc::new(config.worker(handler.clone())?),
                    (wait, config.concurrency),
                    infra::aws::MAIL_VISIBILITY_SECS,
                )
                .await?;
                tracing::info!(queue = %aws.names.mail_queue, "mail worker consuming");
                let shutdown = until_stopped();
                runs.push(Box::pin(async move { queue.run(shutdown).await }));
            }
            if let Some(config) = &sf {
                let access = config.access()?;
                let worker = Arc::new(config.worker(handler.clone(), &access)?);
                let queue = infra::aws::QueueWorker::new(
                    &aws,
                    &aws.names.sync_queue,
                    worker,
                    (wait, 4),
                    infra::aws::SYNC_VISIBILITY_SECS,
                )
                .await?;
                tracing::info!(queue = %aws.names.sync_queue, "Salesforce sync worker consuming");
                let shutdown = until_stopped();
                runs.push(Box::pin(async move { queue.run(shutdown).await }));
                let cases = infra::aws::QueueWorker::new(
                    &aws,
                    &aws.names.case_queue,
                    Arc::new(config.case_worker(handler.clone(), &access)?),
                    (wait, 4),
                    infra::aws::CASE_VISIBILITY_SECS,
                )
                .await?;
                tracing::info!(queue = %aws.names.case_queue, "case delivery worker consuming");
                let shutdown = until_stopped();
                runs.push(Box::pin(async move { cases.run(shutdown).await }));
                // The SFTP imports' schedule is the queue's rule (every minute): its
                // messages are the worker's ticks.
                let imports = infra::aws::QueueWorker::new(
                    &aws,
                    &aws.names.sftp_queue,
                    Arc::new(api::workers::SftpConfig::of(config).worker(handler.clone())?),
                    (wait, 2),
                    infra::aws::SFTP_VISIBILITY_SECS,
                )
                .await?;
                tracing::info!(queue = %aws.names.sftp_queue, "SFTP import worker consuming");
                let shutdown = until_stopped();
                runs.push(Box::pin(async move { imports.run(shutdown).await }));
            }
        }
    } else {
        let events = infra::sqlite::SqliteEventStore::open(&args.data_dir.join("events.db"))?;
        let views = infra::sqlite::SqliteReadModelStore::open(&args.data_dir.join("views.db"))?;
        let handler = commands::CommandHandler::new(Arc::new(events.clone()), clock);
        if let Some(config) = &ai {
            let worker: Arc<dyn commands::worker::EventWorker> =
                Arc::new(config.worker(handler.clone())?);
            runs.push(Box::pin(api::workers::run_worker(
                Arc::new(events.clone()),
                Arc::new(views.clone()),
                worker,
                config.concurrency,
                until_stopped(),
            )));
        }
        if let Some(config) = &mail {
            runs.push(Box::pin(api::workers::run_worker(
                Arc::new(events.clone()),
                Arc::new(views.clone()),
                Arc::new(config.worker(handler.clone())?),
                config.concurrency,
                until_stopped(),
            )));
        }
        if let Some(config) = &sf {
            let access = config.access()?;
            let worker = Arc::new(config.worker(handler.clone(), &access)?);
            if let Some(every) = config.poll_interval {
                runs.push(Box::pin(api::workers::run_schedule(
                    worker.clone(),
                    every,
                    until_stopped(),
                )));
            }
            runs.push(Box::pin(api::workers::run_worker(
                Arc::new(events.clone()),
                Arc::new(views.clone()),
                worker,
                4,
                until_stopped(),
            )));
            runs.push(Box::pin(api::workers::run_worker(
                Arc::new(events.clone()),
                Arc::new(views.clone()),
                Arc::new(config.case_worker(handler.clone(), &access)?),
                4,
                until_stopped(),
            )));
            let sftp = api::workers::SftpConfig::of(config);
            let worker = Arc::new(sftp.worker(handler.clone())?);
            if let Some(every) = sftp.poll_interval {
                runs.push(Box::pin(api::workers::run_schedule(
                    worker.clone(),
                    every,
                    until_stopped(),
                )));
            }
            runs.push(Box::pin(api::workers::run_worker(
                Arc::new(events.clone()),
                Arc::new(views.clone()),
                worker,
                2,
                until_stopped(),
            )));
        }
        tracing::info!(data_dir = %args.data_dir.display(), "workers tailing the log");
    }
    futures::future::join_all(runs).await;
    tracing::info!("stopped");
    Ok(())
}

async fn relay(args: RelayArgs) -> anyhow::Result<()> {
    require_aws(&args.backend, "relay")?;
    #[cfg(not(feature = "aws"))]
    anyhow::bail!(NO_AWS);
    #[cfg(feature = "aws")]
    relay_aws(args).await
}

#[cfg(feature = "aws")]
async fn relay_aws(args: RelayArgs) -> anyhow::Result<()> {
    let _metrics = install_metrics()?;
    let aws = infra::aws::Aws::load(&args.backend.aws_prefix).await;
    let relay = infra::aws::Relay::new(&aws);
    tracing::info!(table = %aws.names.events_table, bus = %aws.names.bus, stream = %aws.names.kinesis_stream, "relay running");
    relay
        .run(Duration::from_millis(args.interval_ms), shutdown_signal())
        .await;
    tracing::info!("stopped");
    Ok(())
}

async fn setup(args: BackendArgs) -> anyhow::Result<()> {
    require_aws(&args, "setup")?;
    #[cfg(not(feature = "aws"))]
    anyhow::bail!(NO_AWS);
    #[cfg(feature = "aws")]
    {
        let aws = infra::aws::Aws::load(&args.aws_prefix).await;
        for line in infra::aws::setup(&aws).await? {
            println!("{line}");
        }
        Ok(())
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
