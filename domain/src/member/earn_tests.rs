//! Given a program with promotions and a member's history, when a purchase is decided, then
//! its breakdown is exactly what SPEC §9 says.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use serde_json::json;

use crate::calendar::TimeZone;
use crate::member::earn::{earn, Breakdown, EarnHistory, EarnRules, Line, PromotionPoints, PurchaseFacts};
use crate::program::promotion::{EarnCap, Promotion};

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn promo(value: serde_json::Value) -> Promotion {
    let mut base = json!({"promotion_id": "p", "name": "P", "starts_at": "2026-01-01T00:00:00Z",
                          "effect": {"bonus": {"points": 10}}});
    for (k, v) in value.as_object().unwrap() {
        base[k] = v.clone();
    }
    serde_json::from_value(base).unwrap()
}

struct Given {
    promotions: Vec<Promotion>,
    tz: TimeZone,
    cap: Option<EarnCap>,
    history: EarnHistory,
    budgets: BTreeMap<String, i64>,
    tier: &'static str,
    multiplier: u32,
}

fn given(promotions: Vec<Promotion>) -> Given {
    Given {
        promotions,
        tz: TimeZone::UTC,
        cap: None,
        history: EarnHistory::default(),
        budgets: BTreeMap::new(),
        tier: "Bronze",
        multiplier: 10_000,
    }
}

impl Given {
    fn in_zone(mut self, tz: &str) -> Self {
        self.tz = tz.parse().unwrap();
        self
    }
    fn cap(mut self, points: i64, period: &str) -> Self {
        self.cap = Some(serde_json::from_value(json!({"points": points, "period": period})).unwrap());
        self
    }
    fn tier(mut self, tier: &'static str, multiplier: u32) -> Self {
        self.tier = tier;
        self.multiplier = multiplier;
        self
    }
    fn budget(mut self, id: &str, left: i64) -> Self {
        self.budgets.insert(id.to_owned(), left);
        self
    }
    fn rules(&self) -> EarnRules<'_> {
        EarnRules {
            earn_rate: 1,
            digits: 2,
            time_zone: self.tz,
            promotions: &self.promotions,
            earn_cap: self.cap,
        }
    }
    /// A purchase that was decided and recorded, building the member's history.
    fn purchased(mut self, amount: i64, at: &str) -> Self {
        let b = self.when(amount, at);
        self.history.record(utc(at), &b);
        self
    }
    fn when(&self, amount: i64, at: &str) -> Breakdown {
        self.when_basket(amount, at, "store-1", &[Line::whole_purchase(amount)])
    }
    fn when_basket(&self, amount: i64, at: &str, location: &str, lines: &[Line]) -> Breakdown {
        let facts = PurchaseFacts {
            amount_minor: amount,
            location_id: location,
            occurred_at: utc(at),
            lines,
            tier: self.tier,
            tier_multiplier_bps: self.multiplier,
        };
        earn(&self.rules(), &facts, &self.history, &self.budgets).unwrap()
    }
}

fn applied(b: &Breakdown) -> Vec<(&str, i64)> {
    b.promotions
        .iter()
        .map(|p| (p.promotion_id.as_str(), p.points))
        .collect()
}

fn line(sku: &str, category: &str, quantity: u32, amount: i64) -> Line {
    Line {
        sku: Some(sku.into()),
        category: Some(category.into()),
        quantity,
        amount_minor: amount,
    }
}

#[test]
fn without_promotions_a_purchase_earns_its_tier_points() {
    let b = given(vec![])
        .tier("Silver", 12_500)
        .when(1999, "2026-03-03T10:00:00Z");
    assert_eq!(
        b,
        Breakdown {
            base: 19,
            tier_points: 23,
            promotions: vec![],
            cap_cut: 0,
            total: 23
        }
    );
}

#[test]
fn a_schedule_in_paris_follows_local_time_across_the_daylight_saving_change() {
    let g = given(vec![promo(
        json!({"effect": {"multiplier": {"multiplier_bps": 20000}},
        "schedule": {"days": ["sun"], "from": "14:00", "to": "18:00"}}),
    )])
    .in_zone("Europe/Paris");
    // Sunday 2026-03-22, before the change: Paris is UTC+1.
    assert_eq!(applied(&g.when(1000, "2026-03-22T13:00:00Z")), [("p", 10)]);
    assert_eq!(applied(&g.when(1000, "2026-03-22T12:59:59Z")), []);
    assert_eq!(applied(&g.when(1000, "2026-03-22T16:59:59Z")), [("p", 10)]);
    assert_eq!(
        applied(&g.when(1000, "2026-03-22T17:00:00Z")),
        [],
        "to is excluded"
    );
    // Sunday 2026-03-29, the day of the change: Paris is UTC+2 in the afternoon.
    assert_eq!(applied(&g.when(1000, "2026-03-29T12:00:00Z")), [("p", 10)]);
    assert_eq!(applied(&g.when(1000, "2026-03-29T11:59:00Z")), []);
    assert_eq!(applied(&g.when(1000, "2026-03-29T16:00:00Z")), [], "18:00 local");
    // Monday: not a scheduled day.
    assert_eq!(applied(&g.when(1000, "2026-03-30T12:00:00Z")), []);
}

#[test]
fn dates_are_starts_at_included_ends_at_excluded() {
    let g = given(vec![promo(
        json!({"starts_at": "2026-03-01T00:00:00Z", "ends_at": "2026-03-02T00:00:00Z"}),
    )]);
    assert_eq!(applied(&g.when(100, "2026-02-28T23:59:59Z")), []);
    assert_eq!(applied(&g.when(100, "2026-03-01T00:00:00Z")), [("p", 10)]);
    assert_eq!(applied(&g.when(100, "2026-03-02T00:00:00Z")), []);
}

#[test]
fn each_condition_must_hold() {
    let at = "2026-03-03T10:00:00Z";
    let min = given(vec![promo(json!({"conditions": {"min_amount_minor": 10000}}))]);
    assert_eq!(applied(&min.when(9999, at)), []);
    assert_eq!(applied(&min.when(10000, at)), [("p", 10)]);

    let loc = given(vec![promo(json!({"conditions": {"location_ids": ["store-2"]}}))]);
    assert_eq!(
        applied(&loc.when_basket(100, at, "store-1", &[Line::whole_purchase(100)])),
        []
    );
    assert_eq!(
        applied(&loc.when_basket(100, at, "store-2", &[Line::whole_purchase(100)])),
        [("p", 10)]
    );

    let tiers = given(vec![promo(json!({"conditions": {"tiers": ["Gold"]}}))]);
    assert_eq!(applied(&tiers.when(100, at)), []);
    assert_eq!(applied(&tiers.tier("Gold", 15_000).when(100, at)), [("p", 10)]);

    let first = given(vec![promo(json!({"conditions": {"first_purchase": true}}))]);
    assert_eq!(applied(&first.when(100, at)), [("p", 10)]);
    let second = first.purchased(100, "2026-03-01T10:00:00Z");
    assert_eq!(applied(&second.when(100, at)), []);
}

#[test]
fn inactive_days_count_elapsed_time_since_the_previous_purchase() {
    let g = given(vec![promo(json!({"conditions": {"inactive_days": 60}}))]);
    assert_eq!(
        applied(&g.when(100, "2026-06-01T10:00:00Z")),
        [],
        "a first purchase is never inactive"
    );
    let g = g.purchased(100, "2026-01-01T10:00:00Z");
    assert_eq!(
        applied(&g.when(100, "2026-03-02T09:59:59Z")),
        [],
        "59 days 23:59:59"
    );
    assert_eq!(
        applied(&g.when(100, "2026-03-02T10:00:00Z")),
        [("p", 10)],
        "exactly 60 × 24 h"
    );
}

#[test]
fn stackable_promotions_all_apply_and_the_best_non_stackable_one_joins_them() {
    let g = given(vec![
        promo(json!({"promotion_id": "a", "effect": {"bonus": {"points": 5}}})),
        promo(json!({"promotion_id": "b", "effect": {"multiplier": {"multiplier_bps": 30000}}})),
        promo(json!({"promotion_id": "c", "effect": {"bonus": {"points": 7}}, "stackable": true})),
        promo(json!({"promotion_id": "d", "effect": {"bonus": {"points": 3}}, "stackable": true})),
    ]);
    // base 10: b adds 20, a adds 5: b is the best non-stackable one.
    let b = g.when(1000, "2026-03-03T10:00:00Z");
    assert_eq!(applied(&b), [("b", 20), ("c", 7), ("d", 3)]);
    assert_eq!(b.total, 10 + 20 + 7 + 3);
    // base 1: b adds 2, a adds 5.
    assert_eq!(
        applied(&g.when(100, "2026-03-03T10:00:00Z")),
        [("a", 5), ("c", 7), ("d", 3)]
    );
}

#[test]
fn ties_between_non_stackable_promotions_go_to_priority_then_the_lower_id() {
    let at = "2026-03-03T10:00:00Z";
    let g = given(vec![
        promo(json!({"promotion_id": "z"})),
        promo(json!({"promotion_id": "y"})),
    ]);
    assert_eq!(applied(&g.when(100, at)), [("y", 10)]);
    let g = given(vec![
        promo(json!({"promotion_id": "z", "priority": 1})),
        promo(json!({"promotion_id": "y"})),
    ]);
    assert_eq!(applied(&g.when(100, at)), [("z", 10)]);
}

#[test]
fn a_per_member_limit_counts_uses_per_local_period() {
    let g = given(vec![promo(json!({"limit": {"count": 1, "period": "day"}}))]).in_zone("America/New_York");
    let g = g.purchased(100, "2026-03-03T15:00:00Z");
    assert_eq!(
        applied(&g.when(100, "2026-03-04T04:59:59Z")),
        [],
        "still the 3rd in New York"
    );
    assert_eq!(applied(&g.when(100, "2026-03-04T05:00:00Z")), [("p", 10)]);

    let weekly = given(vec![promo(json!({"limit": {"count": 2, "period": "week"}}))])
        .purchased(100, "2026-03-02T10:00:00Z")
        .purchased(100, "2026-03-04T10:00:00Z");
    assert_eq!(applied(&weekly.when(100, "2026-03-08T23:00:00Z")), []);
    assert_eq!(applied(&weekly.when(100, "2026-03-09T00:00:00Z")), [("p", 10)]);

    let monthly = given(vec![promo(json!({"limit": {"count": 1, "period": "month"}}))])
        .purchased(100, "2026-03-31T10:00:00Z");
    assert_eq!(applied(&monthly.when(100, "2026-03-31T23:00:00Z")), []);
    assert_eq!(applied(&monthly.when(100, "2026-04-01T00:00:00Z")), [("p", 10)]);

    let once = given(vec![promo(json!({"limit": {"count": 1, "period": "promotion"}}))])
        .purchased(100, "2026-01-03T10:00:00Z");
    assert_eq!(applied(&once.when(100, "2027-03-03T10:00:00Z")), []);
}

#[test]
fn a_use_cut_to_zero_by_the_cap_still_counts() {
    let g = given(vec![promo(json!({"limit": {"count": 1, "period": "day"}}))]).cap(1, "day");
    let first = g.when(100, "2026-03-03T10:00:00Z");
    assert_eq!(applied(&first), [("p", 0)]);
    assert_eq!((first.tier_points, first.cap_cut, first.total), (1, 10, 1));
    let g = g.purchased(100, "2026-03-03T10:00:00Z");
    let second = g.when(100, "2026-03-03T11:00:00Z");
    assert_eq!(applied(&second), [], "the limit is used up");
    assert_eq!((second.tier_points, second.cap_cut, second.total), (0, 1, 0));
}

#[test]
fn the_cap_cuts_the_highest_promotion_ids_first_then_tier_points() {
    let g = given(vec![
        promo(json!({"promotion_id": "a", "effect": {"bonus": {"points": 30}}, "stackable": true})),
        promo(json!({"promotion_id": "b", "effect": {"bonus": {"points": 20}}, "stackable": true})),
    ])
    .cap(120, "week")
    .purchased(5000, "2026-03-02T10:00:00Z"); // 50 + 30 + 20 = 100 this week
    let b = g.when(1000, "2026-03-04T10:00:00Z"); // 10 + 30 + 20 = 60, 20 of room
    assert_eq!(applied(&b), [("a", 10), ("b", 0)]);
    assert_eq!((b.base, b.tier_points, b.cap_cut, b.total), (10, 10, 40, 20));
    let b = g.when(1000, "2026-03-09T10:00:00Z");
    assert_eq!((b.cap_cut, b.total), (0, 60), "a new local week has room again");
}

#[test]
fn line_scoped_promotions_reward_only_their_lines() {
    let g = given(vec![
        promo(
            json!({"promotion_id": "coffee-x3", "effect": {"multiplier": {"multiplier_bps": 30000}}, "stackable": true,
                     "conditions": {"categories": ["coffee"]}}),
        ),
        promo(
            json!({"promotion_id": "cake-5", "effect": {"per_unit": {"points": 5}}, "stackable": true,
                     "conditions": {"skus": ["CAKE-1"]}}),
        ),
    ]);
    let basket = [
        line("COF-1", "coffee", 2, 450),
        line("CAKE-1", "bakery", 3, 1299),
        line("MUG", "goods", 1, 1551),
    ];
    let b = g.when_basket(3300, "2026-03-03T10:00:00Z", "store-1", &basket);
    // base 33; coffee line base 4 → +8; cake 3 units → +15.
    assert_eq!(applied(&b), [("coffee-x3", 8), ("cake-5", 15)]);
    assert_eq!(b.total, 33 + 8 + 15);
    let no_match = [line("MUG", "goods", 1, 3300)];
    assert_eq!(
        applied(&g.when_basket(3300, "2026-03-03T10:00:00Z", "store-1", &no_match)),
        []
    );
}

#[test]
fn a_budget_gives_what_is_left_then_nothing() {
    let g = given(vec![promo(
        json!({"effect": {"bonus": {"points": 500}}, "budget_points": 1000}),
    )])
    .budget("p", 300);
    let b = g.when(100, "2026-03-03T10:00:00Z");
    assert_eq!(
        b.promotions,
        [PromotionPoints {
            promotion_id: "p".into(),
            points: 300,
            budget_left: Some(0)
        }]
    );
    let spent = given(vec![promo(
        json!({"effect": {"bonus": {"points": 500}}, "budget_points": 1000}),
    )])
    .budget("p", 0);
    assert_eq!(applied(&spent.when(100, "2026-03-03T10:00:00Z")), []);
}

#[test]
fn the_best_non_stackable_choice_counts_the_budget_limit() {
    let g = given(vec![
        promo(json!({"promotion_id": "big", "effect": {"bonus": {"points": 500}}, "budget_points": 1000})),
        promo(json!({"promotion_id": "small", "effect": {"bonus": {"points": 50}}})),
    ])
    .budget("big", 20);
    assert_eq!(applied(&g.when(100, "2026-03-03T10:00:00Z")), [("small", 50)]);
}

proptest! {
    #[test]
    fn the_breakdown_always_sums_to_the_total(
        amount in 1_i64..10_000_000,
        bonus in 1_i64..1000,
        mult in 10_001_u32..100_000,
        cap in 1_i64..5000,
        earlier in 0_i64..100_000,
    ) {
        let g = given(vec![
            promo(json!({"promotion_id": "a", "effect": {"bonus": {"points": bonus}}, "stackable": true})),
            promo(json!({"promotion_id": "b", "effect": {"multiplier": {"multiplier_bps": mult}}})),
        ]).cap(cap, "day").purchased(earlier, "2026-03-03T08:00:00Z");
        let b = g.when(amount, "2026-03-03T10:00:00Z");
        let sum: i64 = b.tier_points + b.promotions.iter().map(|p| p.points).sum::<i64>();
        prop_assert_eq!(sum, b.total);
        prop_assert!(b.total <= cap);
        prop_assert!(b.tier_points >= 0 && b.promotions.iter().all(|p| p.points >= 0));
    }
}
