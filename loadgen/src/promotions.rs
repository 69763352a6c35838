//! The promotions of `loadgen run --promotions N` (SPEC §9) and the basket lines of the
//! purchases that meet them: a small café catalogue, a realistic set of campaigns over it
//! (stackable category multipliers, per-unit points on a sku, a bonus above a minimum amount,
//! an all-day scheduled non-stackable multiplier, a once-a-day bonus, a budgeted multiplier, a
//! store-only bonus, a first-purchase bonus, a lapsed-member multiplier), every one active for
//! the whole run.

use chrono::{DateTime, Duration, Utc};
use loyalty_client::{Conditions, Effect, Item, Limit, Promotion, Schedule};
use rand::rngs::SmallRng;
use rand::Rng as _;

/// `(sku, category, unit price in cents)` of what the generated shops sell.
pub const CATALOGUE: &[(&str, &str, i64)] = &[
    ("ESPRESSO", "coffee", 220),
    ("LATTE", "coffee", 380),
    ("BEANS-250", "coffee", 900),
    ("CROISSANT", "bakery", 180),
    ("SOURDOUGH", "bakery", 450),
    ("SANDWICH", "lunch", 650),
    ("SALAD", "lunch", 820),
    ("MUG", "merchandise", 1_500),
];

/// The largest budget a promotion may have (SPEC §9, `MAX_PROMOTION_POINTS`): a run never
/// spends it, so the budgeted promotion applies to every purchase and draws on every one.
const LARGE_BUDGET: i64 = 1_000_000_000;

/// `count` promotions, all started `starts_at` and never ending. The first ten are distinct
/// campaigns; more repeat them under new ids (a second copy of each, and so on).
pub fn promotions(count: usize, starts_at: DateTime<Utc>) -> Vec<Promotion> {
    (0..count)
        .map(|n| {
            let mut promotion = campaign(n % CAMPAIGNS, starts_at);
            if n >= CAMPAIGNS {
                promotion.promotion_id = format!("{}-{}", promotion.promotion_id, n / CAMPAIGNS + 1);
            }
            promotion
        })
        .collect()
}

/// A start comfortably before any purchase of a run (receipts are up to 6 hours old).
pub fn starts_at(now: DateTime<Utc>) -> DateTime<Utc> {
    now - Duration::days(30)
}

const CAMPAIGNS: usize = 10;

fn campaign(n: usize, starts_at: DateTime<Utc>) -> Promotion {
    let multiplier = |multiplier_bps| Effect::Multiplier { multiplier_bps };
    let promotion = |id: &str, name: &str, effect| Promotion::new(id, name, starts_at, effect);
    let categories = |names: &[&str]| Conditions {
        categories: Some(names.iter().map(|c| (*c).to_owned()).collect()),
        ..Conditions::default()
    };
    match n {
        0 => Promotion {
            conditions: categories(&["coffee"]),
            stackable: true,
            ..promotion("coffee-double", "Double points on coffee", multiplier(20_000))
        },
        1 => Promotion {
            conditions: categories(&["bakery", "lunch"]),
            stackable: true,
            ..promotion("food-half-extra", "1.5x on food", multiplier(15_000))
        },
        2 => Promotion {
            conditions: Conditions {
                skus: Some(vec!["BEANS-250".to_owned()]),
                ..Conditions::default()
            },
            stackable: true,
            ..promotion(
                "beans-per-bag",
                "5 points per bag of beans",
                Effect::PerUnit { points: 5 },
            )
        },
        3 => Promotion {
            conditions: Conditions {
                min_amount_minor: Some(5_000),
                ..Conditions::default()
            },
            stackable: true,
            ..promotion("big-basket", "50 points from 50.00", Effect::Bonus { points: 50 })
        },
        4 => Promotion {
            schedule: Some(Schedule {
                days: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
                    .map(str::to_owned)
                    .to_vec(),
                from: "00:00".to_owned(),
                to: "24:00".to_owned(),
            }),
            priority: 1,
            ..promotion("every-day-triple", "Triple points, all day", multiplier(30_000))
        },
        5 => Promotion {
            limit: Some(Limit {
                count: 1,
                period: "day".to_owned(),
            }),
            stackable: true,
            ..promotion(
                "daily-visit",
                "10 points on the first visit of the day",
                Effect::Bonus { points: 10 },
            )
        },
        6 => Promotion {
            budget_points: Some(LARGE_BUDGET),
            stackable: true,
            ..promotion("sponsored-extra", "Sponsored 1.1x (budgeted)", multiplier(11_000))
        },
        7 => Promotion {
            conditions: Conditions {
                location_ids: Some(vec!["store-1".to_owned()]),
                ..Conditions::default()
            },
            ..promotion(
                "flagship-double",
                "Double points at the flagship",
                multiplier(20_000),
            )
        },
        8 => Promotion {
            conditions: Conditions {
                first_purchase: Some(true),
                ..Conditions::default()
            },
            stackable: true,
            ..promotion(
                "welcome",
                "100 points on the first purchase",
                Effect::Bonus { points: 100 },
            )
        },
        _ => Promotion {
            conditions: Conditions {
                inactive_days: Some(60),
                ..Conditions::default()
            },
            ..promotion("come-back", "4x for members away 60 days", multiplier(40_000))
        },
    }
}

/// 1 to 4 basket lines from [`CATALOGUE`] whose amounts add up to `amount_minor` exactly
/// (every line at least 1 cent; `amount_minor` must be at least 4).
pub fn basket(rng: &mut SmallRng, amount_minor: i64) -> Vec<Item> {
    let lines = rng.random_range(1..=4_i64).min(amount_minor).max(1);
    // lines - 1 distinct cut points in 1..amount_minor split the amount into positive parts.
    let mut cuts: Vec<i64> = Vec::with_capacity(lines as usize + 1);
    while cuts.len() < (lines - 1) as usize {
        let cut = rng.random_range(1..amount_minor);
        if !cuts.contains(&cut) {
            cuts.push(cut);
        }
    }
    cuts.sort_unstable();
    cuts.push(amount_minor);
    let mut from = 0;
    cuts.into_iter()
        .map(|to| {
            let (sku, category, price) = CATALOGUE[rng.random_range(0..CATALOGUE.len())];
            let amount = to - from;
            from = to;
            Item {
                sku: Some(sku.to_owned()),
                category: Some(category.to_owned()),
                quantity: u32::try_from((amount / price).clamp(1, 20)).unwrap_or(1),
                amount_minor: amount,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use rand::SeedableRng as _;

    use super::*;

    #[test]
    fn baskets_add_up_to_the_purchase_with_one_to_four_lines_of_the_catalogue() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut sizes = HashSet::new();
        for _ in 0..5_000 {
            let amount = crate::workload::purchase_amount(&mut rng);
            let lines = basket(&mut rng, amount);
            sizes.insert(lines.len());
            assert!((1..=4).contains(&lines.len()));
            assert_eq!(lines.iter().map(|l| l.amount_minor).sum::<i64>(), amount);
            for line in &lines {
                assert!(line.amount_minor >= 1 && line.quantity >= 1);
                let sku = line.sku.as_deref().unwrap();
                let (_, category, _) = CATALOGUE.iter().find(|(s, _, _)| *s == sku).unwrap();
                assert_eq!(line.category.as_deref(), Some(*category));
            }
        }
        assert_eq!(sizes.len(), 4, "every basket size occurs");
    }

    #[test]
    fn the_promotion_set_mixes_effects_and_has_a_budget_and_unique_ids() {
        let start = starts_at(Utc::now());
        let ten = promotions(10, start);
        assert_eq!(ten.len(), 10);
        assert!(promotions(0, start).is_empty());
        let effects = |kind: fn(&Effect) -> bool| ten.iter().filter(|p| kind(&p.effect)).count();
        assert!(effects(|e| matches!(e, Effect::Multiplier { .. })) >= 3);
        assert!(effects(|e| matches!(e, Effect::Bonus { .. })) >= 2);
        assert!(effects(|e| matches!(e, Effect::PerUnit { .. })) >= 1);
        assert!(ten.iter().any(|p| p.budget_points.is_some() && p.stackable));
        assert!(ten.iter().any(|p| p.schedule.is_some() && !p.stackable));
        assert!(ten.iter().any(|p| p.limit.is_some()));
        let many = promotions(25, start);
        let ids: HashSet<_> = many.iter().map(|p| p.promotion_id.as_str()).collect();
        assert_eq!(ids.len(), 25);
        assert!(many.iter().all(|p| p.starts_at < Utc::now() - Duration::hours(7)));
    }
}
