//! The query service: GraphQL (async-graphql on axum) over the read models, for storefront
//! widgets and analysts (SPEC §7, §8).
//!
//! - `POST /graphql`: queries, authenticated by `Authorization: Bearer <key>` (storefront or
//!   analyst keys; see [`auth`]).
//! - `GET /graphql`: GraphiQL; with a websocket upgrade (also at `/graphql/ws`): subscriptions
//!   over `graphql-transport-ws` (or the legacy `graphql-ws`), authenticated by the
//!   `connection_init` payload `{"Authorization": "Bearer <key>"}`.
//! - `GET /graphql/schema.graphql`: the served SDL (checked in at `schema/graphql/schema.graphql`).
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
pub mod cursor;
pub mod db;
pub mod document_size;
pub mod error;
pub mod graphql;
pub mod live;
pub mod loaders;
pub mod types;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use async_graphql::http::{GraphiQLSource, ALL_WEBSOCKET_PROTOCOLS};
use async_graphql::Data;
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::extract::ws::{rejection::WebSocketUpgradeRejection, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::auth::Caller;
use crate::db::Db;
use crate::error::QueryError;
use crate::graphql::{QuerySchema, Schemas};
use crate::live::LiveFeed;

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

/// Everything a request needs.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub schemas: Arc<Schemas>,
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
    let schemas = Arc::new(Schemas::new(db.clone(), live, config.limits));
    let app = router(AppState { db, schemas }).merge(common::health::router(pool, Some(nats)));

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

/// The HTTP routes of the GraphQL API (without the health router).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/graphql", get(graphiql_or_websocket).post(graphql))
        .route("/graphql/ws", get(websocket))
        .route("/graphql/schema.graphql", get(sdl))
        .with_state(state)
}

async fn graphql(State(state): State<AppState>, headers: HeaderMap, request: GraphQLRequest) -> Response {
    let started = Instant::now();
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|value| value.to_str().unwrap_or("\u{fffd}"));
    let caller = match auth::from_header(state.db.pool(), authorization).await {
        Ok(caller) => caller,
        Err(error) => {
            metrics::counter!("graphql_requests_total", "kind" => "query", "outcome" => "unauthenticated")
                .increment(1);
            return error_response(error);
        }
    };
    let request = request.into_inner();
    let (org, role) = match &caller {
        Caller::Key(key) => (key.org_id.clone(), key.role.as_str()),
        Caller::Anonymous => (String::new(), "anonymous"),
    };
    let operation = request.operation_name.clone().unwrap_or_default();
    let span = tracing::info_span!("graphql", org, role, operation);
    let (_, kind) = state.schemas.for_request(&request);
    let response = state.schemas.execute(request, caller).instrument(span).await;
    let outcome = if response.errors.is_empty() { "ok" } else { "error" };
    metrics::counter!("graphql_requests_total", "kind" => kind, "outcome" => outcome).increment(1);
    metrics::histogram!("graphql_request_duration_seconds", "kind" => kind)
        .record(started.elapsed().as_secs_f64());
    GraphQLResponse::from(response).into_response()
}

async fn graphiql_or_websocket(
    State(state): State<AppState>,
    protocol: Result<GraphQLProtocol, StatusCode>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match (protocol, upgrade) {
        (Ok(protocol), Ok(upgrade)) => serve_websocket(state, protocol, upgrade),
        _ => Html(
            GraphiQLSource::build()
                .endpoint("/graphql")
                .subscription_endpoint("/graphql/ws")
                .title("Loyalty GraphQL")
                .finish(),
        )
        .into_response(),
    }
}

async fn websocket(
    State(state): State<AppState>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    serve_websocket(state, protocol, upgrade)
}

fn serve_websocket(state: AppState, protocol: GraphQLProtocol, upgrade: WebSocketUpgrade) -> Response {
    let schema: QuerySchema = state.schemas.strict().clone();
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| {
            GraphQLWebSocket::new(socket, schema, protocol)
                .on_connection_init(move |payload| async move {
                    let caller = auth::from_init_payload(state.db.pool(), &payload)
                        .await
                        .map_err(async_graphql::Error::from)?;
                    let mut data = Data::default();
                    data.insert(caller);
                    Ok(data)
                })
                .serve()
        })
}

/// A request refused before it reached the schema (401, or 500 if the key store failed).
fn error_response(error: QueryError) -> Response {
    let status = if error.code() == "INTERNAL" {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::UNAUTHORIZED
    };
    let mut server_error = async_graphql::ServerError::new(error.message(), None);
    server_error.extensions = async_graphql::Error::from(error).extensions;
    let body = async_graphql::Response::from_errors(vec![server_error]);
    (status, GraphQLResponse::from(body)).into_response()
}

async fn sdl(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        state.schemas.strict().sdl(),
    )
}
