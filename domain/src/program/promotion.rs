//! Promotions and the earn cap as a marketer configures them (SPEC §9, §11): the program's
//! marketing rules, validated before any of them is accepted.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::calendar::{ClockTime, Day, Period};

/// Largest promotion multiplier: 10×.
pub const MAX_PROMOTION_MULTIPLIER_BPS: u32 = 100_000;
/// Largest fixed number of points a promotion, a cap or a budget may name.
pub const MAX_PROMOTION_POINTS: i64 = 1_000_000_000;
/// Longest `inactive_days` (100 years).
pub const MAX_INACTIVE_DAYS: u32 = 36_500;
/// Most promotions one program may hold.
pub const MAX_PROMOTIONS: usize = 200;

/// One campaign: when it runs, whom and what it rewards, and how much.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Promotion {
    pub promotion_id: String,
    pub name: String,
    pub starts_at: DateTime<Utc>,
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub schedule: Option<Schedule>,
    #[serde(default)]
    pub conditions: Conditions,
    pub effect: Effect,
    #[serde(default)]
    pub stackable: bool,
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub limit: Option<Limit>,
    #[serde(default)]
    pub budget_points: Option<i64>,
}

/// A weekly window in the program's local time: on `days`, from `from` (included) to `to`
/// (excluded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub days: Vec<Day>,
    pub from: ClockTime,
    pub to: ClockTime,
}

/// What a purchase must satisfy; every condition is optional and all must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_amount_minor: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_purchase: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inactive_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skus: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<String>>,
}

impl Conditions {
    /// A promotion that names skus or categories rewards only the lines that match them.
    pub fn is_line_scoped(&self) -> bool {
        self.skus.is_some() || self.categories.is_some()
    }
}

/// The extra points a promotion adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Effect {
    /// `floor(B × (multiplier_bps − 10000) / 10000)` on top of the tier points.
    Multiplier { multiplier_bps: u32 },
    /// A fixed number of points per qualifying purchase.
    Bonus { points: i64 },
    /// Points per unit of the qualifying lines.
    PerUnit { points: i64 },
}

/// The period of a per-member limit: a local calendar period or the promotion's whole life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitPeriod {
    Day,
    Week,
    Month,
    Promotion,
}

impl LimitPeriod {
    /// The calendar period, or `None` for the promotion's whole life.
    pub fn calendar(self) -> Option<Period> {
        match self {
            LimitPeriod::Day => Some(Period::Day),
            LimitPeriod::Week => Some(Period::Week),
            LimitPeriod::Month => Some(Period::Month),
            LimitPeriod::Promotion => None,
        }
    }
}

/// At most `count` uses per member per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub count: u32,
    pub period: LimitPeriod,
}

/// The most points a member may earn from purchases in one local period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarnCap {
    pub points: i64,
    pub period: Period,
}

/// A field of the program that breaks a rule, named as the JSON path a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub field: String,
    pub message: String,
}

impl ConfigProblem {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigProblem {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// What a promotion may refer to: the program's tiers and the org's registered locations.
pub struct Known<'a> {
    pub tiers: &'a BTreeSet<&'a str>,
    pub locations: &'a BTreeSet<String>,
}

fn check_id(field: String, id: &str) -> Result<(), ConfigProblem> {
    if id.trim().is_empty() || id.chars().count() > 128 || id.chars().any(|c| c.is_control() || c == '/') {
        return Err(ConfigProblem::new(
            field,
            "must be 1 to 128 characters, without '/' or control characters",
        ));
    }
    Ok(())
}

fn check_points(field: String, points: i64) -> Result<(), ConfigProblem> {
    if points <= 0 || points > MAX_PROMOTION_POINTS {
        return Err(ConfigProblem::new(
            field,
            format!("must be between 1 and {MAX_PROMOTION_POINTS}"),
        ));
    }
    Ok(())
}

fn check_names(
    field: String,
    names: &[String],
    known: impl Fn(&str) -> bool,
    what: &str,
) -> Result<(), ConfigProblem> {
    if names.is_empty() {
        return Err(ConfigProblem::new(
            field,
            "must not be empty (leave the condition out instead)",
        ));
    }
    let mut seen = BTreeSet::new();
    for (j, name) in names.iter().enumerate() {
        let field = format!("{field}[{j}]");
        if name.trim().is_empty() || name.chars().count() > 128 {
            return Err(ConfigProblem::new(field, "must be 1 to 128 characters"));
        }
        if !known(name) {
            return Err(ConfigProblem::new(field, format!("'{name}' is not {what}")));
        }
        if !seen.insert(name.as_str()) {
            return Err(ConfigProblem::new(field, format!("'{name}' is listed twice")));
        }
    }
    Ok(())
}

impl Promotion {
    /// Checks one promotion at `promotions[index]`.
    pub fn validate(&self, index: usize, known: &Known<'_>) -> Result<(), ConfigProblem> {
        let field = |f: &str| format!("promotions[{index}].{f}");
        check_id(field("promotion_id"), &self.promotion_id)?;
        if self.name.trim().is_empty() || self.name.chars().count() > 128 {
            return Err(ConfigProblem::new(field("name"), "must be 1 to 128 characters"));
        }
        // An end equal to the start is a promotion ended before it ever ran (EndPromotion).
        if self.ends_at.is_some_and(|end| end < self.starts_at) {
            return Err(ConfigProblem::new(
                field("ends_at"),
                "must not be before starts_at",
            ));
        }
        if let Some(schedule) = &self.schedule {
            if schedule.days.is_empty() {
                return Err(ConfigProblem::new(
                    field("schedule.days"),
                    "must name at least one day",
                ));
            }
            let unique: BTreeSet<_> = schedule.days.iter().collect();
            if unique.len() != schedule.days.len() {
                return Err(ConfigProblem::new(
                    field("schedule.days"),
                    "a day is listed twice",
                ));
            }
            if schedule.from >= schedule.to {
                return Err(ConfigProblem::new(
                    field("schedule.to"),
                    format!("must be later than from ({})", schedule.from),
                ));
            }
        }
        let c = &self.conditions;
        if let Some(min) = c.min_amount_minor {
            if min < 0 {
                return Err(ConfigProblem::new(
                    field("conditions.min_amount_minor"),
                    "must not be negative",
                ));
            }
        }
        if let Some(locations) = &c.location_ids {
            check_names(
                field("conditions.location_ids"),
                locations,
                |l| known.locations.contains(l),
                "a location registered for this org",
            )?;
        }
        if let Some(tiers) = &c.tiers {
            check_names(
                field("conditions.tiers"),
                tiers,
                |t| known.tiers.contains(t),
                "a tier of this program",
            )?;
        }
        if let Some(days) = c.inactive_days {
            if days == 0 || days > MAX_INACTIVE_DAYS {
                return Err(ConfigProblem::new(
                    field("conditions.inactive_days"),
                    format!("must be between 1 and {MAX_INACTIVE_DAYS}"),
                ));
            }
        }
        if let Some(skus) = &c.skus {
            check_names(field("conditions.skus"), skus, |_| true, "a sku")?;
        }
        if let Some(categories) = &c.categories {
            check_names(field("conditions.categories"), categories, |_| true, "a category")?;
        }
        match self.effect {
            Effect::Multiplier { multiplier_bps } => {
                if !(10_001..=MAX_PROMOTION_MULTIPLIER_BPS).contains(&multiplier_bps) {
                    return Err(ConfigProblem::new(
                        field("effect.multiplier.multiplier_bps"),
                        format!("must be between 10001 (1.0001×) and {MAX_PROMOTION_MULTIPLIER_BPS} (10×)"),
                    ));
                }
            }
            Effect::Bonus { points } => check_points(field("effect.bonus.points"), points)?,
            Effect::PerUnit { points } => check_points(field("effect.per_unit.points"), points)?,
        }
        if let Some(limit) = self.limit {
            if limit.count == 0 {
                return Err(ConfigProblem::new(field("limit.count"), "must be at least 1"));
            }
        }
        if let Some(budget) = self.budget_points {
            check_points(field("budget_points"), budget)?;
        }
        Ok(())
    }
}

/// Checks the program's promotions and earn cap together (ids are unique across the list).
pub fn validate(
    promotions: &[Promotion],
    earn_cap: Option<&EarnCap>,
    known: &Known<'_>,
) -> Result<(), ConfigProblem> {
    if promotions.len() > MAX_PROMOTIONS {
        return Err(ConfigProblem::new(
            "promotions",
            format!("at most {MAX_PROMOTIONS} promotions"),
        ));
    }
    let mut ids = BTreeSet::new();
    for (i, promotion) in promotions.iter().enumerate() {
        promotion.validate(i, known)?;
        if !ids.insert(promotion.promotion_id.as_str()) {
            return Err(ConfigProblem::new(
                format!("promotions[{i}].promotion_id"),
                format!("'{}' is used by another promotion", promotion.promotion_id),
            ));
        }
    }
    if let Some(cap) = earn_cap {
        check_points("earn_cap.points".to_owned(), cap.points)?;
    }
    Ok(())
}
