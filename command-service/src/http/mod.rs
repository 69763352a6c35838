//! The HTTP API (SPEC §7, §8): routes, middleware (request id, tracing span, Prometheus metrics),
//! the OpenAPI document, and the health endpoints from `common`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use sqlx::PgPool;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use uuid::Uuid;

use crate::commands::Commands;
use crate::idempotency::Idempotency;

mod doc_responses;
pub mod error;
pub mod extract;
pub mod jobs;
pub mod members;
pub mod program;
pub mod write;

use error::ApiError;
use extract::RequestId;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    commands: Commands,
    idempotency: Idempotency,
    tasks: TaskTracker,
    max_body_bytes: usize,
}

impl AppState {
    pub fn new(
        pool: PgPool,
        commands: Commands,
        idempotency: Idempotency,
        tasks: TaskTracker,
        max_body_bytes: usize,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                commands,
                idempotency,
                tasks,
                max_body_bytes,
            }),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    pub fn commands(&self) -> &Commands {
        &self.inner.commands
    }

    pub fn idempotency(&self) -> &Idempotency {
        &self.inner.idempotency
    }

    /// Tasks running commands; graceful shutdown waits for them.
    pub fn tasks(&self) -> &TaskTracker {
        &self.inner.tasks
    }

    pub fn max_body_bytes(&self) -> usize {
        self.inner.max_body_bytes
    }
}

/// The OpenAPI document of the command API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Loyalty command API",
        description = "Commands of POS terminals and admin tools. Every POST and PUT needs an \
                       `Idempotency-Key` header; errors are `{\"error\": {\"code\", \"message\", \"field\"}}`."
    ),
    paths(
        program::configure,
        program::get,
        program::register_location,
        members::enroll,
        members::get_member,
        members::get_member_by_external_id,
        members::record_purchase,
        members::record_purchase_by_external_id,
        members::refund_purchase,
        members::refund_purchase_by_external_id,
        members::redeem_reward,
        members::redeem_reward_by_external_id,
        members::adjust_points,
        members::adjust_points_by_external_id,
        jobs::expire_points,
        jobs::reevaluate_tiers,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "program", description = "Program and locations (admin)"),
        (name = "members", description = "Members and their points"),
        (name = "jobs", description = "System jobs over all members of an org (admin)"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        doc_responses::add_common_responses(openapi);
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key of the org: `Authorization: Bearer <key>`"))
                    .build(),
            ),
        );
    }
}

async fn openapi() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}

async fn not_found() -> ApiError {
    ApiError::RouteNotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// The full router of the service: API, OpenAPI document, health and metrics.
pub fn router(state: AppState, nats: Option<async_nats::Client>) -> Router {
    let max_body = state.max_body_bytes();
    let health = common::health::router(state.pool().clone(), nats);
    Router::new()
        .route(
            "/v1/orgs/{org}/program",
            put(program::configure).get(program::get),
        )
        .route("/v1/orgs/{org}/locations", post(program::register_location))
        .route("/v1/orgs/{org}/members", post(members::enroll))
        .route("/v1/orgs/{org}/members/{member_id}", get(members::get_member))
        .route(
            "/v1/orgs/{org}/members/{member_id}/purchases",
            post(members::record_purchase),
        )
        .route(
            "/v1/orgs/{org}/members/{member_id}/refunds",
            post(members::refund_purchase),
        )
        .route(
            "/v1/orgs/{org}/members/{member_id}/redemptions",
            post(members::redeem_reward),
        )
        .route(
            "/v1/orgs/{org}/members/{member_id}/adjustments",
            post(members::adjust_points),
        )
        .route(
            "/v1/orgs/{org}/members/by-external-id/{external_id}",
            get(members::get_member_by_external_id),
        )
        .route(
            "/v1/orgs/{org}/members/by-external-id/{external_id}/purchases",
            post(members::record_purchase_by_external_id),
        )
        .route(
            "/v1/orgs/{org}/members/by-external-id/{external_id}/refunds",
            post(members::refund_purchase_by_external_id),
        )
        .route(
            "/v1/orgs/{org}/members/by-external-id/{external_id}/redemptions",
            post(members::redeem_reward_by_external_id),
        )
        .route(
            "/v1/orgs/{org}/members/by-external-id/{external_id}/adjustments",
            post(members::adjust_points_by_external_id),
        )
        .route("/v1/orgs/{org}/jobs/expire-points", post(jobs::expire_points))
        .route(
            "/v1/orgs/{org}/jobs/reevaluate-tiers",
            post(jobs::reevaluate_tiers),
        )
        .route("/openapi.json", get(openapi))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
        .merge(health)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(middleware::from_fn(record_metrics))
        .layer(middleware::from_fn(request_span))
}

/// Gives every request an id (the caller's `x-request-id` if sane, else a new UUID), a tracing
/// span carrying it, and echoes it in the response.
async fn request_span(mut request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| Uuid::new_v4().to_string(), str::to_owned);
    request.extensions_mut().insert(RequestId(request_id.clone()));
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %request_id,
        key_id = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    span.record("status", response.status().as_u16());
    span.in_scope(|| {
        tracing::debug!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request done"
        );
    });
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Requests by route and status, and their latency by route (matched routes only, so that
/// random URLs cannot blow up the label set).
async fn record_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(
        "command_http_requests_total",
        "method" => method.clone(),
        "route" => route.clone(),
        "status" => status
    )
    .increment(1);
    metrics::histogram!("command_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_lists_every_route() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for path in [
            "/v1/orgs/{org}/program",
            "/v1/orgs/{org}/locations",
            "/v1/orgs/{org}/members",
            "/v1/orgs/{org}/members/{member_id}",
            "/v1/orgs/{org}/members/{member_id}/purchases",
            "/v1/orgs/{org}/members/{member_id}/refunds",
            "/v1/orgs/{org}/members/{member_id}/redemptions",
            "/v1/orgs/{org}/members/{member_id}/adjustments",
            "/v1/orgs/{org}/members/by-external-id/{external_id}",
            "/v1/orgs/{org}/members/by-external-id/{external_id}/purchases",
            "/v1/orgs/{org}/jobs/expire-points",
            "/v1/orgs/{org}/jobs/reevaluate-tiers",
        ] {
            assert!(
                paths.contains_key(path),
                "{path} missing from the OpenAPI document"
            );
        }
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for schema in [
            "PurchaseRequest",
            "MemberWriteResponse",
            "ErrorBody",
            "ProgramConfig",
            "Tier",
        ] {
            assert!(schemas.contains_key(schema), "schema {schema} missing");
        }
        assert_eq!(
            doc["components"]["schemas"]["PurchaseRequest"]["required"],
            serde_json::json!([
                "transaction_id",
                "location_id",
                "amount_minor",
                "currency",
                "occurred_at"
            ])
        );
    }
}
