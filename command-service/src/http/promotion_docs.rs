//! The schemas of the promotion types of SPEC §9/§11 for the OpenAPI document (the domain crate
//! stays free of HTTP concerns): a promotion, the earn cap, a basket line and the breakdown of
//! a purchase's points. A unit test keeps them in step with the domain's JSON.

#![allow(dead_code)]

use utoipa::ToSchema;

/// One promotion of the program (SPEC §9).
#[derive(Debug, ToSchema)]
#[schema(as = Promotion)]
pub struct PromotionDoc {
    /// Unique in the program; 1 to 128 characters, no `/`.
    promotion_id: String,
    /// 1 to 128 characters.
    name: String,
    /// The promotion runs from `starts_at` (included) ...
    starts_at: chrono::DateTime<chrono::Utc>,
    /// ... to `ends_at` (excluded); `null`: no end.
    ends_at: Option<chrono::DateTime<chrono::Utc>>,
    /// A weekly window in the program's time zone (default: always).
    schedule: Option<ScheduleDoc>,
    /// Every condition is optional; all must hold.
    conditions: Option<ConditionsDoc>,
    effect: EffectDoc,
    /// Applies together with the other stackable ones (default false: only the best
    /// non-stackable promotion applies).
    stackable: Option<bool>,
    /// Breaks ties between non-stackable promotions worth the same (default 0).
    priority: Option<i32>,
    /// At most `count` uses per member per period (default none).
    limit: Option<LimitDoc>,
    /// The most points the promotion awards across all members (default none).
    budget_points: Option<i64>,
}

/// On `days`, from `from` (included) to `to` (excluded), local time.
#[derive(Debug, ToSchema)]
#[schema(as = Schedule)]
pub struct ScheduleDoc {
    /// `mon` ... `sun`.
    #[schema(inline)]
    days: Vec<DayDoc>,
    /// `HH:MM`.
    #[schema(example = "14:00")]
    from: String,
    /// `HH:MM`, later than `from`.
    #[schema(example = "18:00")]
    to: String,
}

#[derive(Debug, ToSchema)]
#[schema(as = Day, rename_all = "lowercase")]
pub enum DayDoc {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

#[derive(Debug, ToSchema)]
#[schema(as = Conditions)]
pub struct ConditionsDoc {
    /// The purchase's amount is at least this.
    min_amount_minor: Option<i64>,
    /// At one of these registered locations.
    location_ids: Option<Vec<String>>,
    /// The member's tier (before the purchase) is one of these.
    tiers: Option<Vec<String>>,
    /// The member's first purchase ever.
    first_purchase: Option<bool>,
    /// At least this many days (× 24 h) since the member's previous purchase.
    inactive_days: Option<u32>,
    /// Lines with one of these skus qualify (line-scoped promotion).
    skus: Option<Vec<String>>,
    /// Lines of one of these categories qualify (line-scoped promotion).
    categories: Option<Vec<String>>,
}

/// Exactly one of `multiplier`, `bonus`, `per_unit`.
#[derive(Debug, ToSchema)]
#[schema(as = Effect, rename_all = "snake_case")]
pub enum EffectDoc {
    /// Extra `floor(B × (multiplier_bps − 10000) / 10000)` points; 10001..=100000.
    Multiplier { multiplier_bps: u32 },
    /// A fixed number of extra points per qualifying purchase.
    Bonus { points: i64 },
    /// Extra points per unit of the qualifying lines.
    PerUnit { points: i64 },
}

#[derive(Debug, ToSchema)]
#[schema(as = PromotionLimit)]
pub struct LimitDoc {
    /// At least 1.
    count: u32,
    /// `day`, `week`, `month` (local) or `promotion` (its whole life).
    #[schema(example = "day")]
    period: String,
}

#[derive(Debug, ToSchema)]
#[schema(as = EarnCap)]
pub struct EarnCapDoc {
    points: i64,
    /// `day`, `week` or `month` (local).
    #[schema(example = "day")]
    period: String,
}

/// A basket line; the lines' `amount_minor` sum to the purchase's.
#[derive(Debug, ToSchema)]
#[schema(as = PurchaseItem)]
pub struct LineDoc {
    /// 1 to 128 characters.
    sku: Option<String>,
    /// 1 to 128 characters.
    category: Option<String>,
    /// At least 1.
    quantity: u32,
    /// At least 0.
    amount_minor: i64,
}

/// Why a purchase earns what it earns; every value is what is awarded.
#[derive(Debug, ToSchema)]
#[schema(as = Breakdown)]
pub struct BreakdownDoc {
    /// `floor(amount_minor × earn_rate / 10^digits)`.
    base: i64,
    /// The base at the member's tier multiplier, after the cap's cut.
    tier_points: i64,
    /// The promotions that applied, with their points after the cap's cut.
    promotions: Vec<PromotionPointsDoc>,
    /// How many points the earn cap cut.
    cap_cut: i64,
    /// `tier_points` plus every promotion's points.
    total: i64,
}

#[derive(Debug, ToSchema)]
#[schema(as = PromotionPoints)]
pub struct PromotionPointsDoc {
    promotion_id: String,
    points: i64,
    /// What is left of the promotion's budget after this purchase (budgeted promotions only).
    budget_left: Option<i64>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use domain::member::earn::{Breakdown, Line, PromotionPoints};
    use domain::program::Promotion;
    use serde_json::{json, Value};

    use super::*;

    fn schema_fields<T: utoipa::PartialSchema>() -> BTreeSet<String> {
        let schema = serde_json::to_value(T::schema()).unwrap();
        schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    fn json_fields(value: &Value) -> BTreeSet<String> {
        value.as_object().unwrap().keys().cloned().collect()
    }

    #[test]
    fn the_documented_promotion_types_match_the_domain_types() {
        let every_field = json!({
            "promotion_id": "double-tuesday", "name": "Double points on Tuesday afternoons",
            "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2027-01-01T00:00:00Z",
            "schedule": {"days": ["tue"], "from": "14:00", "to": "18:00"},
            "conditions": {"min_amount_minor": 1000, "location_ids": ["store-1"], "tiers": ["Gold"],
                           "first_purchase": true, "inactive_days": 60,
                           "skus": ["COF-1"], "categories": ["coffee"]},
            "effect": {"multiplier": {"multiplier_bps": 20000}},
            "stackable": false, "priority": 0,
            "limit": {"count": 1, "period": "day"},
            "budget_points": 1000000
        });
        let promotion: Promotion = serde_json::from_value(every_field).unwrap();
        let json = serde_json::to_value(&promotion).unwrap();
        assert_eq!(schema_fields::<PromotionDoc>(), json_fields(&json));
        assert_eq!(schema_fields::<ScheduleDoc>(), json_fields(&json["schedule"]));
        assert_eq!(schema_fields::<ConditionsDoc>(), json_fields(&json["conditions"]));
        assert_eq!(schema_fields::<LimitDoc>(), json_fields(&json["limit"]));

        let line = Line {
            sku: Some("COF-1".into()),
            category: Some("coffee".into()),
            quantity: 1,
            amount_minor: 300,
        };
        assert_eq!(
            schema_fields::<LineDoc>(),
            json_fields(&serde_json::to_value(line).unwrap())
        );
        let breakdown = Breakdown {
            promotions: vec![PromotionPoints {
                promotion_id: "p".into(),
                points: 5,
                budget_left: Some(10),
            }],
            ..Breakdown::default()
        };
        let json = serde_json::to_value(&breakdown).unwrap();
        assert_eq!(schema_fields::<BreakdownDoc>(), json_fields(&json));
        assert_eq!(
            schema_fields::<PromotionPointsDoc>(),
            json_fields(&json["promotions"][0])
        );
    }

    #[test]
    fn the_documented_effects_are_the_domains() {
        let schema = serde_json::to_value(<EffectDoc as utoipa::PartialSchema>::schema()).unwrap();
        let text = schema.to_string();
        for effect in ["multiplier", "bonus", "per_unit", "multiplier_bps", "points"] {
            assert!(text.contains(&format!("\"{effect}\"")), "{effect} in {text}");
        }
        for effect in [
            json!({"multiplier": {"multiplier_bps": 20000}}),
            json!({"bonus": {"points": 5}}),
            json!({"per_unit": {"points": 5}}),
        ] {
            serde_json::from_value::<domain::program::Effect>(effect).unwrap();
        }
    }
}

/// One achievement of the program (SPEC §9): a badge and reward points, unlocked once.
#[derive(Debug, ToSchema)]
#[schema(as = Achievement)]
#[allow(dead_code)]
pub struct AchievementDoc {
    /// Unique in the program; 1 to 128 characters, no `/`.
    achievement_id: String,
    /// 1 to 128 characters.
    name: String,
    /// The badge's label, 1 to 64 characters (default: the name).
    badge: Option<String>,
    criteria: CriteriaDoc,
    /// Only purchases in the last `window_days` × 24 h count (default `null`: all time).
    window_days: Option<u32>,
    /// Points credited once on unlock (default 0; not capped, not qualifying for tiers).
    reward_points: Option<i64>,
}

/// Exactly one of `purchases`, `spend`, `locations`, `weekly_streak`.
#[derive(Debug, ToSchema)]
#[schema(as = Criteria, rename_all = "snake_case")]
#[allow(dead_code)]
pub enum CriteriaDoc {
    /// Purchases (a fully refunded one no longer counts).
    Purchases { count: u32 },
    /// Spend in minor units, net of refunds.
    Spend { amount_minor: i64 },
    /// Distinct locations with a purchase.
    Locations { count: u32 },
    /// Consecutive local ISO weeks with a purchase, ending with the purchase's week.
    WeeklyStreak { weeks: u32 },
}
