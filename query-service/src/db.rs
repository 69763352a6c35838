//! Every SQL statement the query service runs, against the projector's read models and (for
//! member history and the starting point of live updates) the event store: one module per read
//! model, each with its rows and its statements.
//!
//! All statements go through [`Db::pool`], which counts them: the count is exported as
//! `query_sql_statements_total` and lets tests assert that a page of members costs a constant
//! number of statements (see [`crate::loaders`]). Every statement is scoped by `org_id`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sqlx::PgPool;

mod achievements;
mod balance;
mod events;
mod keys;
mod leaderboard;
mod member;
mod program;
mod promotions;
mod read_models;
mod rfm;
mod stamps;
mod tier;
mod trends;

pub use achievements::{FunnelRow, MemberAchievementRow, NearUnlockRow, SimulationRow, UnlockWeekRow};
pub use balance::BalanceRow;
pub use events::{EventRow, POINTS_EVENTS, QUALIFYING_EVENTS, TIER_EVENTS};
pub use leaderboard::{LeaderboardRow, PeriodKeys, RanksKey};
pub use member::{MemberAfter, MemberFilter, MemberRow, MemberSort, PageRow};
pub use program::{FullProgram, LocationRow, ProgramRow, ProgramTierRow, RewardRow, StampCardDefRow};
pub use promotions::{PromotionDayRow, PromotionHistoryRow, PromotionStatsRow, UseRow};
pub use read_models::{ReadModelRows, Wanted};
pub use rfm::{RfmRow, TransitionRow};
pub use stamps::StampCardRow;
pub use tier::{TierChangeRow, TierRow};
pub use trends::{LiabilityMoves, TransitionCountRow};

/// The pool, and a count of the statements run through it.
#[derive(Clone)]
pub struct Db {
    pool: PgPool,
    statements: Arc<AtomicU64>,
}

impl Db {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            statements: Arc::default(),
        }
    }

    /// The pool, for one statement: call once per statement executed.
    pub fn pool(&self) -> &PgPool {
        self.statements.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("query_sql_statements_total").increment(1);
        &self.pool
    }

    /// Statements run so far through this `Db` (and its clones).
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }
}
