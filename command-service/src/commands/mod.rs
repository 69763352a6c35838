//! The use cases of the command API, independent of HTTP: each gathers the facts the domain needs
//! (the program in force, the server clock, the reward's catalogue entry), runs the command
//! through the [`AggregateStore`], and returns what was appended.
//!
//! - `context`: who asks and which member; `outcome`: answers and errors;
//! - `program`: configuring the program and its locations; `promotions`: adding, changing and
//!   ending one promotion;
//! - `members`: finding a member and running a member command idempotently;
//! - `enrol`, `points`: the member use cases (`points` also quotes a purchase); `budgets`: the
//!   promotion budgets a purchase is decided with; `jobs`: the system jobs over an org.

mod budgets;
mod context;
mod enrol;
mod jobs;
mod members;
mod outcome;
mod points;
mod program;
mod promotions;

use std::num::NonZeroUsize;

use domain::{Member, Program};
use sqlx::PgPool;

use crate::store::{AggregateStore, Appender, GroupCommit, RetryPolicy, PROGRAM_CHANNEL};

pub use context::{Answer, CommandContext, MemberRef};
pub use jobs::{Job, JobReport};
pub use outcome::{CommandError, MemberOutcome, ProgramOutcome, PromotionOutcome};

/// Tunables of [`Commands`].
#[derive(Debug, Clone, Copy)]
pub struct CommandsConfig {
    pub cache_capacity: NonZeroUsize,
    pub retry: RetryPolicy,
    /// Deciding a purchase again when a promotion budget changed under it.
    pub budget_retry: RetryPolicy,
    pub job_concurrency: usize,
    /// How concurrent commands share the statements appending their events.
    pub group_commit: GroupCommit,
}

/// The command side of the platform.
pub struct Commands {
    pool: PgPool,
    members: AggregateStore<Member>,
    programs: AggregateStore<Program>,
    budget_retry: RetryPolicy,
    budget_gates: budgets::BudgetGates,
    job_concurrency: usize,
}

impl Commands {
    pub fn new(pool: PgPool, config: CommandsConfig) -> Self {
        // Programs are one per org and small; a fraction of the member capacity is plenty.
        let program_capacity =
            NonZeroUsize::new((config.cache_capacity.get() / 10).max(16)).unwrap_or(NonZeroUsize::MIN);
        let appender = Appender::new(pool.clone(), config.group_commit);
        Self {
            members: AggregateStore::new(
                pool.clone(),
                appender.clone(),
                config.cache_capacity,
                config.retry,
            ),
            // Every purchase reads its org's program: kept fresh by notification instead of a
            // read of the store per command.
            programs: AggregateStore::new(pool.clone(), appender, program_capacity, config.retry)
                .announced(pool.clone(), PROGRAM_CHANNEL),
            pool,
            budget_retry: config.budget_retry,
            budget_gates: budgets::BudgetGates::default(),
            job_concurrency: config.job_concurrency.max(1),
        }
    }
}
