//! The shared state of the handlers.

use std::sync::Arc;
use std::time::Duration;

use common::credentials::Credentials;
use common::overload::{InFlight, KeyRate};
use sqlx::PgPool;
use tokio_util::task::TaskTracker;

use crate::commands::Commands;
use crate::idempotency::Idempotency;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    credentials: Credentials,
    commands: Commands,
    idempotency: Idempotency,
    tasks: TaskTracker,
    max_body_bytes: usize,
    in_flight: InFlight,
    key_rate: KeyRate,
}

/// How much load one process takes before it sheds (`common::overload`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// Requests worked on at once (0: no bound).
    pub max_in_flight: usize,
    /// Accepted requests are kept near it by working on fewer at once (`None`: a fixed bound).
    pub latency_target: Option<Duration>,
    /// Requests per second and API key (0: no limit).
    pub rate_per_key: u32,
}

impl AppState {
    pub fn new(
        pool: PgPool,
        credentials: Credentials,
        commands: Commands,
        idempotency: Idempotency,
        tasks: TaskTracker,
        limits: Limits,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                credentials,
                commands,
                idempotency,
                tasks,
                max_body_bytes: limits.max_body_bytes,
                in_flight: InFlight::new(limits.max_in_flight, limits.latency_target, "command"),
                key_rate: KeyRate::new(limits.rate_per_key, "command"),
            }),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// API keys and signing secrets, cached (invalidated by LISTEN/NOTIFY).
    pub fn credentials(&self) -> &Credentials {
        &self.inner.credentials
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

    /// The bound on requests in flight in this process.
    pub fn in_flight(&self) -> &InFlight {
        &self.inner.in_flight
    }

    /// The rate of each API key.
    pub fn key_rate(&self) -> &KeyRate {
        &self.inner.key_rate
    }
}
