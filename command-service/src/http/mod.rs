//! The HTTP API (SPEC §7, §8): the routes, with the layers of [`layers`] (request id, tracing
//! span, timeout, Prometheus metrics), the [`openapi`] document, and the health endpoints from
//! `common`; API requests beyond the process's bound are shed by [`overload`]. A write handler takes a [`command_request::Write`], which authorizes ([`auth`]),
//! checks the `Idempotency-Key` and parses the body ([`extract`]); [`write`] runs it under its
//! key; [`error`] is the one error type of the boundary.

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post, put};
use axum::Router;

pub mod auth;
pub mod command_request;
mod doc_responses;
pub mod error;
pub mod extract;
pub mod jobs;
pub mod layers;
pub mod member_requests;
pub mod member_view;
pub mod members;
pub mod openapi;
pub mod overload;
pub mod program;
pub mod promotion_docs;
pub mod promotions;
pub mod quotes;
pub mod simulations;
pub mod state;
pub mod storefront_keys;
pub mod write;

use error::ApiError;
pub use state::AppState;

async fn not_found() -> ApiError {
    ApiError::RouteNotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// The full router of the service: API, OpenAPI document, health and metrics, in the layers
/// of [`layers::around`] (`request_timeout`: none when `None`).
pub fn router(
    state: AppState,
    nats: Option<async_nats::Client>,
    request_timeout: Option<Duration>,
) -> Router {
    let max_body = state.max_body_bytes();
    let health = common::health::router(state.pool().clone(), nats);
    let router = Router::new()
        .route(
            "/v1/orgs/{org}/program",
            put(program::configure).get(program::get),
        )
        .route("/v1/orgs/{org}/program/simulations", post(simulations::simulate))
        .route("/v1/orgs/{org}/locations", post(program::register_location))
        .route("/v1/orgs/{org}/promotions", post(promotions::add))
        .route(
            "/v1/orgs/{org}/promotions/{promotion_id}",
            put(promotions::change),
        )
        .route(
            "/v1/orgs/{org}/promotions/{promotion_id}/end",
            post(promotions::end),
        )
        .route("/v1/orgs/{org}/members", post(members::enroll))
        .route("/v1/orgs/{org}/members/{member_id}", get(members::get_member))
        .route(
            "/v1/orgs/{org}/members/{member_id}/purchases",
            post(members::record_purchase),
        )
        .route(
            "/v1/orgs/{org}/members/{member_id}/purchase-quotes",
            post(quotes::quote_purchase),
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
            "/v1/orgs/{org}/members/by-external-id/{external_id}/purchase-quotes",
            post(quotes::quote_purchase_by_external_id),
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
        .route(
            "/v1/orgs/{org}/publishable-keys",
            post(storefront_keys::create_publishable_key).get(storefront_keys::list_publishable_keys),
        )
        .route(
            "/v1/orgs/{org}/publishable-keys/{key_id}/revoke",
            post(storefront_keys::revoke_publishable_key),
        )
        .route(
            "/v1/orgs/{org}/signing-secrets",
            post(storefront_keys::create_signing_secret).get(storefront_keys::list_signing_secrets),
        )
        .route(
            "/v1/orgs/{org}/signing-secrets/{secret_id}/revoke",
            post(storefront_keys::revoke_signing_secret),
        )
        .route("/v1/orgs/{org}/jobs/expire-points", post(jobs::expire_points))
        .route(
            "/v1/orgs/{org}/jobs/reevaluate-tiers",
            post(jobs::reevaluate_tiers),
        )
        .route("/openapi.json", get(openapi::serve))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(state.clone(), overload::admit))
        .with_state(state)
        .merge(health)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(middleware::from_fn(layers::record_metrics));
    layers::around(router, request_timeout)
}
