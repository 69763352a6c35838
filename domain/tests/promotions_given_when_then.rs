//! Given/when/then tests of SPEC §9 through the `Member` aggregate: given a program with
//! promotions and a member's own history, when a purchase is recorded, then its event carries
//! exactly the breakdown §9 defines. Schedules and dates, each condition, stacking and the best
//! non-stackable choice, per-member limits per local period. (The cap, basket lines, budgets,
//! refunds and the basket's validation are in `promotions_earn_given_when_then.rs`.)

mod common;

use common::promotions::*;
use common::STORE;
use domain::member::earn::{active_promotions, Breakdown, EarnHistory};
use domain::member::{MemberCommand, MemberEvent, Refund};
use serde_json::json;

/// The breakdown of one purchase by a member with the shop's history (the shop is unchanged).
fn once(shop: &Shop, amount_minor: i64, at: &str) -> Breakdown {
    shop.clone().buy("once", amount_minor, at)
}

fn once_at(shop: &Shop, amount_minor: i64, at: &str, location: &str) -> Breakdown {
    shop.clone().buy_at("once", amount_minor, at, location, None)
}

// ---------------------------------------------------------------------------------------------
// Without promotions
// ---------------------------------------------------------------------------------------------

#[test]
fn without_promotions_a_purchase_earns_its_tier_points_and_says_so() {
    let mut shop = Shop::new(vec![]);
    let events = shop
        .record(shop.purchase_at("t1", 1999, "2026-03-03T10:00:00Z", STORE, None))
        .unwrap();
    let [MemberEvent::PurchaseRecorded {
        base_points,
        points_earned,
        items,
        breakdown,
        ..
    }] = events.as_slice()
    else {
        panic!("{events:?}");
    };
    assert_eq!((*base_points, *points_earned, items), (19, 19, &None));
    assert_eq!(
        breakdown,
        &Breakdown {
            base: 19,
            tier_points: 19,
            promotions: vec![],
            cap_cut: 0,
            total: 19
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Dates and schedules, in the program's time zone
// ---------------------------------------------------------------------------------------------

fn double_on_sunday_afternoons_in_paris() -> Shop {
    Shop::new(vec![promo(
        json!({"effect": {"multiplier": {"multiplier_bps": 20000}},
        "schedule": {"days": ["sun"], "from": "14:00", "to": "18:00"}}),
    )])
    .in_zone("Europe/Paris")
}

#[test]
fn a_schedule_follows_paris_time_across_the_spring_change() {
    let shop = double_on_sunday_afternoons_in_paris();
    // Sunday 2026-03-22, before the change: Paris is UTC+1.
    assert_eq!(applied(&once(&shop, 1000, "2026-03-22T12:59:59Z")), []);
    assert_eq!(
        applied(&once(&shop, 1000, "2026-03-22T13:00:00Z")),
        [("p", 10)],
        "14:00 is included"
    );
    assert_eq!(applied(&once(&shop, 1000, "2026-03-22T16:59:59Z")), [("p", 10)]);
    assert_eq!(
        applied(&once(&shop, 1000, "2026-03-22T17:00:00Z")),
        [],
        "18:00 is excluded"
    );
    // Sunday 2026-03-29, the day of the change: Paris is UTC+2 in the afternoon.
    assert_eq!(applied(&once(&shop, 1000, "2026-03-29T11:59:59Z")), []);
    assert_eq!(applied(&once(&shop, 1000, "2026-03-29T12:00:00Z")), [("p", 10)]);
    assert_eq!(applied(&once(&shop, 1000, "2026-03-29T15:59:59Z")), [("p", 10)]);
    assert_eq!(applied(&once(&shop, 1000, "2026-03-29T16:00:00Z")), []);
    // Monday 14:00 in Paris: not a scheduled day.
    assert_eq!(applied(&once(&shop, 1000, "2026-03-30T12:00:00Z")), []);
}

#[test]
fn a_schedule_follows_paris_time_across_the_autumn_change() {
    let shop = double_on_sunday_afternoons_in_paris();
    // Sunday 2026-10-18: UTC+2.
    assert_eq!(applied(&once(&shop, 1000, "2026-10-18T11:59:59Z")), []);
    assert_eq!(applied(&once(&shop, 1000, "2026-10-18T12:00:00Z")), [("p", 10)]);
    // Sunday 2026-10-25, the day of the change: UTC+1 again in the afternoon.
    assert_eq!(applied(&once(&shop, 1000, "2026-10-25T12:59:59Z")), []);
    assert_eq!(applied(&once(&shop, 1000, "2026-10-25T13:00:00Z")), [("p", 10)]);
    assert_eq!(applied(&once(&shop, 1000, "2026-10-25T16:59:59Z")), [("p", 10)]);
    assert_eq!(applied(&once(&shop, 1000, "2026-10-25T17:00:00Z")), []);
}

#[test]
fn a_window_in_the_hour_the_clocks_repeat_runs_twice_and_in_the_hour_they_skip_never() {
    let shop = Shop::new(vec![promo(
        json!({"schedule": {"days": ["sun"], "from": "02:00", "to": "03:00"}}),
    )])
    .in_zone("Europe/Paris");
    // 2026-10-25: 02:00–03:00 happens at UTC+2 (00:00–01:00 UTC), then again at UTC+1.
    assert_eq!(
        applied(&once(&shop, 1000, "2026-10-24T23:59:59Z")),
        [],
        "01:59:59 local"
    );
    assert_eq!(
        applied(&once(&shop, 1000, "2026-10-25T00:30:00Z")),
        [("p", 10)],
        "02:30 summer time"
    );
    assert_eq!(
        applied(&once(&shop, 1000, "2026-10-25T01:30:00Z")),
        [("p", 10)],
        "02:30 winter time"
    );
    assert_eq!(
        applied(&once(&shop, 1000, "2026-10-25T02:00:00Z")),
        [],
        "03:00 winter time"
    );
    // 2026-03-29: the clocks jump from 02:00 to 03:00; the window does not happen.
    assert_eq!(
        applied(&once(&shop, 1000, "2026-03-29T00:59:59Z")),
        [],
        "01:59:59 local"
    );
    assert_eq!(
        applied(&once(&shop, 1000, "2026-03-29T01:00:00Z")),
        [],
        "03:00 local"
    );
}

#[test]
fn dates_are_starts_at_included_ends_at_excluded() {
    let shop = Shop::new(vec![promo(
        json!({"starts_at": "2026-03-01T00:00:00Z", "ends_at": "2026-03-02T00:00:00Z"}),
    )]);
    assert_eq!(applied(&once(&shop, 100, "2026-02-28T23:59:59Z")), []);
    assert_eq!(applied(&once(&shop, 100, "2026-03-01T00:00:00Z")), [("p", 10)]);
    assert_eq!(applied(&once(&shop, 100, "2026-03-01T23:59:59Z")), [("p", 10)]);
    assert_eq!(applied(&once(&shop, 100, "2026-03-02T00:00:00Z")), []);
}

// ---------------------------------------------------------------------------------------------
// Conditions
// ---------------------------------------------------------------------------------------------

const AT: &str = "2026-03-03T10:00:00Z";

#[test]
fn a_minimum_amount_qualifies_at_the_minimum() {
    let shop = Shop::new(vec![promo(json!({"conditions": {"min_amount_minor": 10000}}))]);
    assert_eq!(applied(&once(&shop, 9999, AT)), []);
    assert_eq!(applied(&once(&shop, 10000, AT)), [("p", 10)]);
}

#[test]
fn a_location_condition_names_where_the_purchase_happens() {
    let shop = Shop::new(vec![promo(json!({"conditions": {"location_ids": ["store-2"]}}))]);
    assert_eq!(applied(&once_at(&shop, 100, AT, STORE)), []);
    assert_eq!(applied(&once_at(&shop, 100, AT, "store-2")), [("p", 10)]);
}

#[test]
fn a_tier_condition_uses_the_tier_before_the_purchase() {
    let mut shop = Shop::new(vec![promo(json!({"conditions": {"tiers": ["Silver"]}}))]);
    // 500.00 earns the 500 points of Silver: the purchase that crosses is still a Bronze one.
    let events = shop
        .record(shop.purchase_at("t1", 50_000, AT, STORE, None))
        .unwrap();
    let MemberEvent::PurchaseRecorded { tier, breakdown, .. } = &events[0] else {
        panic!("{events:?}");
    };
    assert_eq!((tier.as_str(), applied(breakdown)), ("Bronze", vec![]));
    assert!(matches!(&events[1], MemberEvent::TierUpgraded { to, .. } if to == "Silver"));
    let next = shop.buy("t2", 1000, "2026-03-03T11:00:00Z");
    assert_eq!(applied(&next), [("p", 10)]);
    assert_eq!(
        (next.tier_points, next.total),
        (12, 22),
        "1.25× of 10, then the promotion"
    );
}

#[test]
fn a_first_purchase_promotion_rewards_only_the_first_purchase_ever() {
    let mut shop = Shop::new(vec![promo(json!({"conditions": {"first_purchase": true}}))]);
    assert_eq!(applied(&shop.buy("t1", 100, "2026-03-01T10:00:00Z")), [("p", 10)]);
    assert_eq!(applied(&shop.buy("t2", 100, AT)), []);
}

#[test]
fn inactive_days_count_elapsed_time_since_the_previous_purchase() {
    let mut shop = Shop::new(vec![promo(json!({"conditions": {"inactive_days": 60}}))]);
    assert_eq!(
        applied(&shop.buy("t1", 100, "2026-01-01T10:00:00Z")),
        [],
        "a first purchase is never inactive"
    );
    assert_eq!(
        applied(&once(&shop, 100, "2026-03-02T09:59:59Z")),
        [],
        "59 days 23:59:59"
    );
    assert_eq!(
        applied(&once(&shop, 100, "2026-03-02T10:00:00Z")),
        [("p", 10)],
        "exactly 60 × 24 h"
    );
    // The previous purchase is the latest one, whatever promotion it had.
    shop.buy("t2", 100, "2026-02-01T10:00:00Z");
    assert_eq!(applied(&once(&shop, 100, "2026-03-02T10:00:00Z")), []);
}

#[test]
fn every_condition_must_hold_at_once() {
    let shop = Shop::new(vec![promo(
        json!({"conditions": {"min_amount_minor": 1000, "location_ids": ["store-2"]}}),
    )]);
    assert_eq!(applied(&once_at(&shop, 999, AT, "store-2")), []);
    assert_eq!(applied(&once_at(&shop, 1000, AT, STORE)), []);
    assert_eq!(applied(&once_at(&shop, 1000, AT, "store-2")), [("p", 10)]);
}

// ---------------------------------------------------------------------------------------------
// Which promotions apply
// ---------------------------------------------------------------------------------------------

#[test]
fn every_stackable_promotion_applies_with_the_best_non_stackable_one() {
    let shop = Shop::new(vec![
        promo(json!({"promotion_id": "a", "effect": {"bonus": {"points": 5}}})),
        promo(json!({"promotion_id": "b", "effect": {"multiplier": {"multiplier_bps": 30000}}})),
        promo(json!({"promotion_id": "c", "effect": {"bonus": {"points": 7}}, "stackable": true})),
        promo(json!({"promotion_id": "d", "effect": {"bonus": {"points": 3}}, "stackable": true})),
    ]);
    // base 10: b adds 20, a adds 5: b is the best non-stackable one.
    let b = once(&shop, 1000, AT);
    assert_eq!(applied(&b), [("b", 20), ("c", 7), ("d", 3)]);
    assert_eq!((b.tier_points, b.total), (10, 40));
    // base 1: b adds 2, a adds 5.
    assert_eq!(applied(&once(&shop, 100, AT)), [("a", 5), ("c", 7), ("d", 3)]);
}

#[test]
fn a_tie_goes_to_the_higher_priority_then_the_lower_promotion_id() {
    let same = Shop::new(vec![
        promo(json!({"promotion_id": "z"})),
        promo(json!({"promotion_id": "y"})),
    ]);
    assert_eq!(applied(&once(&same, 100, AT)), [("y", 10)]);
    let prioritised = Shop::new(vec![
        promo(json!({"promotion_id": "z", "priority": 1})),
        promo(json!({"promotion_id": "y"})),
    ]);
    assert_eq!(applied(&once(&prioritised, 100, AT)), [("z", 10)]);
    // More points beat any priority.
    let richer = Shop::new(vec![
        promo(json!({"promotion_id": "z", "priority": 9})),
        promo(json!({"promotion_id": "y", "effect": {"bonus": {"points": 11}}})),
    ]);
    assert_eq!(applied(&once(&richer, 100, AT)), [("y", 11)]);
}

#[test]
fn the_best_non_stackable_choice_counts_what_is_left_of_a_budget() {
    let shop = Shop::new(vec![
        promo(json!({"promotion_id": "big", "effect": {"bonus": {"points": 500}}, "budget_points": 1000})),
        promo(json!({"promotion_id": "small", "effect": {"bonus": {"points": 50}}})),
    ])
    .budget("big", 20);
    assert_eq!(applied(&once(&shop, 100, AT)), [("small", 50)]);
    let shop = shop.budget("big", 60);
    assert_eq!(applied(&once(&shop, 100, AT)), [("big", 60)]);
}

// ---------------------------------------------------------------------------------------------
// Per-member limits, in local periods
// ---------------------------------------------------------------------------------------------

#[test]
fn a_daily_limit_counts_uses_per_local_day_in_new_york() {
    let mut shop =
        Shop::new(vec![promo(json!({"limit": {"count": 1, "period": "day"}}))]).in_zone("America/New_York");
    assert_eq!(applied(&shop.buy("t1", 100, "2026-03-03T15:00:00Z")), [("p", 10)]);
    assert_eq!(
        applied(&once(&shop, 100, "2026-03-04T04:59:59Z")),
        [],
        "still the 3rd in New York"
    );
    assert_eq!(applied(&once(&shop, 100, "2026-03-04T05:00:00Z")), [("p", 10)]);
}

#[test]
fn a_daily_limit_follows_the_23_hour_day_of_the_spring_change() {
    // 2026-03-08 in New York runs from 05:00 UTC (EST) to 04:00 UTC the next day (EDT).
    let mut shop =
        Shop::new(vec![promo(json!({"limit": {"count": 1, "period": "day"}}))]).in_zone("America/New_York");
    assert_eq!(applied(&shop.buy("t1", 100, "2026-03-08T05:00:00Z")), [("p", 10)]);
    assert_eq!(applied(&once(&shop, 100, "2026-03-09T03:59:59Z")), []);
    assert_eq!(applied(&once(&shop, 100, "2026-03-09T04:00:00Z")), [("p", 10)]);
}

#[test]
fn weekly_monthly_and_whole_life_limits() {
    let mut weekly = Shop::new(vec![promo(json!({"limit": {"count": 2, "period": "week"}}))]);
    weekly.buy("t1", 100, "2026-03-02T10:00:00Z");
    weekly.buy("t2", 100, "2026-03-04T10:00:00Z");
    assert_eq!(
        applied(&once(&weekly, 100, "2026-03-08T23:59:59Z")),
        [],
        "Sunday: the same ISO week"
    );
    assert_eq!(
        applied(&once(&weekly, 100, "2026-03-09T00:00:00Z")),
        [("p", 10)],
        "Monday: a new week"
    );

    let mut monthly = Shop::new(vec![promo(json!({"limit": {"count": 1, "period": "month"}}))]);
    monthly.buy("t1", 100, "2026-03-31T10:00:00Z");
    assert_eq!(applied(&once(&monthly, 100, "2026-03-31T23:59:59Z")), []);
    assert_eq!(applied(&once(&monthly, 100, "2026-04-01T00:00:00Z")), [("p", 10)]);

    let mut once_ever = Shop::new(vec![promo(json!({"limit": {"count": 1, "period": "promotion"}}))]);
    once_ever.buy("t1", 100, "2026-01-03T10:00:00Z");
    assert_eq!(applied(&once(&once_ever, 100, "2027-03-03T10:00:00Z")), []);
}

#[test]
fn a_refund_does_not_give_a_use_back() {
    let mut shop = Shop::new(vec![promo(json!({"limit": {"count": 1, "period": "promotion"}}))]);
    assert_eq!(
        applied(&shop.buy("t1", 1000, "2026-03-01T10:00:00Z")),
        [("p", 10)]
    );
    shop.record(MemberCommand::RefundPurchase(Refund {
        refund_id: "r1".into(),
        transaction_id: "t1".into(),
        amount_minor: 1000,
        program: shop.program.clone(),
        at: utc("2026-03-02T10:00:00Z"),
    }))
    .unwrap();
    assert_eq!(applied(&once(&shop, 1000, AT)), []);
}

#[test]
fn a_use_cut_to_zero_by_the_cap_still_counts() {
    let mut shop = Shop::new(vec![promo(json!({"limit": {"count": 1, "period": "day"}}))]).cap(1, "day");
    let first = shop.buy("t1", 100, "2026-03-03T10:00:00Z");
    assert_eq!(applied(&first), [("p", 0)]);
    assert_eq!((first.tier_points, first.cap_cut, first.total), (1, 10, 1));
    let second = shop.buy("t2", 100, "2026-03-03T11:00:00Z");
    assert_eq!(applied(&second), [], "the limit is used up");
    assert_eq!((second.tier_points, second.cap_cut, second.total), (0, 1, 0));
}

#[test]
fn a_line_scoped_promotion_with_no_qualifying_line_uses_nothing() {
    let mut shop = Shop::new(vec![promo(json!({"conditions": {"categories": ["coffee"]},
        "limit": {"count": 1, "period": "promotion"}}))]);
    let mugs = shop.buy_at("t1", 1500, AT, STORE, Some(vec![line("MUG", "goods", 1, 1500)]));
    assert_eq!(applied(&mugs), []);
    let coffee = shop.buy_at("t2", 450, AT, STORE, Some(vec![line("COF-1", "coffee", 1, 450)]));
    assert_eq!(applied(&coffee), [("p", 10)]);
}

/// The ids of the promotions active for the shop's member at `at`.
fn ids(shop: &Shop, at: &str) -> Vec<String> {
    let member = &shop.member;
    active_promotions(
        &shop.program.config,
        &member.tier.name,
        &member.earn_history,
        &shop.budgets,
        utc(at),
    )
    .into_iter()
    .map(|p| p.promotion_id.clone())
    .collect()
}

// ---------------------------------------------------------------------------------------------
// Active promotions for a member (what the storefront shows)
// ---------------------------------------------------------------------------------------------

#[test]
fn active_promotions_judge_dates_schedule_member_limits_and_budgets_but_not_the_basket() {
    let mut shop = Shop::new(vec![
        promo(json!({"promotion_id": "big-baskets", "conditions": {"min_amount_minor": 100000,
                     "location_ids": ["store-2"], "categories": ["coffee"]}})),
        promo(json!({"promotion_id": "gold-only", "conditions": {"tiers": ["Gold"]}})),
        promo(json!({"promotion_id": "later", "starts_at": "2026-04-01T00:00:00Z"})),
        promo(json!({"promotion_id": "mornings", "schedule": {"days": ["tue"], "from": "09:00", "to": "12:00"}})),
        promo(json!({"promotion_id": "once", "limit": {"count": 1, "period": "promotion"}, "stackable": true})),
        promo(json!({"promotion_id": "spent", "budget_points": 100})),
        promo(json!({"promotion_id": "welcome", "conditions": {"first_purchase": true}})),
    ])
    .budget("spent", 0);
    // Tuesday 2026-03-03 10:00 UTC.
    assert_eq!(ids(&shop, AT), ["big-baskets", "mornings", "once", "welcome"]);
    assert_eq!(
        ids(&shop, "2026-03-03T12:00:00Z"),
        ["big-baskets", "once", "welcome"]
    );
    shop.buy("t1", 100, "2026-03-02T10:00:00Z");
    assert_eq!(
        ids(&shop, AT),
        ["big-baskets", "mornings"],
        "used up, and no longer a first purchase"
    );
    // A reader rebuilds the same history from its read models.
    let rebuilt = EarnHistory::rebuilt(
        Some(utc("2026-03-02T10:00:00Z")),
        [("once".to_owned(), utc("2026-03-02T10:00:00Z"))],
    );
    let from_read_models: Vec<_> =
        active_promotions(&shop.program.config, "Bronze", &rebuilt, &shop.budgets, utc(AT))
            .into_iter()
            .map(|p| p.promotion_id.as_str())
            .collect();
    assert_eq!(from_read_models, ids(&shop, AT));
}
