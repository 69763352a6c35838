//! The shared state of the handlers.

use std::sync::Arc;

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
