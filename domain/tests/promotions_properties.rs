//! Property tests of SPEC §9 through the `Member` aggregate: with random promotions (bonus,
//! multiplier, per-unit, line-scoped or not, stackable or not, budgeted or not), a random cap
//! and random baskets, the breakdown always adds up to the total the member is credited, the
//! cap is never passed, and a promoted purchase refunded in any number of parts claws back
//! exactly what it earned; over random histories of purchases (some late, some re-sent) and
//! refunds, the books balance, each local day stays under the cap, and the member (promotion
//! uses and earned totals included) is exactly what its events say.

mod common;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use common::promotions::*;
use common::STORE;
use domain::calendar::Period;
use domain::ledger::{postings, Account};
use domain::member::earn::{Breakdown, Line};
use domain::member::{Member, MemberCommand, MemberEvent, Refund};
use domain::money::cumulative_clawback;
use domain::program::Promotion;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::json;

const CATEGORIES: [&str; 3] = ["coffee", "bakery", "goods"];

/// One random promotion `p{i}`.
fn promotion(i: usize) -> impl Strategy<Value = Promotion> {
    (
        prop_oneof![
            (1_i64..500).prop_map(|points| json!({"bonus": {"points": points}})),
            (10_001_u32..=100_000).prop_map(|bps| json!({"multiplier": {"multiplier_bps": bps}})),
            (1_i64..50).prop_map(|points| json!({"per_unit": {"points": points}})),
        ],
        any::<bool>(),
        -2_i32..3,
        proptest::option::of(0..CATEGORIES.len()),
        proptest::option::of(1_i64..2_000),
    )
        .prop_map(move |(effect, stackable, priority, category, budget)| {
            let mut fields = json!({"promotion_id": format!("p{i}"), "effect": effect, "stackable": stackable,
                                    "priority": priority});
            if let Some(c) = category {
                fields["conditions"] = json!({"categories": [CATEGORIES[c]]});
            }
            if let Some(budget) = budget {
                fields["budget_points"] = json!(budget * 10);
            }
            promo(fields)
        })
}

fn promotions() -> impl Strategy<Value = Vec<Promotion>> {
    (0_usize..6).prop_flat_map(|n| (0..n).map(promotion).collect::<Vec<_>>())
}

/// A basket of 1 to 5 lines, or none.
fn basket() -> impl Strategy<Value = Option<Vec<(usize, u32, i64)>>> {
    proptest::option::of(prop::collection::vec(
        (0..CATEGORIES.len(), 1_u32..6, 0_i64..50_000),
        1..6,
    ))
}

fn lines(basket: &[(usize, u32, i64)]) -> Vec<Line> {
    basket
        .iter()
        .enumerate()
        .map(|(i, (c, quantity, amount))| line(&format!("SKU-{i}"), CATEGORIES[*c], *quantity, *amount))
        .collect()
}

/// A shop with `promotions`, budgets left for the budgeted ones, and maybe a daily cap.
fn shop(promotions: Vec<Promotion>, budget_left: &[i64], cap: Option<i64>) -> Shop {
    let budgeted: Vec<String> = promotions
        .iter()
        .filter(|p| p.budget_points.is_some())
        .map(|p| p.promotion_id.clone())
        .collect();
    let mut shop = Shop::new(promotions);
    for (id, left) in budgeted.iter().zip(budget_left.iter().cycle()) {
        shop = shop.budget(id, *left);
    }
    match cap {
        Some(points) => shop.cap(points, "day"),
        None => shop,
    }
}

fn check_sums(b: &Breakdown) -> Result<(), TestCaseError> {
    let promoted: i64 = b.promotions.iter().map(|p| p.points).sum();
    prop_assert_eq!(b.tier_points + promoted, b.total, "{:?}", b);
    prop_assert!(
        b.tier_points >= 0 && b.cap_cut >= 0 && b.promotions.iter().all(|p| p.points >= 0),
        "{:?}",
        b
    );
    for p in &b.promotions {
        if let Some(left) = p.budget_left {
            prop_assert!(left >= 0, "{:?}", b);
        }
    }
    Ok(())
}

/// Splits `total` into positive parts at the cut points.
fn split(total: i64, cuts: &[Index]) -> Vec<i64> {
    let mut points: Vec<i64> = cuts.iter().map(|c| c.index(total as usize) as i64).collect();
    points.extend([0, total]);
    points.sort_unstable();
    points.dedup();
    points.windows(2).map(|w| w[1] - w[0]).collect()
}

#[derive(Debug, Clone)]
enum Step {
    Advance {
        hours: i64,
    },
    /// A purchase printed `late_minutes` ago, or a re-sent earlier receipt.
    Buy {
        amount: i64,
        basket: Option<Vec<(usize, u32, i64)>>,
        late_minutes: i64,
        resend: Option<Index>,
    },
    /// A refund of `permille`/1000 of what is left of a purchase.
    Refund {
        purchase: Index,
        permille: i64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (0_i64..60).prop_map(|hours| Step::Advance { hours }),
        5 => (1_i64..60_000, basket(), prop_oneof![3 => Just(0_i64), 1 => 0_i64..3_000], proptest::option::weighted(0.15, any::<Index>()))
            .prop_map(|(amount, basket, late_minutes, resend)| Step::Buy { amount, basket, late_minutes, resend }),
        2 => (any::<Index>(), 1_i64..=1000).prop_map(|(purchase, permille)| Step::Refund { purchase, permille }),
    ]
}

/// The receipts recorded so far: transaction id → (amount, occurred_at, lines).
type Receipts = BTreeMap<String, (i64, DateTime<Utc>, Option<Vec<Line>>)>;

/// Checks one appended event: it reads back as written and its journal entry balances.
fn check_event(event: &MemberEvent, member_account: &mut i64) -> Result<(), TestCaseError> {
    let json = serde_json::to_string(event).unwrap();
    prop_assert_eq!(&serde_json::from_str::<MemberEvent>(&json).unwrap(), event);
    let entry = postings(event);
    prop_assert_eq!(
        entry.iter().map(|p| p.delta).sum::<i64>(),
        0,
        "unbalanced {:?}",
        event
    );
    *member_account += entry
        .iter()
        .filter(|p| p.account == Account::MemberPoints)
        .map(|p| p.delta)
        .sum::<i64>();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn books_balance_caps_hold_and_the_member_is_its_events_under_promotions(
        promotions in promotions(),
        budget_left in prop::collection::vec(0_i64..3_000, 1..4),
        cap in proptest::option::of(1_i64..3_000),
        steps in prop::collection::vec(step(), 1..30),
    ) {
        let mut shop = shop(promotions, &budget_left, cap).in_zone("Europe/Paris");
        let zone = shop.program.config.time_zone;
        let mut log: Vec<MemberEvent> = Vec::new();
        let mut member_account = 0;
        let mut receipts = Receipts::new();
        let mut per_day: BTreeMap<chrono::NaiveDate, i64> = BTreeMap::new();
        let mut now = utc("2026-03-28T20:00:00Z");
        for (i, step) in steps.into_iter().enumerate() {
            let command = match step {
                Step::Advance { hours } => {
                    now += Duration::hours(hours);
                    continue;
                }
                Step::Buy { resend: Some(which), .. } if !receipts.is_empty() => {
                    let (txn, (amount, at, items)) = receipts.iter().nth(which.index(receipts.len())).unwrap();
                    let mut body = shop.purchase_body(txn, *amount, &at.to_rfc3339(), STORE, items.clone());
                    body.recorded_at = now;
                    MemberCommand::RecordPurchase(body)
                }
                Step::Buy { amount, basket, late_minutes, .. } => {
                    let items = basket.map(|b| lines(&b));
                    let amount = items.as_ref().map_or(amount, |l| l.iter().map(|l| l.amount_minor).sum());
                    if amount == 0 {
                        continue;
                    }
                    let at = now - Duration::minutes(late_minutes);
                    let mut body = shop.purchase_body(&format!("t{i}"), amount, &at.to_rfc3339(), STORE, items);
                    body.recorded_at = now;
                    MemberCommand::RecordPurchase(body)
                }
                Step::Refund { purchase, permille } => {
                    if shop.member.purchases.is_empty() {
                        continue;
                    }
                    let (txn, p) = shop.member.purchases.iter().nth(purchase.index(shop.member.purchases.len())).unwrap();
                    let part = (p.amount_minor - p.refunded_minor) * permille / 1000;
                    if part == 0 {
                        continue;
                    }
                    MemberCommand::RefundPurchase(Refund {
                        refund_id: format!("r{i}"),
                        transaction_id: txn.clone(),
                        amount_minor: part,
                        program: shop.program.clone(),
                        at: now,
                    })
                }
            };
            let events = shop.record(command).unwrap();
            for event in &events {
                check_event(event, &mut member_account)?;
                if let MemberEvent::PurchaseRecorded { transaction_id, amount_minor, occurred_at, items, points_earned, breakdown, balance_after, .. } = event {
                    check_sums(breakdown)?;
                    prop_assert_eq!(*points_earned, breakdown.total);
                    prop_assert_eq!(*balance_after, member_account);
                    receipts.insert(transaction_id.clone(), (*amount_minor, *occurred_at, items.clone()));
                    *per_day.entry(zone.period_start(Period::Day, *occurred_at)).or_default() += breakdown.total;
                }
            }
            log.extend(events);
            prop_assert_eq!(member_account, shop.member.points.balance);
        }
        if let Some(cap) = cap {
            prop_assert!(per_day.values().all(|total| *total <= cap), "{:?} over the cap {}", per_day, cap);
        }
        // The member is exactly what its events say (after the same enrolment), and reads back
        // as written.
        let mut rebuilt = Shop::new(vec![]).member;
        for event in &log {
            rebuilt.evolve(event.clone());
        }
        prop_assert_eq!(&rebuilt, &shop.member);
        let json = serde_json::to_value(&shop.member).unwrap();
        prop_assert_eq!(&serde_json::from_value::<Member>(json).unwrap(), &shop.member);
    }

    /// Every breakdown adds up to its total, which is what the event credits; a day's totals
    /// never pass the cap; a budget never goes below zero.
    #[test]
    fn the_breakdown_always_sums_to_the_total_and_the_cap_holds(
        promotions in promotions(),
        budget_left in prop::collection::vec(0_i64..3_000, 1..4),
        cap in proptest::option::of(1_i64..3_000),
        purchases in prop::collection::vec((1_i64..100_000, basket(), 0_i64..20), 1..6),
    ) {
        let mut shop = shop(promotions, &budget_left, cap);
        let mut day_total = 0;
        for (i, (amount, basket, minutes)) in purchases.into_iter().enumerate() {
            let items = basket.map(|b| lines(&b));
            let amount = items.as_ref().map_or(amount, |l| l.iter().map(|l| l.amount_minor).sum());
            if amount == 0 {
                continue;
            }
            let at = format!("2026-03-03T10:{:02}:00Z", i as i64 * 10 + minutes % 10);
            let balance = shop.member.points.balance;
            let b = shop.buy_at(&format!("t{i}"), amount, &at, STORE, items);
            check_sums(&b)?;
            prop_assert_eq!(shop.member.points.balance, balance + b.total);
            day_total += b.total;
            if let Some(cap) = cap {
                prop_assert!(day_total <= cap, "{} > cap {}", day_total, cap);
            }
        }
    }

    /// Whatever the promotions and however a promoted purchase is refunded, each refund claws
    /// back the cumulative share of the purchase's total minus what earlier refunds took, and
    /// all of them add up to exactly that total.
    #[test]
    fn a_promoted_purchase_refunded_in_any_parts_claws_back_exactly_what_it_earned(
        promotions in promotions(),
        budget_left in prop::collection::vec(0_i64..3_000, 1..4),
        cap in proptest::option::of(1_i64..3_000),
        basket in basket(),
        amount in 1_i64..1_000_000,
        cuts in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        let mut shop = shop(promotions, &budget_left, cap);
        let items = basket.map(|b| lines(&b));
        let amount = items.as_ref().map_or(amount, |l| l.iter().map(|l| l.amount_minor).sum());
        prop_assume!(amount > 0);
        let earned = shop.buy_at("t1", amount, "2026-03-03T10:00:00Z", STORE, items).total;
        let (mut refunded, mut clawed) = (0, 0);
        for (i, part) in split(amount, &cuts).into_iter().enumerate() {
            let events = shop
                .record(MemberCommand::RefundPurchase(Refund {
                    refund_id: format!("r{i}"),
                    transaction_id: "t1".into(),
                    amount_minor: part,
                    program: shop.program.clone(),
                    at: utc("2026-03-04T10:00:00Z"),
                }))
                .unwrap();
            let [MemberEvent::PurchaseRefunded { points_clawed_back, purchase_points_earned, .. }] = events.as_slice() else {
                return Err(TestCaseError::fail(format!("unexpected events {events:?}")));
            };
            refunded += part;
            prop_assert_eq!(*purchase_points_earned, earned);
            let total = cumulative_clawback(earned, refunded, amount).unwrap();
            prop_assert_eq!(*points_clawed_back, total - clawed);
            clawed = total;
        }
        prop_assert_eq!(clawed, earned);
        prop_assert_eq!(shop.member.points.balance, 0);
    }
}
