//! The points of one purchase (SPEC §9 "Points of a purchase"): base, tier points, the
//! promotions that qualify and apply, the earn cap's cut and the total — integer arithmetic
//! only, every step checked. Pure: the member's history and the budgets left are facts handed
//! in, so the same code serves live commands, quotes, replays and simulations.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::calendar::TimeZone;
use crate::program::promotion::{EarnCap, Effect, Promotion};
use crate::program::ProgramConfig;

#[cfg(test)]
#[path = "earn_tests.rs"]
mod tests;

/// A basket line of a purchase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    pub quantity: u32,
    pub amount_minor: i64,
}

impl Line {
    /// The single line of a purchase sent without items.
    pub fn whole_purchase(amount_minor: i64) -> Self {
        Line {
            sku: None,
            category: None,
            quantity: 1,
            amount_minor,
        }
    }
}

/// One applied promotion's points, after the cap cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionPoints {
    pub promotion_id: String,
    pub points: i64,
    /// What is left of the promotion's budget after this purchase (`None`: no budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_left: Option<i64>,
}

/// Why a purchase earned what it earned: every value is what was awarded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breakdown {
    pub base: i64,
    pub tier_points: i64,
    pub promotions: Vec<PromotionPoints>,
    pub cap_cut: i64,
    pub total: i64,
}

/// The rules of the program in force that decide a purchase's points.
#[derive(Debug, Clone, Copy)]
pub struct EarnRules<'a> {
    pub earn_rate: i64,
    /// Minor-unit digits of the program's currency.
    pub digits: u32,
    pub time_zone: TimeZone,
    pub promotions: &'a [Promotion],
    pub earn_cap: Option<EarnCap>,
}

/// The purchase being decided.
#[derive(Debug, Clone, Copy)]
pub struct PurchaseFacts<'a> {
    pub amount_minor: i64,
    pub location_id: &'a str,
    pub occurred_at: DateTime<Utc>,
    /// The basket, or the one whole-purchase line.
    pub lines: &'a [Line],
    /// The member's tier before the purchase.
    pub tier: &'a str,
    pub tier_multiplier_bps: u32,
}

/// What a member's own past purchases say, as far as promotions and the cap need it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarnHistory {
    /// Points awarded by purchases (their totals), by `occurred_at`.
    earned: BTreeMap<DateTime<Utc>, i64>,
    /// The latest `occurred_at` of any purchase.
    last_purchase_at: Option<DateTime<Utc>>,
    /// Each promotion's uses by `occurred_at`.
    uses: BTreeMap<String, BTreeMap<DateTime<Utc>, u32>>,
}

impl EarnHistory {
    /// Records a purchase that was awarded `breakdown`.
    pub fn record(&mut self, occurred_at: DateTime<Utc>, breakdown: &Breakdown) {
        *self.earned.entry(occurred_at).or_default() += breakdown.total;
        self.last_purchase_at = Some(
            self.last_purchase_at
                .map_or(occurred_at, |last| last.max(occurred_at)),
        );
        for applied in &breakdown.promotions {
            *self
                .uses
                .entry(applied.promotion_id.clone())
                .or_default()
                .entry(occurred_at)
                .or_default() += 1;
        }
    }

    /// The history as a reader rebuilds it from read models: the member's latest purchase and
    /// each promotion use `(promotion_id, occurred_at)`. It knows no earned totals, so it is
    /// enough for [`active_promotions`] but not for an earn cap.
    pub fn rebuilt(
        last_purchase_at: Option<DateTime<Utc>>,
        uses: impl IntoIterator<Item = (String, DateTime<Utc>)>,
    ) -> EarnHistory {
        let mut history = EarnHistory {
            last_purchase_at,
            ..EarnHistory::default()
        };
        for (promotion_id, at) in uses {
            *history
                .uses
                .entry(promotion_id)
                .or_default()
                .entry(at)
                .or_default() += 1;
        }
        history
    }

    /// The latest `occurred_at` of the member's purchases.
    pub fn last_purchase_at(&self) -> Option<DateTime<Utc>> {
        self.last_purchase_at
    }

    pub fn has_purchased(&self) -> bool {
        self.last_purchase_at.is_some()
    }

    fn earned_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
        self.earned.range(from..to).map(|(_, points)| points).sum()
    }

    fn uses(&self, promotion_id: &str, within: Option<(DateTime<Utc>, DateTime<Utc>)>) -> u32 {
        let Some(uses) = self.uses.get(promotion_id) else {
            return 0;
        };
        match within {
            Some((from, to)) => uses.range(from..to).map(|(_, n)| n).sum(),
            None => uses.values().sum(),
        }
    }
}

/// Arithmetic that overflowed: the purchase is refused rather than wrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{field}: arithmetic overflow")]
pub struct Overflow {
    pub field: &'static str,
}

fn overflow(field: &'static str) -> Overflow {
    Overflow { field }
}

/// `floor(amount × earn_rate / 10^digits)`.
fn base_of(amount_minor: i64, rules: &EarnRules<'_>) -> Result<i64, Overflow> {
    let scale = 10_i128
        .checked_pow(rules.digits)
        .ok_or(overflow("amount_minor"))?;
    let product = i128::from(amount_minor)
        .checked_mul(i128::from(rules.earn_rate))
        .ok_or(overflow("amount_minor"))?;
    i64::try_from(product.div_euclid(scale)).map_err(|_| overflow("amount_minor"))
}

/// `floor(points × bps / 10000)`.
fn scale_bps(points: i64, bps: i64) -> Result<i64, Overflow> {
    let product = i128::from(points)
        .checked_mul(i128::from(bps))
        .ok_or(overflow("amount_minor"))?;
    i64::try_from(product.div_euclid(10_000)).map_err(|_| overflow("amount_minor"))
}

/// The lines a promotion rewards, or `None` when it is line-scoped and no line matches.
fn qualifying_lines<'l>(promotion: &Promotion, lines: &'l [Line]) -> Option<Vec<&'l Line>> {
    let c = &promotion.conditions;
    if !c.is_line_scoped() {
        return Some(lines.iter().collect());
    }
    let listed = |list: &Option<Vec<String>>, value: &Option<String>| matches!((list, value), (Some(list), Some(value)) if list.contains(value));
    let matching: Vec<&Line> = lines
        .iter()
        .filter(|line| listed(&c.skus, &line.sku) || listed(&c.categories, &line.category))
        .collect();
    (!matching.is_empty()).then_some(matching)
}

/// `true` when the promotion's dates, schedule and member conditions hold for this purchase,
/// ignoring the amount and the basket (what "active for a member" means) and the limits.
pub fn runs_for(
    promotion: &Promotion,
    time_zone: TimeZone,
    at: DateTime<Utc>,
    location_id: Option<&str>,
    tier: &str,
    history: &EarnHistory,
) -> bool {
    if at < promotion.starts_at || promotion.ends_at.is_some_and(|end| at >= end) {
        return false;
    }
    if let Some(schedule) = &promotion.schedule {
        let (weekday, seconds) = time_zone.weekday_and_seconds(at);
        let in_window = seconds >= schedule.from.seconds() && seconds < schedule.to.seconds();
        if !in_window || !schedule.days.iter().any(|d| d.weekday() == weekday) {
            return false;
        }
    }
    let c = &promotion.conditions;
    if let (Some(locations), Some(location)) = (&c.location_ids, location_id) {
        if !locations.iter().any(|l| l == location) {
            return false;
        }
    }
    if c.tiers
        .as_ref()
        .is_some_and(|tiers| !tiers.iter().any(|t| t == tier))
    {
        return false;
    }
    if c.first_purchase == Some(true) && history.has_purchased() {
        return false;
    }
    if let Some(days) = c.inactive_days {
        // A first purchase has no previous one to be inactive since.
        let long_enough = history
            .last_purchase_at
            .is_some_and(|last| at.signed_duration_since(last) >= Duration::days(i64::from(days)));
        if !long_enough {
            return false;
        }
    }
    true
}

/// The promotions that would apply to a purchase by a member of `tier` with `history` at `at`,
/// at any of the org's locations, ignoring the amount and basket conditions (SPEC §9 "Active
/// promotions for a member"): dates, schedule, tier, first purchase, inactive days, the
/// per-member limit and the budget are judged.
pub fn active_promotions<'p>(
    config: &'p ProgramConfig,
    tier: &str,
    history: &EarnHistory,
    budgets_left: &BTreeMap<String, i64>,
    at: DateTime<Utc>,
) -> Vec<&'p Promotion> {
    config
        .promotions
        .iter()
        .filter(|p| {
            runs_for(p, config.time_zone, at, None, tier, history)
                && within_limit(p, config.time_zone, at, history)
                && (p.budget_points.is_none()
                    || budgets_left.get(&p.promotion_id).is_some_and(|left| *left > 0))
        })
        .collect()
}

/// `true` when the member has not used up the promotion's per-member limit in the period.
fn within_limit(
    promotion: &Promotion,
    time_zone: TimeZone,
    at: DateTime<Utc>,
    history: &EarnHistory,
) -> bool {
    let Some(limit) = promotion.limit else {
        return true;
    };
    let within = limit
        .period
        .calendar()
        .map(|period| time_zone.period_bounds(period, at));
    history.uses(&promotion.promotion_id, within) < limit.count
}

/// The extra points a qualifying promotion adds before any budget or cap.
fn extra_points(
    promotion: &Promotion,
    lines: &[&Line],
    base: i64,
    rules: &EarnRules<'_>,
) -> Result<i64, Overflow> {
    match promotion.effect {
        Effect::Multiplier { multiplier_bps } => {
            let b = if promotion.conditions.is_line_scoped() {
                lines.iter().try_fold(0_i64, |sum, line| {
                    sum.checked_add(base_of(line.amount_minor, rules)?)
                        .ok_or(overflow("items"))
                })?
            } else {
                base
            };
            scale_bps(b, i64::from(multiplier_bps) - 10_000)
        }
        Effect::Bonus { points } => Ok(points),
        Effect::PerUnit { points } => {
            let units = lines
                .iter()
                .try_fold(0_i64, |sum, line| sum.checked_add(i64::from(line.quantity)))
                .ok_or(overflow("items"))?;
            points.checked_mul(units).ok_or(overflow("items"))
        }
    }
}

/// A promotion that qualifies, with its extra after its budget.
struct Candidate<'p> {
    promotion: &'p Promotion,
    extra: i64,
    budget_left: Option<i64>,
}

/// Decides the points of a purchase. `budgets_left` holds what is left of each budgeted
/// promotion's budget (a promotion with a budget and no entry has none left).
pub fn earn(
    rules: &EarnRules<'_>,
    purchase: &PurchaseFacts<'_>,
    history: &EarnHistory,
    budgets_left: &BTreeMap<String, i64>,
) -> Result<Breakdown, Overflow> {
    let base = base_of(purchase.amount_minor, rules)?;
    let tier_points = scale_bps(base, i64::from(purchase.tier_multiplier_bps))?;

    let mut stackable = Vec::new();
    let mut best: Option<Candidate<'_>> = None;
    for promotion in rules.promotions {
        if !runs_for(
            promotion,
            rules.time_zone,
            purchase.occurred_at,
            Some(purchase.location_id),
            purchase.tier,
            history,
        ) || purchase.amount_minor < promotion.conditions.min_amount_minor.unwrap_or(0)
            || !within_limit(promotion, rules.time_zone, purchase.occurred_at, history)
        {
            continue;
        }
        let Some(lines) = qualifying_lines(promotion, purchase.lines) else {
            continue;
        };
        let budget_left = match promotion.budget_points {
            None => None,
            Some(_) => match budgets_left.get(&promotion.promotion_id).copied().unwrap_or(0) {
                // A spent budget: the promotion no longer qualifies.
                left if left <= 0 => continue,
                left => Some(left),
            },
        };
        let raw = extra_points(promotion, &lines, base, rules)?;
        let extra = budget_left.map_or(raw, |left| raw.min(left));
        let candidate = Candidate {
            promotion,
            extra,
            budget_left,
        };
        if promotion.stackable {
            stackable.push(candidate);
        } else if best.as_ref().is_none_or(|b| better(&candidate, b)) {
            best = Some(candidate);
        }
    }
    let mut applied: Vec<Candidate<'_>> = stackable;
    applied.extend(best);
    // Listed in the program's order, whichever rule chose them.
    applied.sort_by_key(|c| {
        rules
            .promotions
            .iter()
            .position(|p| p.promotion_id == c.promotion.promotion_id)
    });

    let uncapped = applied
        .iter()
        .try_fold(tier_points, |sum, c| sum.checked_add(c.extra))
        .ok_or(overflow("amount_minor"))?;
    let cap_cut = match rules.earn_cap {
        None => 0,
        Some(cap) => {
            let (from, to) = rules.time_zone.period_bounds(cap.period, purchase.occurred_at);
            let room = (cap.points - history.earned_between(from, to)).max(0);
            (uncapped - room).max(0)
        }
    };
    // The cut comes out of the promotions' extras first, highest promotion_id first, then out
    // of the tier points.
    let mut extras: Vec<i64> = applied.iter().map(|c| c.extra).collect();
    let mut to_cut = cap_cut;
    let mut order: Vec<usize> = (0..applied.len()).collect();
    order.sort_by(|&a, &b| {
        applied[b]
            .promotion
            .promotion_id
            .cmp(&applied[a].promotion.promotion_id)
    });
    for i in order {
        let cut = to_cut.min(extras[i]);
        extras[i] -= cut;
        to_cut -= cut;
    }
    let tier_points = tier_points - to_cut;
    let promotions = applied
        .iter()
        .zip(&extras)
        .map(|(c, &points)| PromotionPoints {
            promotion_id: c.promotion.promotion_id.clone(),
            points,
            budget_left: c.budget_left.map(|left| left - points),
        })
        .collect();
    Ok(Breakdown {
        base,
        tier_points,
        promotions,
        cap_cut,
        total: uncapped - cap_cut,
    })
}

/// The better of two non-stackable candidates: more extra points, then higher priority, then
/// the lower promotion id.
fn better(a: &Candidate<'_>, b: &Candidate<'_>) -> bool {
    (
        a.extra,
        a.promotion.priority,
        std::cmp::Reverse(&a.promotion.promotion_id),
    ) > (
        b.extra,
        b.promotion.priority,
        std::cmp::Reverse(&b.promotion.promotion_id),
    )
}
