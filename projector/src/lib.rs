//! The projector: builds the read models in Postgres from the JetStream event stream, and
//! replays the event store for audits (SPEC §6).
//!
//! At this stage it serves `/healthz`, `/readyz` and `/metrics` only; the projections are
//! being built.
//!
//! ```no_run
//! # async fn demo(config: projector::Config) -> anyhow::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! projector::run(config, listener, common::shutdown::signal()).await
//! # }
//! ```

use std::future::Future;

use anyhow::Context as _;
use common::config::{DbArgs, ListenArgs, NatsArgs};
use tokio::net::TcpListener;

/// The listen address (health and metrics) unless `--listen` / `LISTEN_ADDR` says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8081";

/// Configuration of the projector (flags and environment).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "projector",
    version,
    about = "Builds the loyalty read models from JetStream"
)]
pub struct Config {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub listen: ListenArgs,
}

/// Runs the projector, serving its health endpoints on `listener`, until `shutdown` completes.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let pool = common::config::connect_db(&config.db).await?;
    let nats = common::config::connect_nats(&config.nats).await?;
    let app = common::health::router(pool, Some(nats));
    let addr = listener.local_addr().context("listener address")?;
    tracing::info!(%addr, "projector listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP")
}
