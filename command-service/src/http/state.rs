//! The shared state of the handlers.

use std::sync::Arc;

use common::credentials::Credentials;
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
}

impl AppState {
    pub fn new(
        pool: PgPool,
        credentials: Credentials,
        commands: Commands,
        idempotency: Idempotency,
        tasks: TaskTracker,
        max_body_bytes: usize,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                credentials,
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
}
