//! Liveness, readiness and metrics endpoints, as an axum router each service merges into its
//! own.
//!
//! - `GET /healthz`: 200 `{"status":"ok"}` while the process serves requests.
//! - `GET /readyz`: 200 when Postgres answers `SELECT 1` and NATS (if the service uses it) is
//!   connected; otherwise 503 naming what is down, e.g.
//!   `{"status":"unavailable","down":["postgres"],"checks":{"postgres":"down","nats":"up"}}`.
//! - `GET /metrics`: Prometheus text format (see [`crate::metrics`]).

use std::time::Duration;

use async_nats::connection::State;
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use sqlx::PgPool;

/// A check that takes longer than this counts as down: a probe must answer quickly.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
struct Dependencies {
    pool: PgPool,
    nats: Option<async_nats::Client>,
}

/// The health router: `/healthz`, `/readyz` (Postgres, and NATS when given) and `/metrics`.
pub fn router(pool: PgPool, nats: Option<async_nats::Client>) -> Router {
    // Install the recorder now so that metrics recorded before the first scrape are kept.
    crate::metrics::handle();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(crate::metrics::render))
        .with_state(Dependencies { pool, nats })
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(AxumState(deps): AxumState<Dependencies>) -> (StatusCode, Json<Value>) {
    let mut checks = Map::new();
    let mut down = Vec::new();

    let postgres = tokio::time::timeout(
        CHECK_TIMEOUT,
        sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&deps.pool),
    )
    .await;
    let postgres_up = match postgres {
        Ok(Ok(_)) => true,
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: Postgres check failed");
            false
        }
        Err(_) => {
            tracing::warn!(timeout = ?CHECK_TIMEOUT, "readiness: Postgres check timed out");
            false
        }
    };
    record(&mut checks, &mut down, "postgres", postgres_up);

    if let Some(nats) = &deps.nats {
        let state = nats.connection_state();
        let nats_up = state == State::Connected;
        if !nats_up {
            tracing::warn!(%state, "readiness: NATS is not connected");
        }
        record(&mut checks, &mut down, "nats", nats_up);
    }

    if down.is_empty() {
        (
            StatusCode::OK,
            Json(json!({ "status": "ready", "checks": checks })),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "down": down, "checks": checks })),
        )
    }
}

fn record(checks: &mut Map<String, Value>, down: &mut Vec<&'static str>, name: &'static str, up: bool) {
    checks.insert(name.to_owned(), Value::from(if up { "up" } else { "down" }));
    if !up {
        down.push(name);
    }
}
