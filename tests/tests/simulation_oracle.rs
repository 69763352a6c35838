//! The simulation's oracle (issue 12): a random POS workload of 10,000 commands through the
//! real command API (16 terminals at once; promotions with schedules, a budget, per-member
//! limits, line scope and first-purchase conditions; an earn cap; achievements; refunds,
//! redemptions, adjustments, both system jobs and program changes mid-run), then:
//!
//! - simulating the programs really in force over the whole history reproduces every awarded
//!   point, member by member and in total, checked against the event store itself;
//! - a draft with one extra promotion reports exactly the points that promotion adds, checked
//!   against an independent count of the purchases it qualifies for;
//! - a simulation writes nothing to the event store.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use common::simulation::{self, Request};
use domain::simulation::Draft;
use domain::ProgramConfig;
use futures::StreamExt as _;
use loyalty_tests::{spawn_command_service, OrgKeys, TestDb, TestNats};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

const ORG: &str = "oracle";
const COMMANDS: usize = 10_000;
const MEMBERS: usize = 150;
const TERMINALS: usize = 16;
const LOCATIONS: [&str; 3] = ["store-a", "store-b", "store-c"];

/// The program at step `step` of its changes (0, 1, 2): what changes between them is the kind
/// of edit a marketer makes mid-quarter.
fn program(step: u32) -> Value {
    let mut promotions = vec![
        json!({"promotion_id": "double-weekend", "name": "Double weekends", "starts_at": "2020-01-01T00:00:00Z",
               "schedule": {"days": ["sat", "sun"], "from": "00:00", "to": "23:59"},
               "effect": {"multiplier": {"multiplier_bps": 20000}}, "priority": 1}),
        json!({"promotion_id": "welcome", "name": "Welcome", "starts_at": "2020-01-01T00:00:00Z",
               "conditions": {"first_purchase": true}, "effect": {"bonus": {"points": 25}}, "stackable": true}),
        json!({"promotion_id": "coffee-units", "name": "Coffee per cup", "starts_at": "2020-01-01T00:00:00Z",
               "conditions": {"categories": ["coffee"]}, "effect": {"per_unit": {"points": 3}},
               "stackable": true, "limit": {"count": 2, "period": "day"}}),
        json!({"promotion_id": "budgeted", "name": "Budgeted bonus", "starts_at": "2020-01-01T00:00:00Z",
               "conditions": {"min_amount_minor": 1500}, "effect": {"bonus": {"points": 40}},
               "stackable": true, "budget_points": 6000}),
    ];
    if step >= 1 {
        promotions.push(json!({"promotion_id": "store-c-triple", "name": "Triple at C",
            "starts_at": "2020-01-01T00:00:00Z", "conditions": {"location_ids": ["store-c"]},
            "effect": {"multiplier": {"multiplier_bps": 30000}}}));
    }
    json!({
        "currency": "EUR", "earn_rate": 1, "expiry_days": 30, "time_zone": "Europe/Paris",
        "rewards": [{"reward_id": "coffee", "name": "Coffee", "points_cost": 30}],
        "earn_cap": {"points": if step >= 2 { 150 } else { 250 }, "period": "day"},
        "promotions": promotions,
        "achievements": [
            {"achievement_id": "five", "name": "Five visits", "criteria": {"purchases": {"count": 5}},
             "reward_points": 20},
            {"achievement_id": "explorer", "name": "Explorer", "criteria": {"locations": {"count": 3}},
             "window_days": 30, "reward_points": 35},
            {"achievement_id": "spender", "name": "Spender", "criteria": {"spend": {"amount_minor": 20000}},
             "reward_points": 50}]
    })
}

/// One random command of a terminal: its path and body.
fn random_command(
    rng: &mut StdRng,
    members: &[Uuid],
    purchases: &[(Uuid, String, i64)],
    n: usize,
) -> (String, Value) {
    let member = members[rng.random_range(0..members.len())];
    let base = format!("/v1/orgs/{ORG}/members/{member}");
    match rng.random_range(0..100) {
        0..=74 => {
            let amount: i64 = rng.random_range(100..4_000);
            let days_ago = rng.random_range(0..50);
            let occurred_at =
                Utc::now() - Duration::days(days_ago) - Duration::minutes(rng.random_range(0..1440));
            let mut body = json!({"transaction_id": format!("t-{n}"), "location_id": LOCATIONS[rng.random_range(0..3)],
                                  "amount_minor": amount, "currency": "EUR", "occurred_at": occurred_at});
            if rng.random_bool(0.4) {
                let coffee = amount / 3;
                body["items"] = json!([
                    {"sku": "COF", "category": "coffee", "quantity": rng.random_range(1..4), "amount_minor": coffee},
                    {"sku": "CAKE", "category": "food", "quantity": 1, "amount_minor": amount - coffee}]);
            }
            (format!("{base}/purchases"), body)
        }
        75..=86 if !purchases.is_empty() => {
            let (owner, txn, amount) = &purchases[rng.random_range(0..purchases.len())];
            (
                format!("/v1/orgs/{ORG}/members/{owner}/refunds"),
                json!({"refund_id": format!("r-{n}"), "transaction_id": txn,
                       "amount_minor": rng.random_range(1..=(*amount / 2).max(1))}),
            )
        }
        87..=94 => (
            format!("{base}/redemptions"),
            json!({"redemption_id": format!("d-{n}"), "reward_id": "coffee"}),
        ),
        _ => (
            format!("{base}/adjustments#admin"),
            json!({"adjustment_id": format!("a-{n}"), "delta": rng.random_range(-20..60), "reason": "goodwill"}),
        ),
    }
}

async fn event_count(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(db.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn simulating_the_programs_in_force_reproduces_every_point_and_a_draft_adds_exactly_its_promotion() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let service = spawn_command_service(&db, &nats).await;
    let keys = OrgKeys::create(&db, ORG).await;
    let admin = service.client(&keys.admin);
    let pos = service.client(&keys.pos);
    let send = |client: &loyalty_tests::ApiClient, method: Method, path: String, body: Value| {
        let client = client.clone();
        async move {
            let key = Uuid::new_v4().to_string();
            client.send(method, &path, Some(&key), Some(&body)).await
        }
    };
    let started = Utc::now() - Duration::seconds(1);
    for location in LOCATIONS {
        let answer = send(
            &admin,
            Method::POST,
            format!("/v1/orgs/{ORG}/locations"),
            json!({"location_id": location, "name": location}),
        )
        .await;
        assert!(answer.status < 300, "{}", answer.text);
    }
    let answer = send(&admin, Method::PUT, format!("/v1/orgs/{ORG}/program"), program(0)).await;
    assert!(answer.status < 300, "{}", answer.text);

    let mut members = Vec::new();
    for i in 0..MEMBERS {
        let answer = send(
            &pos,
            Method::POST,
            format!("/v1/orgs/{ORG}/members"),
            json!({"external_id": format!("card-{i}")}),
        )
        .await;
        assert!(answer.status < 300, "{}", answer.text);
        members.push(
            answer.body["member_id"]
                .as_str()
                .unwrap()
                .parse::<Uuid>()
                .unwrap(),
        );
    }

    let mut rng = StdRng::seed_from_u64(20_261_202);
    let mut purchases: Vec<(Uuid, String, i64)> = Vec::new();
    let mut outcomes: BTreeMap<u16, usize> = BTreeMap::new();
    let rounds = 4;
    let per_round = (COMMANDS - MEMBERS) / rounds;
    for round in 0..rounds {
        if round > 0 {
            // The marketer edits the program; the system jobs run.
            let answer = send(
                &admin,
                Method::PUT,
                format!("/v1/orgs/{ORG}/program"),
                program(round.min(2) as u32),
            )
            .await;
            assert!(answer.status < 300, "{}", answer.text);
            for job in ["reevaluate-tiers", "expire-points"] {
                let answer = send(
                    &admin,
                    Method::POST,
                    format!("/v1/orgs/{ORG}/jobs/{job}"),
                    json!({"as_of": Utc::now()}),
                )
                .await;
                assert!(answer.status < 300, "{job}: {}", answer.text);
            }
        }
        let commands: Vec<(String, Value)> = (0..per_round)
            .map(|i| random_command(&mut rng, &members, &purchases, round * per_round + i))
            .collect();
        let answers: Vec<(String, Value, u16)> = futures::stream::iter(commands)
            .map(|(path, body)| {
                // Adjustments are an admin's; everything else a till's.
                let (client, path) = match path.strip_suffix("#admin") {
                    Some(path) => (admin.clone(), path.to_owned()),
                    None => (pos.clone(), path),
                };
                async move {
                    let answer = client
                        .send(
                            Method::POST,
                            &path,
                            Some(&Uuid::new_v4().to_string()),
                            Some(&body),
                        )
                        .await;
                    (path, body, answer.status)
                }
            })
            .buffer_unordered(TERMINALS)
            .collect()
            .await;
        for (path, body, status) in answers {
            *outcomes.entry(status).or_default() += 1;
            assert!(status < 500, "{path} answered {status}");
            if status < 300 && path.ends_with("/purchases") {
                let member = path.split('/').nth(5).unwrap().parse().unwrap();
                purchases.push((
                    member,
                    body["transaction_id"].as_str().unwrap().to_owned(),
                    body["amount_minor"].as_i64().unwrap(),
                ));
            }
        }
    }
    println!("outcomes by status: {outcomes:?}");
    assert!(
        purchases.len() > 6_000,
        "most purchases were recorded: {}",
        purchases.len()
    );
    let events_before = event_count(&db).await;

    // 1. The programs in force, over the whole history.
    let in_force = Request {
        org_id: ORG.into(),
        draft: Draft::InForce,
        from: started,
        to: Utc::now(),
    };
    let (report, simulator) = simulation::run(db.pool(), &in_force, |s| s.keep_member_points(), |_| ())
        .await
        .unwrap();
    let awarded: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT aggregate_id, count(*), sum((payload -> 'PurchaseRecorded' ->> 'points_earned')::bigint)::bigint \
         FROM events WHERE event_type = 'PurchaseRecorded' GROUP BY aggregate_id",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    let rewards: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum((payload -> 'AchievementUnlocked' ->> 'reward_points')::bigint), 0)::bigint \
         FROM events WHERE event_type = 'AchievementUnlocked'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    let per_member = simulator.member_points().unwrap();
    let mut total = 0;
    for (aggregate_id, _, points) in &awarded {
        let member: Uuid = aggregate_id.split('/').nth(1).unwrap().parse().unwrap();
        assert_eq!(
            per_member.get(&member),
            Some(&(*points, *points)),
            "member {member}: (actual, simulated)"
        );
        total += points;
    }
    assert_eq!(report.purchases, purchases.len() as u64);
    assert_eq!((report.actual_points, report.draft_points), (total, total));
    assert_eq!(report.purchases_changed, 0);
    assert_eq!(report.commands_refused, 0);
    assert_eq!(
        (report.actual_reward_points, report.draft_reward_points),
        (rewards, rewards)
    );
    assert!(rewards > 0, "achievements were unlocked");
    assert_eq!(report.liability_delta, 0);
    assert!(report.tier_changes.is_empty(), "{:?}", report.tier_changes);
    for p in &report.by_promotion {
        assert_eq!(p.actual_points, p.draft_points, "{}", p.key.promotion_id);
    }
    let budgeted = report
        .by_promotion
        .iter()
        .find(|p| p.key.promotion_id == "budgeted")
        .unwrap();
    assert_eq!(
        budgeted.actual_points, 6_000,
        "the budget was spent, and drawn identically"
    );

    // 2. A draft: the final program without its cap, plus one promotion.
    let mut draft: ProgramConfig = serde_json::from_value(program(2)).unwrap();
    draft.earn_cap = None;
    draft.promotions.push(serde_json::from_value(json!({"promotion_id": "oracle-bonus", "name": "Oracle",
        "starts_at": "2020-01-01T00:00:00Z", "conditions": {"min_amount_minor": 2000, "location_ids": ["store-b"]},
        "effect": {"bonus": {"points": 7}}, "stackable": true})).unwrap());
    let request = Request {
        org_id: ORG.into(),
        draft: Draft::Program(draft.into()),
        from: started,
        to: Utc::now(),
    };
    let (report, _) = simulation::run(db.pool(), &request, |s| s, |_| ()).await.unwrap();
    let qualifying: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'PurchaseRecorded' \
         AND (payload -> 'PurchaseRecorded' ->> 'amount_minor')::bigint >= 2000 \
         AND payload -> 'PurchaseRecorded' ->> 'location_id' = 'store-b'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    let bonus = report
        .by_promotion
        .iter()
        .find(|p| p.key.promotion_id == "oracle-bonus")
        .unwrap();
    assert!(qualifying > 100);
    assert_eq!((bonus.actual_points, bonus.draft_points), (0, 7 * qualifying));
    assert_eq!(report.purchases, purchases.len() as u64);

    assert_eq!(
        event_count(&db).await,
        events_before,
        "a simulation appends nothing"
    );
    service.stop().await.unwrap();
    nats.cleanup().await;
    db.cleanup().await;
}
