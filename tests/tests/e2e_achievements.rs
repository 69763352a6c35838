//! End to end (issue 12): achievements configured through the program API, unlocked by POS
//! purchases (the unlock in the purchase's answer, its reward in the balance), progress and
//! badges in GraphQL, a refund that moves progress but takes no badge back; then a what-if
//! simulation through the command API (a draft with one extra promotion: exactly its points),
//! the same through `projector simulate`, both listed in GraphQL; and a clean audit.

mod query_support;

use std::process::ExitCode;

use clap::Parser as _;
use query_support::{Stack, LOCATION, ORG};
use serde_json::{json, Value};
use uuid::Uuid;

/// The stack's program (SPEC §11 JSON) with `achievements` and `promotions`.
fn program(achievements: Value, promotions: Value) -> Value {
    json!({
        "currency": "EUR", "earn_rate": 1,
        "stamp_cards": [{"card_id": "coffee", "name": "Coffee card", "stamps_required": 3,
                         "reward_id": "free-coffee"}],
        "rewards": [{"reward_id": "free-coffee", "name": "Free coffee", "points_cost": 10},
                    {"reward_id": "tote-bag", "name": "Tote bag", "points_cost": 500}],
        "achievements": achievements,
        "promotions": promotions,
    })
}

fn achievements() -> Value {
    json!([
        {"achievement_id": "three-visits", "name": "Three visits", "badge": "Regular",
         "criteria": {"purchases": {"count": 3}}, "reward_points": 50},
        {"achievement_id": "big-spender", "name": "Big spender",
         "criteria": {"spend": {"amount_minor": 10000}}, "reward_points": 500}
    ])
}

async fn member_achievements(stack: &Stack, member: Uuid) -> Value {
    stack
        .query
        .graphql(
            Some(&stack.keys.storefront),
            "query($org: ID!, $id: ID!) { member(orgId: $org, memberId: $id) {
               badges { achievementId badge rewardPoints }
               achievements { achievementId name progress target unlockedAt } } }",
            json!({"org": ORG, "id": member}),
        )
        .await
        .data()["member"]
        .clone()
}

async fn simulations(stack: &Stack) -> Vec<Value> {
    let reply = stack
        .query
        .graphql(
            Some(&stack.keys.analyst),
            "query($org: ID!) { simulations(orgId: $org) { simulationId purchases actualPoints draftPoints
               liabilityDelta byPromotion { key actualPoints draftPoints } tierChangesTotal draft } }",
            json!({"org": ORG}),
        )
        .await;
    reply.data()["simulations"].as_array().unwrap().clone()
}

#[tokio::test]
async fn achievements_unlock_from_the_till_to_graphql_and_a_draft_is_simulated_on_the_real_history() {
    let stack = Stack::start().await;
    let started = chrono::Utc::now() - chrono::Duration::seconds(1);
    stack
        .command(
            reqwest::Method::PUT,
            &format!("/v1/orgs/{ORG}/program"),
            &stack.keys.admin,
            program(achievements(), json!([])),
        )
        .await;
    let ada = stack.enroll("card-ada", Some("Ada")).await;

    stack.purchase(ada, "ada-1", 1_000).await;
    stack.purchase(ada, "ada-2", 1_000).await;
    let third = stack.purchase(ada, "ada-3", 1_000).await;
    let unlocks: Vec<&Value> = third["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "AchievementUnlocked")
        .collect();
    assert_eq!(
        unlocks.len(),
        1,
        "the third purchase's answer carries the unlock: {third}"
    );
    assert_eq!(unlocks[0]["payload"]["achievement_id"], "three-visits");
    assert_eq!(unlocks[0]["payload"]["badge"], "Regular");
    assert_eq!(unlocks[0]["payload"]["reward_points"], 50);
    stack.wait_for_balance(ada, 30 + 50).await;

    let seen = member_achievements(&stack, ada).await;
    assert_eq!(
        seen["badges"],
        json!([{"achievementId": "three-visits", "badge": "Regular", "rewardPoints": 50}])
    );
    assert_eq!(seen["achievements"][0]["progress"], 3);
    assert_eq!(seen["achievements"][0]["target"], 3);
    assert!(seen["achievements"][0]["unlockedAt"].is_string());
    assert_eq!(
        seen["achievements"][1],
        json!({"achievementId": "big-spender", "name": "Big spender", "progress": 3000, "target": 10000,
               "unlockedAt": null})
    );

    // A refund moves spend (net) and takes no badge back.
    stack
        .command(
            reqwest::Method::POST,
            &format!("/v1/orgs/{ORG}/members/{ada}/refunds"),
            &stack.keys.pos,
            json!({"refund_id": "r-1", "transaction_id": "ada-1", "amount_minor": 1000}),
        )
        .await;
    stack.wait_for_balance(ada, 70).await;
    let after = member_achievements(&stack, ada).await;
    assert_eq!(after["badges"], seen["badges"], "the badge stays");
    assert_eq!(
        after["achievements"][1]["progress"], 2000,
        "spend is net of the refund"
    );

    let stats = stack
        .query
        .graphql(
            Some(&stack.keys.analyst),
            "query($org: ID!) { achievementStats(orgId: $org) { achievementId started unlocked
               unlocksByWeek { unlocks rewardPoints } } }",
            json!({"org": ORG}),
        )
        .await;
    assert_eq!(
        stats.data()["achievementStats"],
        json!([{"achievementId": "three-visits", "started": 1, "unlocked": 1,
                "unlocksByWeek": [{"unlocks": 1, "rewardPoints": 50}]},
               {"achievementId": "big-spender", "started": 1, "unlocked": 0, "unlocksByWeek": []}])
    );

    // What if a bonus of 5 points per purchase had run? Exactly 5 × 3 purchases more, and the
    // refund would have clawed back its share of them too.
    let bonus = json!([{"promotion_id": "bonus-5", "name": "5 more", "starts_at": "2020-01-01T00:00:00Z",
                        "effect": {"bonus": {"points": 5}}, "stackable": true}]);
    let to = chrono::Utc::now();
    let report = stack
        .command(
            reqwest::Method::POST,
            &format!("/v1/orgs/{ORG}/program/simulations"),
            &stack.keys.admin,
            json!({"draft": program(achievements(), bonus.clone()), "from": started, "to": to}),
        )
        .await;
    assert_eq!(report["purchases"], 3, "{report}");
    assert_eq!(report["actual_points"], 30);
    assert_eq!(report["draft_points"], 45);
    assert_eq!(
        report["by_promotion"],
        json!([{"promotion_id": "bonus-5", "actual_points": 0, "draft_points": 15}])
    );
    assert_eq!(report["actual_reward_points"], 50);
    assert_eq!(report["draft_reward_points"], 50);
    assert_eq!(
        report["liability_delta"],
        15 - 5,
        "15 more earned, 5 more clawed back"
    );
    assert_eq!(report["by_location"][0]["location_id"], LOCATION);
    assert_eq!(report["tier_changes"], json!([]));

    // A bad draft names its field and stores nothing.
    let bad = stack
        .commands
        .client(&stack.keys.admin)
        .send(
            reqwest::Method::POST,
            &format!("/v1/orgs/{ORG}/program/simulations"),
            None,
            Some(
                &json!({"draft": program(json!([{"achievement_id": "x", "name": "X",
                "criteria": {"purchases": {"count": 0}}}]), json!([])), "from": started, "to": to}),
            ),
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.text);
    assert_eq!(
        bad.body["error"]["field"],
        "draft.achievements[0].criteria.purchases.count"
    );

    // The same history under the programs really in force, from the command line.
    let cli = projector::cli::Cli::try_parse_from([
        "projector",
        "simulate",
        "--database-url",
        stack.db.url(),
        "--org",
        ORG,
        "--in-force",
        "--from",
        &started.to_rfc3339(),
    ])
    .unwrap();
    assert_eq!(projector::cli::execute(cli).await.unwrap(), ExitCode::SUCCESS);

    let listed = simulations(&stack).await;
    assert_eq!(listed.len(), 2, "both runs are kept: {listed:?}");
    let (in_force, draft) = (&listed[0], &listed[1]);
    assert_eq!(draft["simulationId"], report["simulation_id"]);
    assert_eq!(draft["draftPoints"], 45);
    assert_eq!(in_force["draft"], Value::Null);
    assert_eq!(in_force["purchases"], 3);
    assert_eq!(in_force["actualPoints"], 30);
    assert_eq!(
        in_force["draftPoints"], 30,
        "the programs in force reproduce every point"
    );
    assert_eq!(in_force["liabilityDelta"], 0);

    let cli = projector::cli::Cli::try_parse_from(["projector", "audit", "--database-url", stack.db.url()])
        .unwrap();
    assert_eq!(projector::cli::execute(cli).await.unwrap(), ExitCode::SUCCESS);
    stack.cleanup().await;
}
