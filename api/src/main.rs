//! `chronicle`: the one binary. `serve` (the default) runs the REST API with the embedded
//! store and projector in process; `token` mints a signed JWT for local use.

use anyhow::Context;
use api::auth::load_or_create_secret;
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
    /// Run the REST API (the default), with the store and projector in process.
    Serve(ServeArgs),
    /// Print a signed access token for a tenant, user and role, alone on stdout.
    Token(TokenArgs),
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CHRONICLE_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Directory of the embedded store, read models and generated secret.
    #[arg(long, env = "CHRONICLE_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// HMAC secret for tokens (at least 32 bytes); generated and kept in the data dir if unset.
    #[arg(long, env = "CHRONICLE_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Longest wait of a query that sends X-Consistency-Token, in milliseconds.
    #[arg(long, env = "CHRONICLE_CONSISTENCY_TIMEOUT_MS", default_value_t = 2000)]
    consistency_timeout_ms: u64,
}

#[derive(Args)]
struct TokenArgs {
    #[arg(long, env = "CHRONICLE_TENANT")]
    tenant: String,
    #[arg(long, env = "CHRONICLE_USER")]
    user: String,
    /// ADMIN or MEMBER.
    #[arg(long, env = "CHRONICLE_ROLE", value_parser = parse_role)]
    role: Role,
    /// Lifetime: a number with s, m, h or d.
    #[arg(long, env = "CHRONICLE_TOKEN_TTL", default_value = "1h", value_parser = parse_ttl)]
    ttl: Duration,
    #[arg(long, env = "CHRONICLE_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    #[arg(long, env = "CHRONICLE_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(&s.to_ascii_uppercase()).ok_or_else(|| format!("{s:?} is not ADMIN or MEMBER"))
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 15m, 1h or 7d"))?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("{s:?} is not a duration like 90s, 15m, 1h or 7d")),
    };
    if secs == 0 {
        return Err("the lifetime must be positive".into());
    }
    Ok(Duration::from_secs(secs))
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
        Some(Command::Token(args)) => token(args),
        Some(Command::Serve(args)) => serve(args).await,
        None => serve(cli.serve).await,
    }
}

fn token(args: TokenArgs) -> anyhow::Result<()> {
    let tenant = TenantId::parse(args.tenant).context("--tenant")?;
    let user = UserId::parse(args.user).context("--user")?;
    let secret = load_or_create_secret(args.jwt_secret.as_deref(), &args.data_dir)?;
    let token = TokenKeys::from_secret(&secret)?.mint(&tenant, &user, args.role, args.ttl)?;
    println!("{token}");
    Ok(())
}

const LAG_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0,
];

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let metrics = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LAG_BUCKETS)?
        .install_recorder()?;
    let secret = load_or_create_secret(args.jwt_secret.as_deref(), &args.data_dir)?;
    let mut embedded = Embedded::start(EmbeddedConfig {
        data_dir: args.data_dir.clone(),
        jwt_secret: secret,
        consistency_timeout: Duration::from_millis(args.consistency_timeout_ms),
    })?;
    embedded.state.metrics = Some(metrics);
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %args.data_dir.display(), "chronicle listening on http://{addr}");
    tracing::info!(
        "get a token: cargo run --release -- token --tenant demo --user alice --role ADMIN --data-dir {}",
        args.data_dir.display()
    );
    api::serve(listener, embedded.state.clone(), shutdown_signal()).await?;
    tracing::info!("draining: stopping the projector");
    embedded.shutdown().await;
    tracing::info!("stopped");
    Ok(())
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
