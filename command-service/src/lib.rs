//! The command side of the loyalty platform (SPEC §4, §5, §7, §8).
//!
//! - [`http`]: the JSON command API for POS terminals and admin tools (axum), its OpenAPI
//!   document, health and metrics endpoints.
//! - [`commands`]: the use cases, which hand the domain the facts it needs (program in force,
//!   server clock, reward entry) and run commands through the [`store`].
//! - [`store`]: the command executor on the postgres-es event store, with an in-process cache of
//!   aggregates verified by the optimistic lock.
//! - [`idempotency`]: `Idempotency-Key` replay (API keys per org and role are checked in
//!   [`http::auth`]).
//! - [`relay`]: publishes every committed event to JetStream, exactly once in effect.
//! - [`cli`]: `serve` (the default), `relay`, `migrate`, `keys create|revoke`.
//!
//! [`run`] starts all of it on a listener the caller bound, so tests can use port 0:
//!
//! ```no_run
//! # async fn demo(config: command_service::Config) -> anyhow::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! println!("listening on {}", listener.local_addr()?);
//! command_service::run(config, listener, common::shutdown::signal()).await
//! # }
//! ```

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub mod cli;
pub mod commands;
pub mod config;
pub mod http;
pub mod idempotency;
pub mod relay;
pub mod store;

pub use cli::Cli;
pub use config::Config;

use crate::commands::{Commands, CommandsConfig};
use crate::idempotency::Idempotency;
use crate::relay::{Relay, RelayConfig};
use crate::store::{GroupCommit, RetryPolicy};

/// How often completed idempotency records past their retention are purged.
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// Serves the command API on `listener` (and runs the relay unless disabled) until `shutdown`
/// completes; then stops accepting requests, finishes the running ones and stops the relay.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let pool = common::config::connect_db(&config.db).await?;
    if config.migrate {
        schema::migrate(&pool).await.context("applying migrations")?;
    }
    let nats = common::config::connect_nats(&config.nats).await?;

    let commands = Commands::new(
        pool.clone(),
        CommandsConfig {
            cache_capacity: config.aggregate_cache_size,
            retry: RetryPolicy {
                max_attempts: config.command_max_attempts.max(1),
                ..RetryPolicy::default()
            },
            budget_retry: RetryPolicy::BUDGET,
            job_concurrency: config.job_concurrency,
            group_commit: GroupCommit {
                workers: config.append_workers,
                max_batch: config.append_batch_max,
            },
        },
    );
    let idempotency = Idempotency::new(&pool, config.idempotency_lease());
    let tasks = TaskTracker::new();
    let credentials = common::credentials::Credentials::new(pool.clone(), config.secrets.pepper());
    let state = http::AppState::new(
        pool.clone(),
        credentials,
        commands,
        idempotency.clone(),
        tasks.clone(),
        http::state::Limits {
            max_body_bytes: config.max_body_bytes,
            max_in_flight: config.max_in_flight,
            latency_target: (config.shed_latency_target_ms > 0)
                .then(|| Duration::from_millis(config.shed_latency_target_ms)),
            rate_per_key: config.rate_limit_per_key,
        },
    );

    let stop = CancellationToken::new();
    let background = TaskTracker::new();
    if config.relay_enabled {
        let relay = Relay::new(
            RelayConfig {
                database_url: config.db.database_url.clone(),
                nats: config.nats.clone(),
                args: config.relay.clone(),
            },
            nats.clone(),
        );
        background.spawn(relay.run(stop.child_token()));
    }
    background.spawn(purge_idempotency(
        idempotency,
        config.idempotency_retention(),
        stop.child_token(),
    ));

    let address = listener.local_addr().context("listener address")?;
    tracing::info!(%address, relay = config.relay_enabled, "command-service listening");
    let signal_stop = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        signal_stop.cancel();
    });
    let served = axum::serve(
        listener,
        http::router(state, Some(nats), config.request_timeout()),
    )
    .with_graceful_shutdown(stop.clone().cancelled_owned())
    .await
    .context("serving HTTP");

    stop.cancel();
    tasks.close();
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        tracing::warn!(?grace, "commands still running at shutdown");
    }
    background.close();
    background.wait().await;
    pool.close().await;
    tracing::info!("command-service stopped");
    served
}

/// Runs only the relay until `shutdown` (`command-service relay`).
pub async fn run_relay(
    config: RelayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let nats = common::config::connect_nats(&config.nats).await?;
    let stop = CancellationToken::new();
    let signal_stop = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        signal_stop.cancel();
    });
    Relay::new(config, nats).run(stop).await
}

async fn purge_idempotency(idempotency: Idempotency, retention: Duration, stop: CancellationToken) {
    loop {
        match idempotency.purge(retention).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "purged old idempotency records"),
            Err(error) => tracing::warn!(error = format!("{error:#}"), "purging idempotency records failed"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PURGE_INTERVAL) => {}
        }
    }
}
