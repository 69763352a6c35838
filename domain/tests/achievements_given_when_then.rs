//! Given/when/then tests of SPEC §9 achievements through the `Member` aggregate: each
//! criterion, windows, local weeks, unlock-once, the reward's ledger postings, that a refund
//! moves progress but never unlocks nor takes a badge back, and the program's validation.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::promotions::*;
use domain::ledger::{postings, Account};
use domain::member::achievements::AchievementProgress;
use domain::member::{MemberCommand, MemberEvent, Refund};
use domain::program::{Achievement, ProgramError};
use serde_json::{json, Value};

/// An achievement written as the JSON a marketer sends.
fn achievement(id: &str, criteria: Value, fields: Value) -> Achievement {
    let mut a = json!({"achievement_id": id, "name": format!("Achievement {id}"), "criteria": criteria,
                       "reward_points": 100});
    for (k, v) in fields.as_object().unwrap() {
        a[k] = v.clone();
    }
    serde_json::from_value(a).unwrap()
}

fn shop(achievements: Vec<Achievement>) -> Shop {
    let mut shop = Shop::new(vec![]);
    Arc::make_mut(&mut shop.program.config).achievements = achievements;
    shop
}

fn buy(shop: &mut Shop, txn: &str, amount_minor: i64, at: &str) -> Vec<MemberEvent> {
    buy_at(shop, txn, amount_minor, at, common::STORE)
}

fn buy_at(shop: &mut Shop, txn: &str, amount_minor: i64, at: &str, location: &str) -> Vec<MemberEvent> {
    let command = shop.purchase_at(txn, amount_minor, at, location, None);
    shop.record(command).unwrap()
}

fn refund(shop: &mut Shop, refund_id: &str, txn: &str, amount_minor: i64, at: &str) -> Vec<MemberEvent> {
    let command = MemberCommand::RefundPurchase(Refund {
        refund_id: refund_id.into(),
        transaction_id: txn.into(),
        amount_minor,
        program: shop.program.clone(),
        at: utc(at),
    });
    shop.record(command).unwrap()
}

/// `(achievement_id, progress, target)` of the progress event among `events`.
fn progressed(events: &[MemberEvent]) -> Vec<(String, i64, i64)> {
    events
        .iter()
        .filter_map(|e| match e {
            MemberEvent::AchievementProgressed { progress, .. } => Some(progress.clone()),
            _ => None,
        })
        .flatten()
        .map(
            |AchievementProgress {
                 achievement_id,
                 progress,
                 target,
             }| (achievement_id, progress, target),
        )
        .collect()
}

fn unlocked(events: &[MemberEvent]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            MemberEvent::AchievementUnlocked { achievement_id, .. } => Some(achievement_id.as_str()),
            _ => None,
        })
        .collect()
}

fn p(id: &str, progress: i64, target: i64) -> (String, i64, i64) {
    (id.into(), progress, target)
}

#[test]
fn the_third_purchase_unlocks_three_purchases_with_its_reward_through_the_ledger() {
    let mut shop = shop(vec![achievement(
        "three",
        json!({"purchases": {"count": 3}}),
        json!({"badge": "Regular"}),
    )]);
    let first = buy(&mut shop, "t1", 1000, "2026-03-02T10:00:00Z");
    assert_eq!(progressed(&first), vec![p("three", 1, 3)]);
    assert!(unlocked(&first).is_empty());
    buy(&mut shop, "t2", 1000, "2026-03-03T10:00:00Z");
    let third = buy(&mut shop, "t3", 1000, "2026-03-04T10:00:00Z");
    assert_eq!(progressed(&third), vec![p("three", 3, 3)]);
    let unlock = third.last().unwrap();
    let MemberEvent::AchievementUnlocked {
        achievement_id,
        badge,
        reward_points,
        transaction_id,
        balance_after,
        ..
    } = unlock
    else {
        panic!("the unlock is the purchase's last event: {third:?}");
    };
    assert_eq!(
        (achievement_id.as_str(), badge.as_str(), *reward_points),
        ("three", "Regular", 100)
    );
    assert_eq!(transaction_id, "t3");
    assert_eq!(
        *balance_after,
        30 + 100,
        "three purchases of 10 points, then the reward"
    );
    assert_eq!(shop.member.points.balance, 130);
    assert_eq!(shop.member.points.lifetime_earned, 130);
    let journal = postings(unlock);
    assert_eq!(journal.len(), 2, "one journal entry of two postings");
    assert_eq!(journal.iter().map(|p| p.delta).sum::<i64>(), 0, "balanced");
    let member = journal
        .iter()
        .find(|p| p.account == Account::MemberPoints)
        .unwrap();
    assert_eq!(member.delta, 100);
    assert_eq!(
        shop.member.achievements["three"].unlocked_at,
        Some(utc("2026-03-04T10:00:00Z"))
    );
}

#[test]
fn an_achievement_unlocks_once_and_then_stops_moving() {
    let mut shop = shop(vec![achievement(
        "two",
        json!({"purchases": {"count": 2}}),
        json!({}),
    )]);
    buy(&mut shop, "t1", 1000, "2026-03-02T10:00:00Z");
    assert_eq!(
        unlocked(&buy(&mut shop, "t2", 1000, "2026-03-03T10:00:00Z")),
        vec!["two"]
    );
    let later = buy(&mut shop, "t3", 1000, "2026-03-04T10:00:00Z");
    assert!(unlocked(&later).is_empty(), "never twice: {later:?}");
    assert!(
        progressed(&later).is_empty(),
        "an unlocked achievement records no progress"
    );
    assert_eq!(shop.member.points.balance, 30 + 100);
}

#[test]
fn spend_is_net_of_refunds_and_a_refund_never_unlocks() {
    let mut shop = shop(vec![achievement(
        "big",
        json!({"spend": {"amount_minor": 10_000}}),
        json!({}),
    )]);
    buy(&mut shop, "t1", 6000, "2026-03-02T10:00:00Z");
    assert_eq!(
        progressed(&refund(&mut shop, "r1", "t1", 2000, "2026-03-03T10:00:00Z")),
        vec![p("big", 4000, 10_000)]
    );
    let second = buy(&mut shop, "t2", 5000, "2026-03-04T10:00:00Z");
    assert_eq!(progressed(&second), vec![p("big", 9000, 10_000)]);
    assert!(
        unlocked(&second).is_empty(),
        "9000 net of the refund is short of 10000"
    );
    assert_eq!(
        unlocked(&buy(&mut shop, "t3", 1000, "2026-03-05T10:00:00Z")),
        vec!["big"]
    );
}

#[test]
fn a_refund_never_takes_a_badge_or_its_reward_back() {
    let mut shop = shop(vec![achievement(
        "big",
        json!({"spend": {"amount_minor": 5000}}),
        json!({"reward_points": 250}),
    )]);
    assert_eq!(
        unlocked(&buy(&mut shop, "t1", 5000, "2026-03-02T10:00:00Z")),
        vec!["big"]
    );
    let events = refund(&mut shop, "r1", "t1", 5000, "2026-03-03T10:00:00Z");
    assert!(
        progressed(&events).is_empty(),
        "an unlocked achievement no longer moves"
    );
    let [MemberEvent::PurchaseRefunded {
        points_clawed_back, ..
    }] = events.as_slice()
    else {
        panic!("one refund event: {events:?}");
    };
    assert_eq!(
        *points_clawed_back, 50,
        "only the purchase's own points are clawed back"
    );
    assert_eq!(shop.member.points.balance, 250, "the reward stays");
    assert!(
        shop.member.achievements["big"].unlocked_at.is_some(),
        "the badge stays"
    );
}

#[test]
fn a_fully_refunded_purchase_no_longer_counts_as_a_purchase_or_a_visit() {
    let mut shop = shop(vec![
        achievement("three", json!({"purchases": {"count": 3}}), json!({})),
        achievement("three-stores", json!({"locations": {"count": 3}}), json!({})),
    ]);
    buy(&mut shop, "t1", 1000, "2026-03-02T10:00:00Z");
    buy_at(&mut shop, "t2", 1000, "2026-03-03T10:00:00Z", "store-2");
    let events = refund(&mut shop, "r1", "t2", 1000, "2026-03-03T12:00:00Z");
    assert_eq!(
        progressed(&events),
        vec![p("three", 1, 3), p("three-stores", 1, 3)]
    );
    // A partial refund leaves the visit counted.
    buy_at(&mut shop, "t3", 1000, "2026-03-04T10:00:00Z", "store-2");
    let events = refund(&mut shop, "r2", "t3", 500, "2026-03-04T12:00:00Z");
    assert!(
        progressed(&events).is_empty(),
        "a partial refund moves neither: {events:?}"
    );
}

#[test]
fn distinct_locations_count_once_each() {
    let mut shop = shop(vec![achievement(
        "explorer",
        json!({"locations": {"count": 2}}),
        json!({}),
    )]);
    buy(&mut shop, "t1", 1000, "2026-03-02T10:00:00Z");
    let again = buy(&mut shop, "t2", 1000, "2026-03-03T10:00:00Z");
    assert!(
        progressed(&again).is_empty(),
        "the same store again moves nothing"
    );
    let other = buy_at(&mut shop, "t3", 1000, "2026-03-04T10:00:00Z", "store-2");
    assert_eq!(unlocked(&other), vec!["explorer"]);
}

#[test]
fn a_weekly_streak_counts_consecutive_weeks_and_a_gap_restarts_it() {
    let mut shop = shop(vec![achievement(
        "streak",
        json!({"weekly_streak": {"weeks": 3}}),
        json!({}),
    )]);
    // Weeks of Mondays 2026-03-02, 03-09; none in 03-16; then 03-23, 03-30, 04-06.
    buy(&mut shop, "t1", 1000, "2026-03-02T10:00:00Z");
    let second = buy(&mut shop, "t2", 1000, "2026-03-12T10:00:00Z");
    assert_eq!(progressed(&second), vec![p("streak", 2, 3)]);
    let same_week = buy(&mut shop, "t3", 1000, "2026-03-13T10:00:00Z");
    assert!(
        progressed(&same_week).is_empty(),
        "a second purchase in the week adds nothing"
    );
    let after_gap = buy(&mut shop, "t4", 1000, "2026-03-23T10:00:00Z");
    assert_eq!(
        progressed(&after_gap),
        vec![p("streak", 1, 3)],
        "the gap week restarted it"
    );
    buy(&mut shop, "t5", 1000, "2026-03-30T10:00:00Z");
    assert_eq!(
        unlocked(&buy(&mut shop, "t6", 1000, "2026-04-06T10:00:00Z")),
        vec!["streak"]
    );
}

#[test]
fn weeks_are_local_iso_weeks_of_the_programs_time_zone() {
    let mut shop = shop(vec![achievement(
        "streak",
        json!({"weekly_streak": {"weeks": 2}}),
        json!({}),
    )])
    .in_zone("Europe/Paris");
    // Sunday 23:30 UTC is already Monday in Paris: two local weeks, not one.
    buy(&mut shop, "t1", 1000, "2026-03-08T12:00:00Z");
    assert_eq!(
        unlocked(&buy(&mut shop, "t2", 1000, "2026-03-08T23:30:00Z")),
        vec!["streak"]
    );
}

#[test]
fn only_purchases_within_the_window_count() {
    let mut shop = shop(vec![achievement(
        "burst",
        json!({"purchases": {"count": 3}}),
        json!({"window_days": 7}),
    )]);
    buy(&mut shop, "t1", 1000, "2026-03-01T10:00:00Z");
    buy(&mut shop, "t2", 1000, "2026-03-05T10:00:00Z");
    // 7 × 24 h before 03-08T10:00 is 03-01T10:00, excluded: t1 has left the window.
    let third = buy(&mut shop, "t3", 1000, "2026-03-08T10:00:00Z");
    assert!(
        progressed(&third).is_empty(),
        "t1 left the window as t3 came in: still 2 of 3"
    );
    assert_eq!(shop.member.achievements["burst"].progress, 2);
    assert!(unlocked(&third).is_empty());
    assert_eq!(
        unlocked(&buy(&mut shop, "t4", 1000, "2026-03-09T10:00:00Z")),
        vec!["burst"]
    );
}

#[test]
fn rewards_are_neither_capped_nor_qualifying_for_tiers() {
    let mut shop = shop(vec![achievement(
        "first",
        json!({"purchases": {"count": 1}}),
        json!({"reward_points": 5000}),
    )])
    .cap(5, "day");
    let events = buy(&mut shop, "t1", 1000, "2026-03-02T10:00:00Z");
    let MemberEvent::PurchaseRecorded { points_earned, .. } = &events[0] else {
        panic!()
    };
    assert_eq!(*points_earned, 5, "the purchase is capped");
    assert_eq!(unlocked(&events), vec!["first"]);
    assert_eq!(shop.member.points.balance, 5005, "the reward is not");
    let next = buy(&mut shop, "t2", 100, "2026-03-03T10:00:00Z");
    let MemberEvent::PurchaseRecorded {
        qualifying_points,
        tier,
        ..
    } = &next[0]
    else {
        panic!()
    };
    assert_eq!(
        *qualifying_points, 6,
        "5000 reward points would have made the member Platinum"
    );
    assert_eq!(tier, "Bronze");
}

#[test]
fn two_achievements_unlocked_by_one_purchase_credit_in_program_order() {
    let mut shop = shop(vec![
        achievement(
            "a",
            json!({"purchases": {"count": 1}}),
            json!({"reward_points": 10}),
        ),
        achievement(
            "b",
            json!({"spend": {"amount_minor": 500}}),
            json!({"reward_points": 20}),
        ),
    ]);
    let events = buy(&mut shop, "t1", 1000, "2026-03-02T10:00:00Z");
    let balances: Vec<i64> = events
        .iter()
        .filter_map(|e| match e {
            MemberEvent::AchievementUnlocked { balance_after, .. } => Some(*balance_after),
            _ => None,
        })
        .collect();
    assert_eq!(unlocked(&events), vec!["a", "b"]);
    assert_eq!(balances, vec![20, 40]);
}

#[test]
fn a_quote_never_includes_achievement_rewards() {
    let mut shop = shop(vec![achievement(
        "first",
        json!({"purchases": {"count": 1}}),
        json!({}),
    )]);
    assert_eq!(shop.quote(1000, "2026-03-02T10:00:00Z").total, 10);
    assert_eq!(shop.buy("t1", 1000, "2026-03-02T10:00:00Z").total, 10);
}

// ---------------------------------------------------------------------------------------------
// Validation: a broken achievement names its field
// ---------------------------------------------------------------------------------------------

fn invalid_field(achievements: Value) -> String {
    let mut config = serde_json::to_value(common::config()).unwrap();
    config["achievements"] = achievements;
    let config: domain::program::ProgramConfig = serde_json::from_value(config).unwrap();
    match config.validate(&BTreeSet::new()) {
        Err(ProgramError::InvalidConfig { field, .. }) => field,
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn invalid_achievements_are_refused_naming_the_field() {
    let base = |criteria: Value, extra: Value| {
        let mut a = json!({"achievement_id": "a", "name": "A", "criteria": criteria});
        for (k, v) in extra.as_object().unwrap() {
            a[k] = v.clone();
        }
        a
    };
    let purchases = json!({"purchases": {"count": 3}});
    let cases = [
        (
            json!([base(json!({"purchases": {"count": 0}}), json!({}))]),
            "achievements[0].criteria.purchases.count",
        ),
        (
            json!([base(json!({"spend": {"amount_minor": -5}}), json!({}))]),
            "achievements[0].criteria.spend.amount_minor",
        ),
        (
            json!([base(json!({"locations": {"count": 0}}), json!({}))]),
            "achievements[0].criteria.locations.count",
        ),
        (
            json!([base(json!({"weekly_streak": {"weeks": 0}}), json!({}))]),
            "achievements[0].criteria.weekly_streak.weeks",
        ),
        (
            json!([base(purchases.clone(), json!({"achievement_id": ""}))]),
            "achievements[0].achievement_id",
        ),
        (
            json!([base(purchases.clone(), json!({"name": " "}))]),
            "achievements[0].name",
        ),
        (
            json!([base(purchases.clone(), json!({"badge": ""}))]),
            "achievements[0].badge",
        ),
        (
            json!([base(purchases.clone(), json!({"window_days": 0}))]),
            "achievements[0].window_days",
        ),
        (
            json!([base(purchases.clone(), json!({"reward_points": -1}))]),
            "achievements[0].reward_points",
        ),
        (
            json!([base(
                json!({"weekly_streak": {"weeks": 4}}),
                json!({"window_days": 21})
            )]),
            "achievements[0].window_days",
        ),
        (
            json!([
                base(purchases.clone(), json!({})),
                base(purchases.clone(), json!({}))
            ]),
            "achievements[1].achievement_id",
        ),
    ];
    for (achievements, field) in cases {
        assert_eq!(invalid_field(achievements.clone()), field, "{achievements}");
    }
}

#[test]
fn the_program_json_of_spec_11_is_accepted() {
    let config: domain::program::ProgramConfig = serde_json::from_value(json!({
        "currency": "EUR",
        "achievements": [{
            "achievement_id": "ten-visits", "name": "Ten visits", "badge": "Regular",
            "criteria": { "purchases": { "count": 10 } }, "window_days": null, "reward_points": 100 }]
    }))
    .unwrap();
    config.validate(&BTreeSet::new()).unwrap();
    assert_eq!(config.achievements[0].badge(), "Regular");
}
