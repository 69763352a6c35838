//! The command service: the POS command API on the Postgres event store (SPEC §4, §7, §8).
//!
//! At this stage it serves `/healthz`, `/readyz` and `/metrics` only; the `/v1` command API
//! and the relay to JetStream are being built. Its CLI also administers the database:
//! `command-service migrate` applies the schema migrations and
//! `command-service keys create --org <org> --role <role>` creates an API key.
//!
//! ```no_run
//! # async fn demo(config: command_service::Config) -> anyhow::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! command_service::run(config, listener, common::shutdown::signal()).await
//! # }
//! ```

use std::future::Future;

use anyhow::Context as _;
use common::config::{DbArgs, ListenArgs, NatsArgs};
use common::keys::Role;
use tokio::net::TcpListener;
use uuid::Uuid;

/// The listen address unless `--listen` / `LISTEN_ADDR` says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Configuration of the service (flags and environment).
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub listen: ListenArgs,
}

/// The command line: serve (the default), or an administrative command.
#[derive(Debug, clap::Parser)]
#[command(
    name = "command-service",
    version,
    about = "Loyalty command API (POS terminals, admin tools)"
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Serve the HTTP API (what runs without a subcommand).
    Serve,
    /// Apply the database migrations that are not applied yet.
    Migrate,
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key; the key is printed alone on the last line and cannot be shown again.
    Create {
        /// The org the key belongs to.
        #[arg(long)]
        org: String,
        /// pos, admin, storefront or analyst.
        #[arg(long)]
        role: Role,
    },
    /// Revoke a key by its id.
    Revoke {
        #[arg(long)]
        key_id: Uuid,
    },
}

impl Cli {
    /// Runs what the command line asks for.
    pub async fn execute(self) -> anyhow::Result<()> {
        match self.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                let listener = self.config.listen.bind(DEFAULT_LISTEN).await?;
                run(self.config, listener, common::shutdown::signal()).await
            }
            Command::Migrate => {
                let pool = common::config::connect_db(&self.config.db).await?;
                schema::migrate(&pool).await.context("applying migrations")?;
                println!("migrations applied");
                Ok(())
            }
            Command::Keys {
                command: KeysCommand::Create { org, role },
            } => {
                let pool = common::config::connect_db(&self.config.db).await?;
                let key = common::keys::create_key(&pool, &org, role)
                    .await
                    .context("is the database migrated? (command-service migrate)")?;
                println!("Created a {role} key for org {org}. It is shown only this once:");
                println!("{key}");
                Ok(())
            }
            Command::Keys {
                command: KeysCommand::Revoke { key_id },
            } => {
                let pool = common::config::connect_db(&self.config.db).await?;
                if common::keys::revoke(&pool, key_id).await? {
                    println!("revoked key {key_id}");
                    Ok(())
                } else {
                    anyhow::bail!("no active key with id {key_id}")
                }
            }
        }
    }
}

/// Serves the service on `listener` until `shutdown` completes.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let pool = common::config::connect_db(&config.db).await?;
    let nats = common::config::connect_nats(&config.nats).await?;
    let app = common::health::router(pool, Some(nats));
    let addr = listener.local_addr().context("listener address")?;
    tracing::info!(%addr, "command-service listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP")
}
