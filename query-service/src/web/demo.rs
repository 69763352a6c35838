//! `/widget-demo`: a stand-in shop page that embeds the widget, for trying it out locally
//! (`scripts/run.sh` enables it with `--widget-demo`; without the flag none of these routes
//! exists). The page asks `/widget-demo/token` for a customer token, which the server signs
//! for the named member with the org's newest signing secret, as a shop's backend would; the
//! org and its publishable key come in the page's URL (publishable keys are public).

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{assets, page, serve};
use crate::storefront::DemoTokens;

/// The demo's routes, when demo tokens are enabled; none otherwise.
pub fn router(demo: Option<DemoTokens>) -> Router {
    let Some(demo) = demo else {
        return Router::new();
    };
    Router::new()
        .route(
            "/widget-demo",
            get(|headers: HeaderMap| async move { page(&assets::WIDGET_DEMO_HTML, &headers) }),
        )
        .route(
            "/widget-demo/demo.js",
            get(|headers: HeaderMap| async move { serve(&assets::WIDGET_DEMO_JS, &headers) }),
        )
        .route(
            "/widget-demo/demo.css",
            get(|headers: HeaderMap| async move { serve(&assets::WIDGET_DEMO_CSS, &headers) }),
        )
        .route("/widget-demo/token", get(token))
        .with_state(demo)
}

#[derive(Deserialize)]
struct TokenRequest {
    org: Option<String>,
    member: Option<String>,
}

/// `GET /widget-demo/token?org=<org>&member=<external id or member id>` →
/// `{"customer_token", "expires_in"}`.
async fn token(State(demo): State<DemoTokens>, Query(request): Query<TokenRequest>) -> Response {
    let org = request.org.unwrap_or_default();
    let member = request.member.unwrap_or_default();
    if !domain::ids::is_slug(&org) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "org",
            "org: give the org's id, e.g. ?org=demo",
        );
    }
    if let Err(problem) = domain::ids::check_business_id(&member) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "member",
            &format!("member: {problem}; give a member's external id or member id, e.g. &member=card-0001"),
        );
    }
    match demo.token(&org, &member).await {
        Ok(Some(token)) => Json(json!({
            "customer_token": token,
            "expires_in": common::customer_token::RECOMMENDED_LIFETIME.as_secs(),
        }))
        .into_response(),
        Ok(None) => refuse(
            StatusCode::CONFLICT,
            "org",
            &format!(
                "org '{org}' has no active signing secret: create one with \
                 `command-service keys signing-secret create --org {org}`"
            ),
        ),
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), org, "signing a demo token failed");
            refuse(StatusCode::INTERNAL_SERVER_ERROR, "", "internal error")
        }
    }
}

fn refuse(status: StatusCode, field: &str, message: &str) -> Response {
    (status, Json(json!({ "field": field, "message": message }))).into_response()
}
