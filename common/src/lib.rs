//! Runtime pieces shared by the three services (`command-service`, `projector`,
//! `query-service`), so that they start, log, report health and authenticate the same way.
//!
//! - [`telemetry`]: one tracing setup (`RUST_LOG`, `LOG_FORMAT=json`).
//! - [`metrics`]: the process-wide Prometheus recorder and its scrape handler.
//! - [`health`]: `GET /healthz`, `GET /readyz` and `GET /metrics` as an axum router.
//! - [`config`]: clap argument groups every service flattens into its config (`DATABASE_URL`,
//!   `NATS_URL`, `LISTEN_ADDR`, ...), and the connection helpers that go with them.
//! - [`keys`]: API keys of all roles, stored hashed in the `api_keys` table.
//! - [`signing_secrets`] and [`customer_token`]: the storefront identity of SPEC §10, the
//!   signing secrets of each org and the customer tokens they sign.
//! - [`credentials`]: keys and secrets cached per process, invalidated by LISTEN/NOTIFY.
//! - [`notify`]: the LISTEN loop that keeps such a cache fresh.
//! - [`simulation`]: what-if simulations run against the event store, and their stored reports.
//! - [`overload`]: bounded requests in flight and per-key rates: overload shed, not queued.
//! - [`shutdown`]: the signal every service's graceful shutdown waits for.
//! - [`exit_code`]: how a binary reports a failure from `main`.

pub mod config;
pub mod credentials;
pub mod customer_token;
pub mod health;
pub mod keys;
pub mod metrics;
pub mod notify;
pub mod overload;
pub mod projected;
pub mod shutdown;
pub mod signing_secrets;
pub mod simulation;
pub mod telemetry;

use std::process::ExitCode;

/// Turns the outcome of a binary's `main` into its exit status, printing an error as one
/// readable chain (`error: <context>: <cause>`) on stderr rather than a debug dump.
pub fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
