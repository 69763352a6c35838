//! The HTTP side of the GraphQL API: `POST /graphql` (authenticated from the `Authorization`
//! and `X-Customer-Token` headers), GraphiQL and the websocket upgrade on `GET`, and the served
//! SDL.

use std::sync::Arc;
use std::time::Instant;

use async_graphql::http::{GraphiQLSource, ALL_WEBSOCKET_PROTOCOLS};
use async_graphql::Data;
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::extract::ws::{rejection::WebSocketUpgradeRejection, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tracing::Instrument as _;

use crate::auth;
use crate::card_cache::{Answer, CardCache, Lookup};
use crate::db::Db;
use crate::error::QueryError;
use crate::graphql::{QuerySchema, Schemas};
use common::credentials::Credentials;

/// Everything a request needs.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub schemas: Arc<Schemas>,
    /// API keys and signing secrets, cached.
    pub credentials: Credentials,
    /// Demo customer tokens (`--widget-demo`); `None` unless enabled.
    pub demo: Option<crate::storefront::DemoTokens>,
    /// The bound on queries in flight (`common::overload`).
    pub in_flight: common::overload::InFlight,
    /// Member cards kept in memory.
    pub cards: CardCache,
}

/// The HTTP routes of the GraphQL API (without the health router).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/graphql", get(graphiql_or_websocket).post(graphql))
        .route("/graphql/ws", get(websocket))
        .route("/graphql/schema.graphql", get(sdl))
        .layer(cors())
        .with_state(state)
}

/// The widget runs in shops' pages, on their origins: any origin may call the API. That
/// opens nothing: credentials travel in headers that a page must hold itself (no cookies are
/// used or allowed), and what they can read is decided by the key or token alone.
fn cors() -> tower_http::cors::CorsLayer {
    use axum::http::{HeaderName, Method};
    tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("x-customer-token"),
        ])
        .max_age(std::time::Duration::from_secs(600))
}

async fn graphql(State(state): State<AppState>, headers: HeaderMap, request: GraphQLRequest) -> Response {
    let started = Instant::now();
    let Some(_admitted) = state.in_flight.try_admit() else {
        return overloaded();
    };
    let header = |name: &str| {
        headers
            .get(name)
            .map(|value| value.to_str().unwrap_or("\u{fffd}"))
    };
    let authorization = header(header::AUTHORIZATION.as_str());
    let customer_token = header(auth::CUSTOMER_TOKEN_HEADER);
    let caller = match auth::from_headers(&state.credentials, authorization, customer_token).await {
        Ok(caller) => caller,
        Err(error) => {
            metrics::counter!("graphql_requests_total", "kind" => "query", "outcome" => "unauthenticated")
                .increment(1);
            return error_response(error);
        }
    };
    let request = request.into_inner();
    let (org, role) = caller.describe();
    let operation = request.operation_name.clone().unwrap_or_default();
    let span = tracing::info_span!("graphql", org, role, operation);
    let ticket = match state
        .cards
        .key(&caller, &request)
        .map(|key| state.cards.lookup(key))
    {
        Some(Lookup::Hit(answer)) => {
            span.in_scope(|| tracing::debug!("answered from the card cache"));
            metrics::counter!("graphql_requests_total", "kind" => "query", "outcome" => "ok").increment(1);
            metrics::histogram!("graphql_request_duration_seconds", "kind" => "query")
                .record(started.elapsed().as_secs_f64());
            return answer_response(answer);
        }
        Some(Lookup::Miss(ticket)) => Some(ticket),
        None => None,
    };
    let executed = state.schemas.execute_kind(request, caller).instrument(span).await;
    let kind = executed.kind;
    let outcome = if executed.response.errors.is_empty() {
        "ok"
    } else {
        "error"
    };
    metrics::counter!("graphql_requests_total", "kind" => kind, "outcome" => outcome).increment(1);
    metrics::histogram!("graphql_request_duration_seconds", "kind" => kind)
        .record(started.elapsed().as_secs_f64());
    let (card, response) = (
        executed.card,
        GraphQLResponse::from(executed.response).into_response(),
    );
    match ticket {
        Some(ticket) if card.is_some() => {
            let (parts, body) = response.into_parts();
            // The body is one buffer already (GraphQLResponse serialises it whole).
            let body = match axum::body::to_bytes(body, usize::MAX).await {
                Ok(body) => body,
                Err(error) => {
                    tracing::error!(%error, "reading back a serialised answer");
                    return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                }
            };
            let answer = Answer::new(body, parts.headers);
            state.cards.store(ticket, card, answer.clone());
            answer_response(answer)
        }
        _ => response,
    }
}

/// A 200 with a serialised answer and its headers.
fn answer_response(answer: Answer) -> Response {
    let mut response = Response::new(axum::body::Body::from(answer.body));
    *response.headers_mut() = answer.headers;
    response
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
                    let caller = auth::from_init_payload(&state.credentials, &payload)
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
    let status = if error.is_unauthenticated() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    let mut server_error = async_graphql::ServerError::new(error.message(), None);
    server_error.extensions = async_graphql::Error::from(error).extensions;
    let body = async_graphql::Response::from_errors(vec![server_error]);
    (status, GraphQLResponse::from(body)).into_response()
}

/// A query shed because the process is at capacity: 503 with `Retry-After`, in the GraphQL
/// error shape.
fn overloaded() -> Response {
    let mut error = async_graphql::ServerError::new(
        "the service is at capacity; retry after the time in Retry-After",
        None,
    );
    let mut extensions = async_graphql::ErrorExtensionValues::default();
    extensions.set("code", "OVERLOADED");
    error.extensions = Some(extensions);
    let body = async_graphql::Response::from_errors(vec![error]);
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, GraphQLResponse::from(body)).into_response();
    let retry_after = common::overload::retry_after_secs(common::overload::RETRY_AFTER);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(retry_after));
    response
}

async fn sdl(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        state.schemas.strict().sdl(),
    )
}
