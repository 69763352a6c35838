//! The query service: GraphQL (async-graphql on axum) over the read models, for storefront
//! widgets and analysts (SPEC §7, §8).
//!
//! - `POST /graphql`: queries, authenticated by `Authorization: Bearer <key>` (storefront or
//!   analyst keys; a storefront widget's publishable key, with `X-Customer-Token: <jwt>` for
//!   its shopper's member; see [`auth`]), and the one mutation, `redeemReward`, which a
//!   customer token sends through the command API ([`redeem`]).
//! - `GET /graphql`: GraphiQL; with a websocket upgrade (also at `/graphql/ws`): subscriptions
//!   over `graphql-transport-ws` (or the legacy `graphql-ws`), authenticated by the
//!   `connection_init` payload `{"Authorization": "Bearer <key>"}`.
//! - `GET /graphql/schema.graphql`: the served SDL (checked in at `schema/graphql/schema.graphql`).
//! - `GET /widget.js`, `/widget-demo`, `/dashboard`: the storefront widget, its demo page and
//!   the analyst dashboard ([`web`]).
//! - `/healthz`, `/readyz`, `/metrics` from [`common::health`].
//!
//! It reads only the read models the projector maintains and, for a member's history and the
//! starting point of live updates, the event store. Live updates come from JetStream
//! ([`live`]), never from polling.
//!
//! ```no_run
//! # async fn demo(config: query_service::Config) -> anyhow::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! query_service::run(config, listener, common::shutdown::signal()).await
//! # }
//! ```

pub mod auth;
pub mod card_cache;
pub mod cursor;
pub mod db;
pub mod document_size;
pub mod error;
pub mod graphql;
mod http;
pub mod live;
pub mod loaders;
pub mod redeem;
pub mod storefront;
pub mod types;
pub mod web;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::db::Db;
use crate::graphql::Schemas;
use crate::live::LiveFeed;

pub use crate::http::{router, AppState};

/// The listen address unless `--listen` / `LISTEN_ADDR` says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8082";

/// Configuration of the query service (flags and environment).
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "query-service", about = "GraphQL over the loyalty read models")]
pub struct Config {
    #[command(flatten)]
    pub db: common::config::DbArgs,
    #[command(flatten)]
    pub nats: common::config::NatsArgs,
    #[command(flatten)]
    pub listen: common::config::ListenArgs,
    #[command(flatten)]
    pub limits: Limits,
    #[command(flatten)]
    pub secrets: common::config::SecretsArgs,
    /// The command API that `redeemReward` sends a customer's redemption to, with the
    /// customer's own publishable key and token.
    #[arg(long, env = "COMMAND_API_URL", default_value = DEFAULT_COMMAND_API_URL)]
    pub command_api_url: String,
    /// Sign customer tokens for demo members server-side (the `/widget-demo` page). Never in
    /// production.
    #[arg(long, env = "WIDGET_DEMO", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub widget_demo: bool,
    /// Most GraphQL requests (`POST /graphql`) worked on at once; beyond it a request is
    /// answered 503 `OVERLOADED` with `Retry-After` at once instead of queueing (0: no bound).
    /// Subscriptions are not counted: they hold a connection, not work.
    #[arg(long, env = "GRAPHQL_MAX_IN_FLIGHT", default_value_t = 64)]
    pub max_in_flight: usize,
    /// Members whose cards (answers to queries of one member) are kept in memory, dropped
    /// when the projector changes the member (`card_cache`); 0: no cache.
    #[arg(long, env = "GRAPHQL_CARD_CACHE_MEMBERS", default_value_t = DEFAULT_CARD_CACHE_MEMBERS)]
    pub card_cache_members: usize,
    /// Longest time a cached card is served, in milliseconds: how old what a card shows of
    /// other members, of the org and of the clock (ranks, budgets, the program) may be.
    #[arg(long, env = "GRAPHQL_CARD_CACHE_MAX_AGE_MS", default_value_t = DEFAULT_CARD_CACHE_MAX_AGE_MS)]
    pub card_cache_max_age_ms: u64,
}

/// Members whose cards are cached unless `--card-cache-members` says otherwise.
pub const DEFAULT_CARD_CACHE_MEMBERS: usize = 10_000;
/// `--card-cache-max-age-ms` unless set.
pub const DEFAULT_CARD_CACHE_MAX_AGE_MS: u64 = 2_000;

/// The command API `redeemReward` calls unless `--command-api-url` says otherwise (the command
/// service's default address).
pub const DEFAULT_COMMAND_API_URL: &str = "http://127.0.0.1:8080";

impl Config {
    /// The defaults, pointed at `db` and `nats` (what tests and tools start from).
    pub fn new(db: common::config::DbArgs, nats: common::config::NatsArgs) -> Self {
        Self {
            db,
            nats,
            listen: common::config::ListenArgs::default(),
            limits: Limits::default(),
            secrets: common::config::SecretsArgs::default(),
            command_api_url: DEFAULT_COMMAND_API_URL.to_owned(),
            widget_demo: false,
            max_in_flight: 64,
            card_cache_members: DEFAULT_CARD_CACHE_MEMBERS,
            card_cache_max_age_ms: DEFAULT_CARD_CACHE_MAX_AGE_MS,
        }
    }
}

/// Limits every query is validated against before it runs.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Limits {
    /// Deepest field nesting a query may have.
    #[arg(long, env = "GRAPHQL_MAX_DEPTH", default_value_t = Limits::DEFAULT.max_depth)]
    pub max_depth: usize,
    /// Highest complexity a query may have: one per field, lists count their page size times
    /// their items' fields.
    #[arg(long, env = "GRAPHQL_MAX_COMPLEXITY", default_value_t = Limits::DEFAULT.max_complexity)]
    pub max_complexity: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        max_depth: 10,
        max_complexity: 5_000,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Serves the query service on `listener` until `shutdown` completes.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let pool = common::config::connect_db_with(&config.db, &[common::config::GENERIC_PLANS]).await?;
    let nats = common::config::connect_nats(&config.nats).await?;
    let cancel = CancellationToken::new();
    let live = Arc::new(LiveFeed::default());
    let feed = live::start(
        Arc::clone(&live),
        async_nats::jetstream::new(nats.clone()),
        config.nats.nats_stream.clone(),
        config.nats.nats_subject_prefix.clone(),
        cancel.clone(),
    )
    .await;

    let db = Db::new(pool.clone());
    let redeemer = redeem::Redeemer::new(&config.command_api_url)?;
    let schemas = Arc::new(Schemas::with_redeemer(db.clone(), live, redeemer, config.limits));
    let credentials = common::credentials::Credentials::new(pool.clone(), config.secrets.pepper());
    let demo = storefront::DemoTokens::new(config.widget_demo, &credentials);
    let cards = card_cache::CardCache::new(
        pool.clone(),
        config.card_cache_members,
        std::time::Duration::from_millis(config.card_cache_max_age_ms),
    );
    let app = router(AppState {
        db,
        cards,
        schemas,
        credentials,
        demo: demo.clone(),
        in_flight: common::overload::InFlight::new(config.max_in_flight, None, "graphql"),
    })
    .merge(web::router(demo))
    .merge(common::health::router(pool, Some(nats)));

    let addr = listener.local_addr().context("listener address")?;
    tracing::info!(%addr, "query-service listening");
    let stop = cancel.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Ends the live feed, which completes every open subscription.
            stop.cancel();
        })
        .await
        .context("serving HTTP");
    cancel.cancel();
    if let Err(error) = feed.await {
        tracing::error!(%error, "live feed task failed");
    }
    served
}
