//! Promotions (SPEC §9, §11): how the program's promotions read to a storefront (what runs,
//! when, for whom), the breakdown of a purchase's points, and each promotion's statistics.

use async_graphql::{Enum, Object, SimpleObject};
use chrono::{DateTime, Utc};
use domain::program::{Effect, Limit};

use crate::db::PromotionStatsRow;

/// The JSON name of a unit enum (`"tue"`, `"day"`), as the program JSON writes it.
pub(super) fn json_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        other => format!("{other:?}"),
    }
}

/// A promotion of the program: when it runs, whom it rewards and with what.
pub struct Promotion(pub domain::program::Promotion);

/// A promotion of the program: when it runs, whom it rewards and with what.
#[Object]
impl Promotion {
    async fn promotion_id(&self) -> &str {
        &self.0.promotion_id
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// First instant it runs.
    async fn starts_at(&self) -> DateTime<Utc> {
        self.0.starts_at
    }
    /// First instant it no longer runs; null: no end.
    async fn ends_at(&self) -> Option<DateTime<Utc>> {
        self.0.ends_at
    }
    /// The points it adds.
    async fn effect(&self) -> PromotionEffect {
        PromotionEffect::from(self.0.effect)
    }
    /// The weekly window it runs in, in the program's time zone; null: all the time.
    async fn schedule(&self) -> Option<PromotionSchedule> {
        self.0.schedule.as_ref().map(|s| PromotionSchedule {
            days: s.days.iter().map(json_name).collect(),
            from: s.from.to_string(),
            to: s.to.to_string(),
        })
    }
    /// What a purchase must satisfy (all of the given ones).
    async fn conditions(&self) -> PromotionConditions {
        let c = &self.0.conditions;
        PromotionConditions {
            min_amount_minor: c.min_amount_minor,
            location_ids: c.location_ids.clone(),
            tiers: c.tiers.clone(),
            first_purchase: c.first_purchase,
            inactive_days: c.inactive_days.map(i64::from),
            skus: c.skus.clone(),
            categories: c.categories.clone(),
        }
    }
    /// Whether it applies on top of other promotions (otherwise only the best one applies).
    async fn stackable(&self) -> bool {
        self.0.stackable
    }
    /// Breaks ties between non-stackable promotions worth the same (higher first).
    async fn priority(&self) -> i32 {
        self.0.priority
    }
    /// At most this many uses per member per period; null: no limit.
    async fn limit(&self) -> Option<PromotionLimit> {
        self.0.limit.map(PromotionLimit::from)
    }
    /// The points it may award across all members; null: no budget.
    async fn budget_points(&self) -> Option<i64> {
        self.0.budget_points
    }
}

/// The kind of points a promotion adds.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum PromotionEffectKind {
    /// The base points of the purchase (or of its qualifying lines) times a multiplier.
    Multiplier,
    /// A fixed number of points per qualifying purchase.
    Bonus,
    /// Points per unit of the qualifying lines.
    PerUnit,
}

/// The points a promotion adds.
#[derive(SimpleObject)]
pub struct PromotionEffect {
    pub kind: PromotionEffectKind,
    /// For a multiplier, in basis points (20000 = 2×).
    pub multiplier_bps: Option<i64>,
    /// For a bonus, per purchase; per unit, per unit.
    pub points: Option<i64>,
    /// In words: `2× points`, `+500 points`, `5 points per unit`.
    pub description: String,
}

impl From<Effect> for PromotionEffect {
    fn from(effect: Effect) -> Self {
        match effect {
            Effect::Multiplier { multiplier_bps } => {
                let whole = multiplier_bps / 10_000;
                let fraction = format!("{:04}", multiplier_bps % 10_000);
                let fraction = fraction.trim_end_matches('0');
                let factor = if fraction.is_empty() {
                    whole.to_string()
                } else {
                    format!("{whole}.{fraction}")
                };
                PromotionEffect {
                    kind: PromotionEffectKind::Multiplier,
                    multiplier_bps: Some(i64::from(multiplier_bps)),
                    points: None,
                    description: format!("{factor}× points"),
                }
            }
            Effect::Bonus { points } => PromotionEffect {
                kind: PromotionEffectKind::Bonus,
                multiplier_bps: None,
                points: Some(points),
                description: format!("+{points} points"),
            },
            Effect::PerUnit { points } => PromotionEffect {
                kind: PromotionEffectKind::PerUnit,
                multiplier_bps: None,
                points: Some(points),
                description: format!("{points} points per unit"),
            },
        }
    }
}

/// A weekly window in the program's local time: on `days`, from `from` (included) to `to`
/// (excluded).
#[derive(SimpleObject)]
pub struct PromotionSchedule {
    /// `mon` … `sun`.
    pub days: Vec<String>,
    /// `HH:MM`.
    pub from: String,
    /// `HH:MM` (`24:00`: the end of the day).
    pub to: String,
}

/// The conditions of a promotion; null ones do not apply.
#[derive(SimpleObject)]
pub struct PromotionConditions {
    pub min_amount_minor: Option<i64>,
    pub location_ids: Option<Vec<String>>,
    pub tiers: Option<Vec<String>>,
    /// Only the member's first purchase ever.
    pub first_purchase: Option<bool>,
    /// At least this many days since the member's previous purchase.
    pub inactive_days: Option<i64>,
    pub skus: Option<Vec<String>>,
    pub categories: Option<Vec<String>>,
}

/// A per-member limit.
#[derive(SimpleObject)]
pub struct PromotionLimit {
    pub count: i64,
    /// `day`, `week`, `month` (local) or `promotion` (its whole life).
    pub period: String,
}

impl From<Limit> for PromotionLimit {
    fn from(limit: Limit) -> Self {
        PromotionLimit {
            count: i64::from(limit.count),
            period: json_name(&limit.period),
        }
    }
}

/// The most points a member may earn from purchases in one local period.
#[derive(SimpleObject)]
pub struct EarnCap {
    pub points: i64,
    /// `day`, `week` or `month`, in the program's time zone.
    pub period: String,
}

/// Why a purchase earned what it earned; every value is what was awarded (after the cap).
#[derive(SimpleObject)]
pub struct PurchaseBreakdown {
    /// The amount times the earn rate.
    pub base: i64,
    /// The base times the member's tier multiplier, after the cap's cut.
    pub tier_points: i64,
    /// Each promotion that applied, with its extra points after the cap's cut.
    pub promotions: Vec<PromotionPoints>,
    /// Points the earn cap did not award.
    pub cap_cut: i64,
    /// Points awarded: tier points plus the promotions' points.
    pub total: i64,
}

impl From<&domain::member::earn::Breakdown> for PurchaseBreakdown {
    fn from(b: &domain::member::earn::Breakdown) -> Self {
        PurchaseBreakdown {
            base: b.base,
            tier_points: b.tier_points,
            promotions: b
                .promotions
                .iter()
                .map(|p| PromotionPoints {
                    promotion_id: p.promotion_id.clone(),
                    points: p.points,
                })
                .collect(),
            cap_cut: b.cap_cut,
            total: b.total,
        }
    }
}

/// The points one promotion added to a purchase.
#[derive(SimpleObject)]
pub struct PromotionPoints {
    pub promotion_id: String,
    pub points: i64,
}

/// What a promotion awarded: points after the cap, gross of later refunds' clawbacks.
#[derive(SimpleObject)]
pub struct PromotionStats {
    pub promotion_id: String,
    /// Null when the promotion is no longer in the program.
    pub name: Option<String>,
    /// Purchases it applied to (also those the cap cut to 0 points).
    pub uses: i64,
    /// Points it awarded.
    pub points: i64,
    /// Distinct members it applied to.
    pub members: i64,
    /// Its budget; null: none.
    pub budget_points: Option<i64>,
    /// What is left of its budget; null: no budget.
    pub budget_left: Option<i64>,
    /// Per UTC day of the purchases, oldest first (days without uses are absent).
    pub daily: Vec<PromotionDay>,
}

/// A promotion's uses and points on one UTC day.
#[derive(SimpleObject)]
pub struct PromotionDay {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub uses: i64,
    pub points: i64,
}

impl From<PromotionStatsRow> for PromotionStats {
    fn from(row: PromotionStatsRow) -> Self {
        PromotionStats {
            promotion_id: row.promotion_id,
            name: row.name,
            uses: row.uses,
            points: row.points,
            members: row.members,
            budget_points: row.budget_points,
            budget_left: row.budget_left,
            daily: row
                .daily
                .0
                .into_iter()
                .map(|d| PromotionDay {
                    day: d.day,
                    uses: d.uses,
                    points: d.points,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effects_read_as_a_storefront_would_show_them() {
        let multiplier = |bps| PromotionEffect::from(Effect::Multiplier { multiplier_bps: bps }).description;
        assert_eq!(multiplier(20_000), "2× points");
        assert_eq!(multiplier(15_000), "1.5× points");
        assert_eq!(multiplier(10_001), "1.0001× points");
        assert_eq!(multiplier(100_000), "10× points");
        assert_eq!(
            PromotionEffect::from(Effect::Bonus { points: 500 }).description,
            "+500 points"
        );
        assert_eq!(
            PromotionEffect::from(Effect::PerUnit { points: 5 }).description,
            "5 points per unit"
        );
    }
}
