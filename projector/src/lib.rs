//! The projector: builds the read models of SPEC §6 in Postgres from the event stream, and
//! audits them against the event store.
//!
//! - [`consumer`]: a durable JetStream pull consumer (explicit acks) feeding batches to
//!   [`batch::Projector`], which applies each batch in two parts side by side (by aggregate),
//!   each in one transaction together with its per-aggregate checkpoints: exactly-once effect on an at-least-once stream, sequence gaps
//!   filled from the `events` table, poison events parked (`rm.parked_events`) instead of
//!   redelivered forever.
//! - [`read_models`]: one module per read model (balance and ledger, tier, stamps, RFM,
//!   leaderboard, directory, program), each with its rows, what each event does to them (pure,
//!   shared by the live consumer and the audit replay) and the SQL that writes them;
//!   [`ReadModel`] names them. [`progress`]: checkpoints and parked events.
//! - [`rfm`] (the RFM read model): scores and segments, recomputed per org in one SQL pass, on
//!   a schedule, on demand, and ([`rfm_schedule`]) at start-up, for an org's first customers
//!   and after a bulk load.
//! - [`audit`]: rebuild from the event store (replay) and compare; balance and tier as of a time.
//!
//! The tables live in the Postgres schema `rm`; `schema/migrations/0004_read_models.sql`
//! documents them for readers (the query service).
//!
//! Metrics (Prometheus, `/metrics`): `projector_events_applied_total{read_model}` (balance,
//! ledger, tier, stamps, rfm, leaderboard, directory, program), `projector_events_received_total`,
//! `projector_events_duplicate_total`, `projector_events_gap_filled_total`,
//! `projector_events_parked_total`, `projector_batch_size`, `projector_batch_seconds`,
//! `projector_batch_failures_total`, `projector_event_lag_seconds` (commit in the event store to
//! applied), `projector_consumer_pending_messages` and `projector_consumer_ack_pending_messages`
//! (the stream backlog of the durable consumer), `projector_rfm_recompute_seconds`.
//!
//! [`run`] serves `/healthz`, `/readyz` and `/metrics` on the given listener while consuming;
//! [`cli`] is the command line (`projector`, `projector audit`, `projector as-of`,
//! `projector rfm-recompute`, `projector retry-parked`).

use std::future::{Future, IntoFuture as _};
use std::time::Duration;

use anyhow::Context as _;
use common::config::{DbArgs, ListenArgs, NatsArgs};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

pub mod audit;
pub mod batch;
mod chain;
pub mod cli;
pub mod consumer;
pub mod event;
pub mod progress;
pub mod read_models;
pub mod rfm_schedule;
pub mod simulate;

pub use batch::{BatchReport, Projector};
pub use read_models::{rfm, ReadModel};

/// Where the projector listens unless `--listen` / `LISTEN_ADDR` says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8081";
/// The live read-model schema.
pub const DEFAULT_SCHEMA: &str = "rm";

/// Configuration of the projector (flags or environment).
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub listen: ListenArgs,
    /// Name of the durable JetStream consumer.
    #[arg(long, global = true, env = "PROJECTOR_CONSUMER", default_value = "projector")]
    pub consumer: String,
    /// Most events applied per Postgres transaction.
    #[arg(long, global = true, env = "PROJECTOR_BATCH_SIZE", default_value_t = 500,
          value_parser = clap::value_parser!(u16).range(1..=10_000))]
    pub batch_size: u16,
    /// Milliseconds a batch waits for more messages after its first, when they are not already
    /// waiting (0: apply what has arrived at once). 0 by default: batches grow by themselves
    /// while the previous one is applied, and a wait only adds to the lag (at 1,200 purchases/s,
    /// 20 ms of linger gave a lag p99 of 190-200 ms, none 136-142 ms, same throughput).
    #[arg(long, global = true, env = "PROJECTOR_BATCH_LINGER_MS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=1_000))]
    pub batch_linger_ms: u64,
    /// Seconds JetStream waits for an ack before redelivering a message.
    #[arg(long, global = true, env = "PROJECTOR_ACK_WAIT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub ack_wait_secs: u64,
    /// Seconds between scheduled RFM recomputations of every org (0: never).
    #[arg(
        long,
        global = true,
        env = "PROJECTOR_RFM_INTERVAL_SECS",
        default_value_t = 900
    )]
    pub rfm_interval_secs: u64,
    /// Also recompute RFM scores at start-up, when an org gets its first purchases, and after
    /// a bulk load, not only on the schedule.
    #[arg(long, global = true, env = "PROJECTOR_RFM_EAGER", default_value_t = true, action = clap::ArgAction::Set)]
    pub rfm_eager: bool,
    /// Postgres schema of the read models.
    #[arg(long, global = true, env = "PROJECTOR_SCHEMA", default_value = DEFAULT_SCHEMA)]
    pub schema: String,
}

impl Config {
    /// A configuration with every default, for `db` and `nats`.
    pub fn new(db: DbArgs, nats: NatsArgs) -> Self {
        Self {
            db,
            nats,
            listen: ListenArgs::default(),
            consumer: "projector".to_owned(),
            batch_size: 500,
            batch_linger_ms: 0,
            ack_wait_secs: 30,
            rfm_interval_secs: 900,
            rfm_eager: true,
            schema: DEFAULT_SCHEMA.to_owned(),
        }
    }

    fn consumer_settings(&self) -> consumer::ConsumerSettings {
        consumer::ConsumerSettings {
            nats: self.nats.clone(),
            name: self.consumer.clone(),
            batch_size: usize::from(self.batch_size),
            linger: Duration::from_millis(self.batch_linger_ms),
            ack_wait: Duration::from_secs(self.ack_wait_secs),
        }
    }
}

/// Checks a read-model schema name before it is used in `search_path` (and in DDL by the audit).
pub fn check_schema_name(schema: &str) -> anyhow::Result<()> {
    let mut chars = schema.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && schema.len() <= 63;
    anyhow::ensure!(
        valid,
        "invalid read-model schema name '{schema}': expected [a-z_][a-z0-9_]*"
    );
    Ok(())
}

/// Opens the database and applies the migrations.
pub async fn connect(db: &DbArgs) -> anyhow::Result<PgPool> {
    let pool = common::config::connect_db_with(db, &[common::config::READ_SIDE]).await?;
    schema::migrate(&pool).await.context("applying migrations")?;
    Ok(pool)
}

/// Runs the projector until `shutdown` completes: consumes the stream, recomputes RFM on
/// schedule, and serves the health and metrics endpoints on `listener`. Returns early with the
/// error if the consumer cannot run (e.g. NATS refuses the stream).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let pool = connect(&config.db).await?;
    let nats = common::config::connect_nats(&config.nats).await?;
    let rfm_trigger = rfm_schedule::RfmTrigger::default();
    let projector =
        Projector::new(pool.clone(), config.schema.clone())?.with_rfm_trigger(rfm_trigger.clone());
    let token = CancellationToken::new();
    let addr = listener.local_addr().context("reading the listen address")?;
    tracing::info!(%addr, consumer = %config.consumer, stream = %config.nats.nats_stream, "projector started");

    let app = common::health::router(pool.clone(), Some(nats.clone()));
    // The tasks are aborted if this future is dropped (a killed projector stops entirely).
    let http = AbortOnDropHandle::new(tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(token.clone().cancelled_owned())
            .into_future(),
    ));
    let mut consumer = AbortOnDropHandle::new(tokio::spawn(consumer::consume(
        nats,
        config.consumer_settings(),
        projector,
        token.clone(),
    )));
    let scheduler = AbortOnDropHandle::new(tokio::spawn(rfm_schedule::run(
        pool,
        config.schema.clone(),
        config.rfm_interval_secs,
        config.rfm_eager,
        rfm_trigger,
        token.clone(),
    )));

    let consumed = tokio::select! {
        () = shutdown => {
            token.cancel();
            (&mut consumer).await
        }
        result = &mut consumer => {
            token.cancel();
            result
        }
    };
    scheduler.await.ok();
    if let Ok(Err(error)) = http.await {
        tracing::error!(%error, "HTTP server failed");
    }
    consumed.context("the consumer task panicked")??;
    tracing::info!("projector stopped");
    Ok(())
}
