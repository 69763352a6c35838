//! Stored what-if simulations (SPEC §9, §11): the report of each run with its draft and
//! window, for the analysts' dashboard.

use async_graphql::{Json, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use domain::simulation::report::Comparison;

use crate::db::SimulationRow;

/// Points actually awarded against points under the draft, for one key.
#[derive(SimpleObject)]
pub struct SimulationComparison {
    /// The promotion id, tier name, location id or ISO week (`YYYY-Www`).
    pub key: String,
    pub actual_points: i64,
    pub draft_points: i64,
}

fn compare<K>(list: &[Comparison<K>], key: impl Fn(&K) -> &str) -> Vec<SimulationComparison> {
    list.iter()
        .map(|c| SimulationComparison {
            key: key(&c.key).to_owned(),
            actual_points: c.actual_points,
            draft_points: c.draft_points,
        })
        .collect()
}

/// A member whose tier at the end of the window would differ under the draft.
#[derive(SimpleObject)]
pub struct SimulatedTierChange {
    pub member_id: ID,
    pub actual_tier: String,
    pub draft_tier: String,
}

/// One what-if run: a draft program replayed over `[from, to)` of the real history.
pub struct Simulation(pub SimulationRow);

/// One what-if run: a draft program replayed over `[from, to)` of the real history.
#[Object]
impl Simulation {
    async fn simulation_id(&self) -> ID {
        ID(self.0.simulation_id.to_string())
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn from(&self) -> DateTime<Utc> {
        self.0.window_from
    }
    async fn to(&self) -> DateTime<Utc> {
        self.0.window_to
    }
    /// Purchases recorded in the window, replayed under the draft.
    async fn purchases(&self) -> i64 {
        i64::try_from(self.0.report.purchases).unwrap_or(i64::MAX)
    }
    /// Purchases whose points under the draft differ.
    async fn purchases_changed(&self) -> i64 {
        i64::try_from(self.0.report.purchases_changed).unwrap_or(i64::MAX)
    }
    /// Σ of the window's purchase totals as awarded (gross of later clawbacks).
    async fn actual_points(&self) -> i64 {
        self.0.report.actual_points
    }
    /// ... and under the draft.
    async fn draft_points(&self) -> i64 {
        self.0.report.draft_points
    }
    async fn actual_reward_points(&self) -> i64 {
        self.0.report.actual_reward_points
    }
    async fn draft_reward_points(&self) -> i64 {
        self.0.report.draft_reward_points
    }
    /// Draft liability at `to` minus actual liability at `to`.
    async fn liability_delta(&self) -> i64 {
        self.0.report.liability_delta
    }
    async fn by_promotion(&self) -> Vec<SimulationComparison> {
        compare(&self.0.report.by_promotion, |k| &k.promotion_id)
    }
    async fn by_tier(&self) -> Vec<SimulationComparison> {
        compare(&self.0.report.by_tier, |k| &k.tier)
    }
    async fn by_location(&self) -> Vec<SimulationComparison> {
        compare(&self.0.report.by_location, |k| &k.location_id)
    }
    async fn by_week(&self) -> Vec<SimulationComparison> {
        compare(&self.0.report.by_week, |k| &k.week)
    }
    /// Members whose tier at `to` would differ (the first 10,000 by member id).
    async fn tier_changes(&self) -> Vec<SimulatedTierChange> {
        self.0
            .report
            .tier_changes
            .iter()
            .map(|c| SimulatedTierChange {
                member_id: ID(c.member_id.to_string()),
                actual_tier: c.actual_tier.clone(),
                draft_tier: c.draft_tier.clone(),
            })
            .collect()
    }
    async fn tier_changes_total(&self) -> i64 {
        i64::try_from(self.0.report.tier_changes_total).unwrap_or(i64::MAX)
    }
    /// The draft program as it was submitted (null: the programs really in force).
    async fn draft(&self) -> Json<serde_json::Value> {
        Json(self.0.draft.0.clone())
    }
}
