//! An org's program: earn rules, the tier ladder and the rewards catalogue.

use async_graphql::{Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::promotions::json_name;
use super::{AchievementDefinition, EarnCap, Promotion, StampCardDefinition};
use crate::db::{FullProgram, RewardRow};

/// An org's program: what members earn and can redeem.
pub struct Program(pub FullProgram);

/// An org's program: what members earn and can redeem.
#[Object]
impl Program {
    /// Bumped by every change of the program.
    async fn version(&self) -> i64 {
        self.0.program.version
    }
    /// ISO-4217 currency of purchases.
    async fn currency(&self) -> &str {
        &self.0.program.currency
    }
    /// Whole points per whole currency unit, before the tier multiplier.
    async fn earn_rate(&self) -> i64 {
        self.0.program.earn_rate
    }
    /// Days after which earned points expire; null: never.
    async fn expiry_days(&self) -> Option<i32> {
        self.0.program.expiry_days
    }
    /// Rolling window of tier qualification, in days.
    async fn qualification_window_days(&self) -> i32 {
        self.0.program.qualification_window_days
    }
    /// The tier ladder, lowest first.
    async fn tiers(&self) -> Vec<ProgramTier> {
        self.0
            .tiers
            .iter()
            .map(|tier| ProgramTier {
                name: tier.name.clone(),
                threshold_points: tier.threshold_points,
                multiplier_bps: tier.multiplier_bps,
            })
            .collect()
    }
    /// The rewards catalogue, cheapest first (inactive rewards included).
    async fn rewards(&self) -> Vec<Reward> {
        self.0.rewards.iter().cloned().map(Reward).collect()
    }
    /// The stamp cards.
    async fn stamp_cards(&self) -> Vec<StampCardDefinition> {
        self.0
            .stamp_cards
            .iter()
            .cloned()
            .map(StampCardDefinition)
            .collect()
    }
    /// The org's store locations (where purchases happen and leaderboards are kept), by id.
    async fn locations(&self) -> Vec<Location> {
        self.0
            .locations
            .iter()
            .map(|location| Location {
                location_id: location.location_id.clone(),
                name: location.name.clone(),
            })
            .collect()
    }
    /// The IANA time zone of schedules, per-member limits and the earn cap (`UTC` by default).
    async fn time_zone(&self) -> &str {
        self.0.config.time_zone.name()
    }
    /// The most points a member earns from purchases per local period; null: no cap.
    async fn earn_cap(&self) -> Option<EarnCap> {
        self.0.config.earn_cap.map(|cap| EarnCap {
            points: cap.points,
            period: json_name(&cap.period),
        })
    }
    /// The promotions, in the program's order (ended ones included until removed).
    async fn promotions(&self) -> Vec<Promotion> {
        self.0.config.promotions.iter().cloned().map(Promotion).collect()
    }
    /// The achievements (badges and missions), in the program's order.
    async fn achievements(&self) -> Vec<AchievementDefinition> {
        self.0
            .config
            .achievements
            .iter()
            .cloned()
            .map(AchievementDefinition)
            .collect()
    }
    /// When the current version was configured.
    async fn configured_at(&self) -> DateTime<Utc> {
        self.0.program.configured_at
    }
}

/// A rung of the tier ladder.
#[derive(SimpleObject)]
pub struct ProgramTier {
    pub name: String,
    /// Qualifying points needed.
    pub threshold_points: i64,
    /// Earn multiplier in basis points (10000 = 1.0×).
    pub multiplier_bps: i32,
}

/// A store location of the org.
#[derive(SimpleObject)]
pub struct Location {
    pub location_id: String,
    pub name: String,
}

/// An entry of the rewards catalogue.
pub struct Reward(pub RewardRow);

/// An entry of the rewards catalogue.
#[Object]
impl Reward {
    async fn reward_id(&self) -> &str {
        &self.0.reward_id
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Points a redemption costs.
    async fn points_cost(&self) -> i64 {
        self.0.points_cost
    }
    /// Whether it can be redeemed.
    async fn active(&self) -> bool {
        self.0.active
    }
}
