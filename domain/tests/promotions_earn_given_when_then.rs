//! Given/when/then tests of SPEC §9 through the `Member` aggregate, continued: the earn cap,
//! line-scoped promotions, budgets, refunds and tier qualification of promoted purchases, the
//! basket's validation, re-sent receipts and the points quote.

mod common;

use common::promotions::*;
use common::STORE;
use domain::member::earn::{Breakdown, Line, PromotionPoints};
use domain::member::{Adjustment, MemberCommand, MemberError, MemberEvent, Refund};
use serde_json::json;

const AT: &str = "2026-03-03T10:00:00Z";

fn refund(shop: &Shop, refund_id: &str, txn: &str, amount_minor: i64, at: &str) -> MemberCommand {
    MemberCommand::RefundPurchase(Refund {
        refund_id: refund_id.into(),
        transaction_id: txn.into(),
        amount_minor,
        program: shop.program.clone(),
        at: utc(at),
    })
}

fn clawed_back(events: &[MemberEvent]) -> i64 {
    match events {
        [MemberEvent::PurchaseRefunded {
            points_clawed_back, ..
        }] => *points_clawed_back,
        other => panic!("not one refund: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The earn cap
// ---------------------------------------------------------------------------------------------

#[test]
fn the_cap_cuts_the_highest_promotion_ids_first_then_tier_points() {
    let mut shop = Shop::new(vec![
        promo(json!({"promotion_id": "a", "effect": {"bonus": {"points": 30}}, "stackable": true})),
        promo(json!({"promotion_id": "b", "effect": {"bonus": {"points": 20}}, "stackable": true})),
    ])
    .cap(120, "week");
    assert_eq!(
        shop.buy("t1", 5000, "2026-03-02T10:00:00Z").total,
        100,
        "50 + 30 + 20 this week"
    );
    // 10 + 30 + 20 = 60 with 20 of room: b is cut first (to 0), then a (to 10).
    let b = shop.buy("t2", 1000, "2026-03-04T10:00:00Z");
    assert_eq!(
        b,
        Breakdown {
            base: 10,
            tier_points: 10,
            promotions: vec![
                PromotionPoints {
                    promotion_id: "a".into(),
                    points: 10,
                    budget_left: None
                },
                PromotionPoints {
                    promotion_id: "b".into(),
                    points: 0,
                    budget_left: None
                },
            ],
            cap_cut: 40,
            total: 20,
        }
    );
    // The cut reaches the tier points once the promotions are at 0.
    let c = shop.buy("t3", 1000, "2026-03-05T10:00:00Z");
    assert_eq!(
        (applied(&c), c.tier_points, c.cap_cut, c.total),
        (vec![("a", 0), ("b", 0)], 0, 60, 0)
    );
    let next_week = shop.buy("t4", 1000, "2026-03-09T10:00:00Z");
    assert_eq!(
        (next_week.cap_cut, next_week.total),
        (0, 60),
        "a new local week has room again"
    );
}

#[test]
fn the_cap_counts_local_days_of_the_programs_time_zone() {
    let mut shop = Shop::new(vec![]).cap(15, "day").in_zone("Europe/Paris");
    assert_eq!(
        shop.buy("t1", 1500, "2026-03-03T22:30:00Z").total,
        15,
        "23:30 on the 3rd in Paris"
    );
    let same_day = shop.buy("t2", 1000, "2026-03-03T22:59:59Z");
    assert_eq!((same_day.cap_cut, same_day.total), (10, 0));
    let next_day = shop.buy("t3", 1000, "2026-03-03T23:00:00Z");
    assert_eq!((next_day.cap_cut, next_day.total), (0, 10), "midnight in Paris");
}

#[test]
fn clawbacks_do_not_free_room_under_the_cap() {
    let mut shop = Shop::new(vec![]).cap(15, "day");
    assert_eq!(shop.buy("t1", 1500, AT).total, 15);
    assert_eq!(
        clawed_back(
            &shop
                .record(refund(&shop, "r1", "t1", 1500, "2026-03-03T11:00:00Z"))
                .unwrap()
        ),
        15
    );
    let after = shop.buy("t2", 1000, "2026-03-03T12:00:00Z");
    assert_eq!((after.cap_cut, after.total), (10, 0));
}

#[test]
fn adjustments_are_not_capped_and_use_no_room() {
    let mut shop = Shop::new(vec![]).cap(15, "day");
    let events = shop
        .record(MemberCommand::AdjustPoints(Adjustment {
            adjustment_id: "goodwill".into(),
            delta: 100,
            reason: "goodwill".into(),
            expiry_days: None,
            at: utc(AT),
        }))
        .unwrap();
    assert!(matches!(
        events.as_slice(),
        [MemberEvent::PointsAdjusted { delta: 100, .. }]
    ));
    let after = shop.buy("t1", 1500, "2026-03-03T11:00:00Z");
    assert_eq!((after.cap_cut, after.total), (0, 15));
    assert_eq!(shop.member.points.balance, 115);
}

// ---------------------------------------------------------------------------------------------
// Basket lines
// ---------------------------------------------------------------------------------------------

#[test]
fn line_scoped_promotions_reward_only_their_lines() {
    let shop = Shop::new(vec![
        promo(
            json!({"promotion_id": "coffee-x3", "effect": {"multiplier": {"multiplier_bps": 30000}},
                     "stackable": true, "conditions": {"categories": ["coffee"]}}),
        ),
        promo(
            json!({"promotion_id": "cake-5", "effect": {"per_unit": {"points": 5}}, "stackable": true,
                     "conditions": {"skus": ["CAKE-1"]}}),
        ),
    ]);
    let basket = vec![
        line("COF-1", "coffee", 2, 450),
        line("CAKE-1", "bakery", 3, 1299),
        line("MUG", "goods", 1, 1551),
    ];
    let b = shop.clone().buy_at("t1", 3300, AT, STORE, Some(basket));
    // base 33; the coffee line's base 4 → +8; 3 cakes → +15.
    assert_eq!(applied(&b), [("coffee-x3", 8), ("cake-5", 15)]);
    assert_eq!((b.base, b.tier_points, b.total), (33, 33, 56));
    let mugs = shop
        .clone()
        .buy_at("t1", 3300, AT, STORE, Some(vec![line("MUG", "goods", 1, 3300)]));
    assert_eq!(applied(&mugs), []);
}

#[test]
fn a_line_scoped_multiplier_floors_each_line_then_adds() {
    let shop = Shop::new(vec![promo(
        json!({"effect": {"multiplier": {"multiplier_bps": 30000}},
        "conditions": {"categories": ["coffee"]}}),
    )]);
    // Two coffee lines of 4.50: base_line 4 + 4 = 8 (not floor(9.00) = 9), doubled on top: +16.
    let basket = vec![
        line("COF-1", "coffee", 1, 450),
        line("COF-2", "coffee", 1, 450),
        line("MUG", "goods", 1, 100),
    ];
    let b = shop.clone().buy_at("t1", 1000, AT, STORE, Some(basket));
    assert_eq!((applied(&b), b.base, b.total), (vec![("p", 16)], 10, 26));
}

#[test]
fn a_line_qualifies_by_its_sku_or_its_category() {
    let shop = Shop::new(vec![promo(json!({"effect": {"per_unit": {"points": 2}},
        "conditions": {"skus": ["TEA-1"], "categories": ["coffee"]}}))]);
    let basket = vec![
        line("TEA-1", "tea", 4, 400),
        line("COF-1", "coffee", 3, 300),
        line("MUG", "goods", 7, 300),
        Line {
            sku: None,
            category: None,
            quantity: 5,
            amount_minor: 0,
        },
    ];
    let b = shop.clone().buy_at("t1", 1000, AT, STORE, Some(basket));
    assert_eq!(applied(&b), [("p", 14)], "2 × (4 + 3) units");
}

#[test]
fn per_unit_points_without_lines_count_the_purchase_as_one_unit() {
    let shop = Shop::new(vec![promo(json!({"effect": {"per_unit": {"points": 5}}}))]);
    assert_eq!(applied(&shop.clone().buy("t1", 1000, AT)), [("p", 5)]);
    let basket = vec![line("A", "x", 2, 500), line("B", "x", 3, 500)];
    assert_eq!(
        applied(&shop.clone().buy_at("t1", 1000, AT, STORE, Some(basket))),
        [("p", 25)]
    );
}

// ---------------------------------------------------------------------------------------------
// Budgets
// ---------------------------------------------------------------------------------------------

#[test]
fn a_budget_gives_what_is_left_then_nothing_and_the_event_says_what_is_left() {
    let promotions = vec![promo(
        json!({"effect": {"bonus": {"points": 500}}, "budget_points": 1000}),
    )];
    let b = Shop::new(promotions.clone()).budget("p", 300).buy("t1", 100, AT);
    assert_eq!(
        b.promotions,
        [PromotionPoints {
            promotion_id: "p".into(),
            points: 300,
            budget_left: Some(0)
        }]
    );
    let b = Shop::new(promotions.clone()).budget("p", 800).buy("t1", 100, AT);
    assert_eq!(
        b.promotions,
        [PromotionPoints {
            promotion_id: "p".into(),
            points: 500,
            budget_left: Some(300)
        }]
    );
    assert_eq!(
        applied(&Shop::new(promotions.clone()).budget("p", 0).buy("t1", 100, AT)),
        []
    );
    // A budgeted promotion the command service read no budget for has none left.
    assert_eq!(applied(&Shop::new(promotions).buy("t1", 100, AT)), []);
}

#[test]
fn a_budget_draws_the_points_after_the_cap_cut() {
    let mut shop = Shop::new(vec![promo(
        json!({"effect": {"bonus": {"points": 50}}, "budget_points": 1000}),
    )])
    .budget("p", 100)
    .cap(30, "day");
    // 10 + 50 = 60 with 30 of room: the promotion keeps 20 and draws 20 from its budget.
    let b = shop.buy("t1", 1000, AT);
    assert_eq!(
        b.promotions,
        [PromotionPoints {
            promotion_id: "p".into(),
            points: 20,
            budget_left: Some(80)
        }]
    );
    assert_eq!((b.tier_points, b.cap_cut, b.total), (10, 30, 30));
}

// ---------------------------------------------------------------------------------------------
// Refunds and tier qualification of a promoted purchase
// ---------------------------------------------------------------------------------------------

#[test]
fn refunds_of_a_promoted_purchase_claw_back_its_whole_total_exactly() {
    let mut shop = Shop::new(vec![
        promo(json!({"promotion_id": "seven", "effect": {"bonus": {"points": 7}}, "stackable": true})),
        promo(json!({"promotion_id": "double", "effect": {"multiplier": {"multiplier_bps": 20000}}})),
    ]);
    // base 33, +7, +33 = 73.
    assert_eq!(shop.buy("t1", 3333, AT).total, 73);
    let mut parts = Vec::new();
    for (i, at) in [
        "2026-03-04T10:00:00Z",
        "2026-03-05T10:00:00Z",
        "2026-03-06T10:00:00Z",
    ]
    .iter()
    .enumerate()
    {
        parts.push(clawed_back(
            &shop
                .record(refund(&shop, &format!("r{i}"), "t1", 1111, at))
                .unwrap(),
        ));
    }
    // floor(73 × 1111 / 3333) = 24, floor(73 × 2222 / 3333) = 48, then the rest.
    assert_eq!(parts, [24, 24, 25]);
    assert_eq!(shop.member.points.balance, 0);
    assert_eq!(shop.member.purchases["t1"].clawed_back, 73);
}

#[test]
fn tier_qualification_counts_the_promotion_points() {
    let mut shop = Shop::new(vec![promo(json!({"effect": {"bonus": {"points": 300}}}))]);
    // 200 tier points alone stay Bronze; with the 300 of the promotion the purchase reaches 500.
    let events = shop
        .record(shop.purchase_at("t1", 20_000, AT, STORE, None))
        .unwrap();
    assert!(
        matches!(&events[..], [MemberEvent::PurchaseRecorded { points_earned: 500, qualifying_points: 500, .. },
            MemberEvent::TierUpgraded { to, qualifying_points: 500, .. }] if to == "Silver"),
        "{events:?}"
    );
    // A refund of half takes half of the total off the qualifying points.
    let events = shop
        .record(refund(&shop, "r1", "t1", 10_000, "2026-03-04T10:00:00Z"))
        .unwrap();
    assert!(
        matches!(
            &events[..],
            [MemberEvent::PurchaseRefunded {
                points_clawed_back: 250,
                qualifying_points: 250,
                ..
            }]
        ),
        "{events:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The basket's validation
// ---------------------------------------------------------------------------------------------

fn refused_items(amount_minor: i64, items: Vec<Line>) -> MemberError {
    let mut shop = Shop::new(vec![]);
    let before = shop.member.clone();
    let body = shop.purchase_body("t1", amount_minor, AT, STORE, Some(items));
    let quoted = shop.member.quote(&body).unwrap_err();
    let error = shop.record(MemberCommand::RecordPurchase(body)).unwrap_err();
    assert_eq!(quoted, error, "a quote refuses what the purchase refuses");
    assert_eq!((error.code(), error.field()), ("invalid_items", "items"));
    assert_eq!(shop.member, before, "a refused purchase changes nothing");
    error
}

#[test]
fn bad_basket_lines_are_refused_naming_items() {
    let ok = |sku: &str| line(sku, "x", 1, 100);
    let message = |error: MemberError| error.to_string();
    assert!(message(refused_items(100, vec![])).contains("at least one line"));
    assert!(message(refused_items(100, vec![line("A", "x", 0, 100)])).contains("[0].quantity"));
    assert!(message(refused_items(100, vec![ok("A"), line("B", "x", 1, -1)])).contains("[1].amount_minor"));
    assert!(message(refused_items(100, vec![line("", "x", 1, 100)])).contains("[0].sku"));
    assert!(message(refused_items(100, vec![line("A", &"c".repeat(129), 1, 100)])).contains("[0].category"));
    assert!(message(refused_items(300, vec![ok("A"), ok("B")])).contains("add up to 200"));
    assert!(message(refused_items(
        501 * 100,
        (0..501).map(|i| ok(&i.to_string())).collect()
    ))
    .contains("at most 500"));
}

#[test]
fn a_basket_of_500_lines_with_128_character_names_is_accepted() {
    let mut shop = Shop::new(vec![]);
    let name = "é".repeat(128);
    let items: Vec<Line> = (0..500).map(|_| line(&name, &name, 1, 10)).collect();
    assert_eq!(shop.buy_at("t1", 5000, AT, STORE, Some(items.clone())).total, 50);
    assert!(matches!(&shop.member.purchases["t1"].items, Some(lines) if *lines == items));
}

// ---------------------------------------------------------------------------------------------
// Re-sent receipts and the quote
// ---------------------------------------------------------------------------------------------

#[test]
fn a_re_sent_receipt_is_the_same_purchase_only_with_the_same_lines() {
    let mut shop = Shop::new(vec![promo(json!({"conditions": {"categories": ["coffee"]}}))]);
    let basket = vec![line("COF-1", "coffee", 1, 450), line("MUG", "goods", 1, 550)];
    shop.buy_at("t1", 1000, AT, STORE, Some(basket.clone()));
    let balance = shop.member.points.balance;
    assert_eq!(
        shop.record(shop.purchase_at("t1", 1000, AT, STORE, Some(basket)))
            .unwrap(),
        []
    );
    let other = vec![line("COF-1", "coffee", 2, 450), line("MUG", "goods", 1, 550)];
    for items in [Some(other), None] {
        assert_eq!(
            shop.record(shop.purchase_at("t1", 1000, AT, STORE, items)),
            Err(MemberError::TransactionConflict("t1".into()))
        );
    }
    assert_eq!(shop.member.points.balance, balance);
}

#[test]
fn a_quote_records_nothing_and_equals_what_the_purchase_then_earns() {
    let mut shop = Shop::new(vec![
        promo(
            json!({"promotion_id": "once", "effect": {"bonus": {"points": 40}}, "stackable": true,
                     "limit": {"count": 1, "period": "day"}}),
        ),
        promo(
            json!({"promotion_id": "coffee", "effect": {"per_unit": {"points": 3}}, "stackable": true,
                     "conditions": {"categories": ["coffee"]}}),
        ),
    ])
    .cap(100, "day");
    let before = shop.member.clone();
    let quoted = shop.quote_at(2000, AT, STORE, Some(vec![line("COF-1", "coffee", 4, 2000)]));
    assert_eq!(shop.member, before, "a quote records nothing");
    assert_eq!(applied(&quoted), [("once", 40), ("coffee", 12)]);
    let earned = shop.buy_at(
        "t1",
        2000,
        AT,
        STORE,
        Some(vec![line("COF-1", "coffee", 4, 2000)]),
    );
    assert_eq!(earned, quoted);
    // The next quote sees the purchase: the daily use is gone and the cap has 28 points left.
    let next = shop.quote(5000, "2026-03-03T11:00:00Z");
    assert_eq!((applied(&next), next.cap_cut, next.total), (vec![], 22, 28));
    assert_eq!(shop.buy("t2", 5000, "2026-03-03T11:00:00Z"), next);
}
