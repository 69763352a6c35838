//! The platform in one process, for development: the command service (with its relay to
//! JetStream), the projector and the query service, each on its own listener, on one tokio
//! runtime, stopped together.
//!
//! Production runs the three binaries as separate processes (see `docker-compose.yml`); this is
//! the same code (each crate's `run(config, listener, shutdown)`), minus two builds, two
//! processes and two sets of logs. One difference to know: the three share the process-wide
//! Prometheus recorder, so each `/metrics` shows the metrics of all three.
//!
//! Settings: `DATABASE_URL`, `NATS_URL` (and the rest of [`common::config`]) are shared; each
//! service listens on its own address (`--command-listen`, `--projector-listen`,
//! `--query-listen`); every other setting of a service comes from its own environment
//! variables, as when it runs alone (`RELAY_BATCH_SIZE`, `GRAPHQL_MAX_DEPTH`, ...).

use std::future::Future;

use anyhow::Context as _;
use clap::Parser as _;
use common::config::{DbArgs, NatsArgs};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Configuration of the one-process platform.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "loyalty-dev",
    version,
    about = "The loyalty platform (command service + relay, projector, query service) in one process"
)]
pub struct Config {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Address of the command API.
    #[arg(long, env = "COMMAND_LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub command_listen: String,
    /// Address of the projector's health and metrics endpoints.
    #[arg(long, env = "PROJECTOR_LISTEN_ADDR", default_value = "127.0.0.1:8081")]
    pub projector_listen: String,
    /// Address of the GraphQL API.
    #[arg(long, env = "QUERY_LISTEN_ADDR", default_value = "127.0.0.1:8082")]
    pub query_listen: String,
}

/// The bound listeners of the three services.
pub struct Listeners {
    pub command: TcpListener,
    pub projector: TcpListener,
    pub query: TcpListener,
}

impl Listeners {
    /// Binds the three configured addresses.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let bind = |addr: String, what: &'static str| async move {
            TcpListener::bind(&addr)
                .await
                .with_context(|| format!("{what}: cannot listen on {addr}"))
        };
        Ok(Self {
            command: bind(config.command_listen.clone(), "command service").await?,
            projector: bind(config.projector_listen.clone(), "projector").await?,
            query: bind(config.query_listen.clone(), "query service").await?,
        })
    }
}

#[derive(clap::Parser)]
struct CommandServiceEnv {
    #[command(flatten)]
    config: command_service::Config,
}

/// Each service's own configuration, from its environment variables (as when it runs alone),
/// with the shared database and NATS settings of `config`.
pub fn service_configs(
    config: &Config,
) -> anyhow::Result<(command_service::Config, projector::Config, query_service::Config)> {
    let mut command = CommandServiceEnv::try_parse_from(["command-service"])
        .context("command-service settings in the environment")?
        .config;
    let mut projector = projector::cli::Cli::try_parse_from(["projector"])
        .context("projector settings in the environment")?
        .config;
    let mut query = query_service::Config::try_parse_from(["query-service"])
        .context("query-service settings in the environment")?;
    command.db = config.db.clone();
    command.nats = config.nats.clone();
    projector.db = config.db.clone();
    projector.nats = config.nats.clone();
    query.db = config.db.clone();
    query.nats = config.nats.clone();
    Ok((command, projector, query))
}

/// Applies the migrations, then runs the three services until `shutdown` completes or one of
/// them fails (which stops the others).
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Migrate before anything starts: the projector and the query service need the read-model
    // tables that the command service would otherwise create concurrently.
    let pool = common::config::connect_db(&config.db).await?;
    schema::migrate(&pool).await.context("applying migrations")?;
    pool.close().await;

    let (command, projector, mut query) = service_configs(&config)?;
    if std::env::var_os("COMMAND_API_URL").is_none() {
        // `redeemReward` goes to the command service of this process, wherever it listens.
        let addr = listeners
            .command
            .local_addr()
            .context("command-service address")?;
        query.command_api_url = format!("http://{addr}");
    }
    let stop = CancellationToken::new();
    let mut services = JoinSet::new();
    services.spawn(named(
        "command-service",
        command_service::run(command, listeners.command, stop.clone().cancelled_owned()),
    ));
    services.spawn(named(
        "projector",
        projector::run(projector, listeners.projector, stop.clone().cancelled_owned()),
    ));
    services.spawn(named(
        "query-service",
        query_service::run(query, listeners.query, stop.clone().cancelled_owned()),
    ));

    let mut failure: Option<anyhow::Error> = None;
    tokio::select! {
        () = shutdown => tracing::info!("stopping the three services"),
        Some(first) = services.join_next() => {
            // Nothing stops a service before shutdown but a failure.
            failure = Some(match first {
                Ok((name, Ok(()))) => anyhow::anyhow!("{name} stopped unexpectedly"),
                other => outcome_error(other).unwrap_or_else(|| anyhow::anyhow!("a service stopped")),
            });
        }
    }
    stop.cancel();
    while let Some(outcome) = services.join_next().await {
        if let Some(error) = outcome_error(outcome) {
            tracing::error!(error = format!("{error:#}"), "while stopping");
            failure.get_or_insert(error);
        }
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

async fn named(
    name: &'static str,
    service: impl Future<Output = anyhow::Result<()>>,
) -> (&'static str, anyhow::Result<()>) {
    (name, service.await)
}

/// The error of a finished service task, if it failed or panicked.
fn outcome_error(
    outcome: Result<(&'static str, anyhow::Result<()>), tokio::task::JoinError>,
) -> Option<anyhow::Error> {
    match outcome {
        Ok((_, Ok(()))) => None,
        Ok((name, Err(error))) => Some(error.context(format!("{name} failed"))),
        Err(error) => Some(anyhow::anyhow!("a service task panicked: {error}")),
    }
}
