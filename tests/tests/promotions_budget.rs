//! A promotion budget under concurrency (SPEC §9 "Budget"): 32 terminals on two command-service
//! processes purchase at once against a promotion with a small budget. The points the promotion
//! awards add up to its budget exactly, never more, every purchase is recorded, and the draws
//! recorded in the log form one unbroken chain from the budget down to zero.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use futures::future::join_all;
use loyalty_client::{Client, Effect, Enrolment, Location, MemberRef, Program, Promotion, Purchase, Tier};
use loyalty_tests::{spawn_two_command_services, OrgKeys, TestDb, TestNats};
use uuid::Uuid;

const ORG: &str = "acme";
const PROMOTION: &str = "bonus-7";
const BONUS: i64 = 7;
const BUDGET: i64 = 1_000;
const TERMINALS: usize = 32;
/// Enough purchases to spend the budget (32 × 6 × 7 = 1,344 > 1,000) and then some.
const PURCHASES_PER_TERMINAL: usize = 6;
const AMOUNT_MINOR: i64 = 1_000;

/// One tier at 1×, earn rate 1, a bonus of 7 points per purchase with a budget of 1,000.
async fn set_up(admin: &Client) {
    let program = Program {
        earn_rate: Some(1),
        tiers: Some(vec![Tier {
            name: "Member".into(),
            threshold_points: 0,
            multiplier_bps: 10_000,
        }]),
        promotions: vec![Promotion {
            budget_points: Some(BUDGET),
            ..Promotion::new(
                PROMOTION,
                "7 bonus points while the budget lasts",
                Utc::now() - Duration::hours(1),
                Effect::Bonus { points: BONUS },
            )
        }],
        ..Program::new("EUR")
    };
    let location = Location {
        location_id: "store-1".into(),
        name: "Store 1".into(),
    };
    admin.configure_program(ORG, "program", &program).await.unwrap();
    admin.register_location(ORG, "location", &location).await.unwrap();
}

fn purchase(terminal: usize, n: usize) -> Purchase {
    Purchase {
        transaction_id: format!("T-{terminal}-{n}"),
        location_id: "store-1".into(),
        amount_minor: AMOUNT_MINOR,
        currency: "EUR".into(),
        occurred_at: Utc::now() - Duration::seconds(1),
        items: None,
    }
}

/// One terminal: its member's purchases one after the other; the promotion points of each
/// answer.
async fn terminal(pos: Client, terminal: usize, member: Uuid) -> Vec<i64> {
    let mut points = Vec::new();
    for n in 0..PURCHASES_PER_TERMINAL {
        let answer = pos
            .record_purchase(
                ORG,
                MemberRef::Id(member),
                &format!("buy-{terminal}-{n}"),
                &purchase(terminal, n),
            )
            .await
            .unwrap_or_else(|error| panic!("purchase {n} of terminal {terminal}: {error}"));
        assert_eq!(answer.events[0].event_type, "PurchaseRecorded");
        let breakdown = answer.breakdown.expect("a purchase answers its breakdown");
        let base = AMOUNT_MINOR / 100;
        assert_eq!(breakdown.tier_points, base);
        assert_eq!(breakdown.total, base + breakdown.promotion_points(PROMOTION));
        points.push(breakdown.promotion_points(PROMOTION));
    }
    points
}

#[tokio::test]
async fn thirty_two_terminals_on_two_processes_never_overspend_a_budget() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let (first, second) = spawn_two_command_services(&db, &nats).await;
    let keys = OrgKeys::create(&db, ORG).await;
    let admin = first.client(&keys.admin).typed().clone();
    set_up(&admin).await;

    let pos = [
        first.client(&keys.pos).typed().clone(),
        second.client(&keys.pos).typed().clone(),
    ];
    let mut members = Vec::new();
    for terminal in 0..TERMINALS {
        let enrolled = pos[terminal % 2]
            .enroll(ORG, &format!("enrol-{terminal}"), &Enrolment::default())
            .await
            .unwrap();
        members.push(enrolled.member_id);
    }

    // Every terminal at once, half of them on each process.
    let answered: Vec<Vec<i64>> = join_all(
        members
            .iter()
            .enumerate()
            .map(|(t, member)| terminal(pos[t % 2].clone(), t, *member)),
    )
    .await;
    let awarded: Vec<i64> = answered.into_iter().flatten().collect();
    assert_eq!(awarded.len(), TERMINALS * PURCHASES_PER_TERMINAL);
    assert_eq!(
        awarded.iter().sum::<i64>(),
        BUDGET,
        "the answers award the budget exactly"
    );
    // Every draw but the last is the whole bonus; the last gets what was left.
    let mut draws: Vec<i64> = awarded.iter().copied().filter(|&p| p > 0).collect();
    draws.sort_unstable();
    assert_eq!(draws.len() as i64, (BUDGET + BONUS - 1) / BONUS);
    assert!(draws[1..].iter().all(|&p| p == BONUS), "{draws:?}");
    assert_eq!(draws[0], BUDGET - BONUS * (draws.len() as i64 - 1));

    // The log says the same: every purchase once, the promotion's points summing to the budget,
    // and each draw recording what it left, one unbroken chain from the budget down to zero.
    let rows: Vec<(serde_json::Value,)> = sqlx::query_as(
        "SELECT payload FROM events WHERE aggregate_type = 'member' AND event_type = 'PurchaseRecorded'",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(rows.len(), TERMINALS * PURCHASES_PER_TERMINAL);
    let mut chain: BTreeMap<i64, i64> = BTreeMap::new();
    let mut logged = 0;
    for (payload,) in &rows {
        let breakdown = &payload["PurchaseRecorded"]["breakdown"];
        for applied in breakdown["promotions"].as_array().unwrap() {
            if applied["promotion_id"] == PROMOTION {
                let points = applied["points"].as_i64().unwrap();
                let left = applied["budget_left"].as_i64().unwrap();
                logged += points;
                assert!(
                    chain.insert(left + points, left).is_none(),
                    "two draws started from {}",
                    left + points
                );
            }
        }
    }
    assert_eq!(logged, BUDGET, "the log awards the budget exactly");
    let mut before = BUDGET;
    while let Some(&after) = chain.get(&before) {
        before = after;
    }
    assert_eq!(before, 0, "the draws chain from {BUDGET} down to 0: {chain:?}");
    let spent: i64 = sqlx::query_scalar(
        "SELECT spent FROM command_promotion_budgets WHERE org_id = $1 AND promotion_id = $2",
    )
    .bind(ORG)
    .bind(PROMOTION)
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(spent, BUDGET);

    // How often decisions met a changed budget (retried, not failed); informative only.
    for service in [&first, &second] {
        let metrics = reqwest::get(service.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for line in metrics.lines().filter(|l| l.starts_with("command_budget")) {
            eprintln!("{line}");
        }
    }

    second.stop().await.unwrap();
    first.stop().await.unwrap();
    nats.cleanup().await;
    db.cleanup().await;
}
