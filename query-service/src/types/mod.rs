//! The GraphQL object types, one concept per module. Doc comments become the field
//! descriptions of the SDL (checked in at `schema/graphql/schema.graphql`), so moving a type
//! between modules changes nothing a client sees.

use async_graphql::Context;

use crate::db::Db;
use crate::loaders::Loaders;

mod achievements;
mod balance;
mod history;
mod leaderboard;
mod live;
mod member;
mod member_list;
mod program;
mod promotions;
mod rfm;
mod simulation;
mod stamps;
mod tier;
mod trends;

pub use achievements::{AchievementDefinition, AchievementProgress, AchievementStats, Badge, NearUnlock};
pub use balance::{Balance, Liability, PointsExpiry};
pub use history::{balance_after, HistoryEntry};
pub use leaderboard::{LeaderboardEntry, LeaderboardRank, Period};
pub use live::{LiveState, MemberUpdate};
pub use member::Member;
pub use member_list::{MemberFilter, MemberOrder};
pub use program::{Program, ProgramTier, Reward};
pub use promotions::{EarnCap, Promotion, PromotionStats, PurchaseBreakdown};
pub use rfm::{check_segment, Rfm, RfmCell, SegmentCount, SegmentTransition};
pub use simulation::Simulation;
pub use stamps::{StampCard, StampCardDefinition};
pub use tier::{TierChange, TierCount, TierProgress};
pub use trends::{liability_days, start_of, window_start, LiabilityDay, SegmentTransitionCount};

fn loaders<'a>(ctx: &Context<'a>) -> &'a Loaders {
    ctx.data_unchecked::<Loaders>()
}

pub(crate) fn db<'a>(ctx: &Context<'a>) -> &'a Db {
    ctx.data_unchecked::<Db>()
}
