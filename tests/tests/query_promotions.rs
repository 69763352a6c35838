//! Promotions in GraphQL (SPEC §9, §11): promotions configured through the program API,
//! purchases through the POS API; each purchase's breakdown in the member's history, each
//! promotion's statistics for analysts (equal to the sums of those breakdowns), the program's
//! promotions, time zone and cap, and the promotions active for a member now.

mod query_support;

use std::collections::BTreeMap;

use chrono::{Timelike as _, Utc};
use query_support::{Stack, ORG};
use serde_json::{json, Value};
use uuid::Uuid;

/// The program every stack configures, plus `extra` (promotions, time zone, cap).
async fn configure(stack: &Stack, extra: Value) {
    let mut program = json!({
        "currency": "EUR",
        "earn_rate": 1,
        "stamp_cards": [{"card_id": "coffee", "name": "Coffee card", "stamps_required": 3,
                         "reward_id": "free-coffee"}],
        "rewards": [{"reward_id": "free-coffee", "name": "Free coffee", "points_cost": 10},
                    {"reward_id": "tote-bag", "name": "Tote bag", "points_cost": 500}],
    });
    for (field, value) in extra.as_object().unwrap() {
        program[field] = value.clone();
    }
    stack
        .command(
            reqwest::Method::PUT,
            &format!("/v1/orgs/{ORG}/program"),
            &stack.keys.admin,
            program,
        )
        .await;
}

fn promotion(id: &str, effect: Value, more: Value) -> Value {
    let mut promotion = json!({
        "promotion_id": id, "name": format!("Promotion {id}"),
        "starts_at": "2024-01-01T00:00:00Z", "effect": effect,
    });
    for (field, value) in more.as_object().unwrap() {
        promotion[field] = value.clone();
    }
    promotion
}

const HISTORY: &str = "query($org: ID!, $id: ID!) { member(orgId: $org, memberId: $id) {
  history(first: 50, pointsOnly: true) { edges { node { eventType transactionId pointsDelta
    breakdown { base tierPoints promotions { promotionId points } capCut total } } } } } }";

/// The breakdowns of the member's purchases, oldest first.
async fn breakdowns(stack: &Stack, member: Uuid) -> Vec<Value> {
    let reply = stack
        .query
        .graphql(
            Some(&stack.keys.storefront),
            HISTORY,
            json!({"org": ORG, "id": member}),
        )
        .await;
    let mut purchases: Vec<Value> = reply.data()["member"]["history"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"].clone())
        .filter(|node| node["eventType"] == "PurchaseRecorded")
        .collect();
    purchases.reverse();
    for purchase in &purchases {
        // What the purchase moved is what its breakdown says it awarded.
        assert_eq!(
            purchase["pointsDelta"], purchase["breakdown"]["total"],
            "{purchase}"
        );
    }
    purchases
}

const STATS: &str = "query($org: ID!) { promotionStats(orgId: $org) {
  promotionId name uses points members budgetLeft daily { day uses points } } }";

#[tokio::test]
async fn promotion_statistics_equal_the_sums_of_the_purchase_breakdowns() {
    let stack = Stack::start().await;
    configure(
        &stack,
        json!({
            "time_zone": "Europe/Paris",
            "earn_cap": {"points": 1000, "period": "day"},
            "promotions": [
                promotion("double", json!({"multiplier": {"multiplier_bps": 20000}}), json!({})),
                promotion("hello", json!({"bonus": {"points": 5}}),
                          json!({"stackable": true, "limit": {"count": 1, "period": "promotion"},
                                 "schedule": {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                                              "from": "00:00", "to": "24:00"}})),
            ],
        }),
    )
    .await;
    let ada = stack.enroll("card-ada", Some("Ada")).await;
    let bob = stack.enroll("card-bob", Some("Bob")).await;
    // Ada: 10.00 → 10 + double 10 + hello 5 = 25; 25.00 → 25 + double 25 (hello used) = 50.
    // Bob: 40.00 → 40 + double 40 + hello 5 = 85.
    stack.purchase(ada, "ada-1", 1_000).await;
    stack.purchase(ada, "ada-2", 2_500).await;
    stack.purchase(bob, "bob-1", 4_000).await;
    stack.wait_for_balance(ada, 75).await;
    stack.wait_for_balance(bob, 85).await;

    let ada_purchases = breakdowns(&stack, ada).await;
    assert_eq!(
        ada_purchases
            .iter()
            .map(|p| p["breakdown"].clone())
            .collect::<Vec<_>>(),
        [
            json!({"base": 10, "tierPoints": 10, "capCut": 0, "total": 25,
                   "promotions": [{"promotionId": "double", "points": 10}, {"promotionId": "hello", "points": 5}]}),
            json!({"base": 25, "tierPoints": 25, "capCut": 0, "total": 50,
                   "promotions": [{"promotionId": "double", "points": 25}]}),
        ]
    );
    let mut sums: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for purchase in ada_purchases.iter().chain(&breakdowns(&stack, bob).await) {
        for applied in purchase["breakdown"]["promotions"].as_array().unwrap() {
            let sum = sums
                .entry(applied["promotionId"].as_str().unwrap().to_owned())
                .or_default();
            sum.0 += 1;
            sum.1 += applied["points"].as_i64().unwrap();
        }
    }
    assert_eq!(sums["double"], (3, 75));
    assert_eq!(sums["hello"], (2, 10));

    let data = stack
        .query
        .graphql_until(
            &stack.keys.analyst,
            STATS,
            json!({"org": ORG}),
            std::time::Duration::from_secs(20),
            |data| data["promotionStats"][0]["uses"] == 3,
        )
        .await;
    let today = Utc::now().date_naive().to_string();
    assert_eq!(
        data["promotionStats"],
        json!([
            {"promotionId": "double", "name": "Promotion double", "uses": sums["double"].0,
             "points": sums["double"].1, "members": 2, "budgetLeft": null,
             "daily": [{"day": today, "uses": 3, "points": 75}]},
            {"promotionId": "hello", "name": "Promotion hello", "uses": sums["hello"].0,
             "points": sums["hello"].1, "members": 2, "budgetLeft": null,
             "daily": [{"day": today, "uses": 2, "points": 10}]},
        ])
    );
    // Statistics are for analysts: a storefront key is refused.
    let refused = stack
        .query
        .graphql(Some(&stack.keys.storefront), STATS, json!({"org": ORG}))
        .await;
    assert_eq!(refused.error_codes(), ["FORBIDDEN"], "{:?}", refused.body);

    // The program shows its promotions, time zone and cap.
    let reply = stack
        .query
        .graphql(
            Some(&stack.keys.storefront),
            "query($org: ID!) { program(orgId: $org) { timeZone earnCap { points period }
               promotions { promotionId name startsAt endsAt stackable priority budgetPoints
                 effect { kind multiplierBps points description }
                 schedule { days from to } limit { count period } } } }",
            json!({"org": ORG}),
        )
        .await;
    let program = &reply.data()["program"];
    assert_eq!(program["timeZone"], "Europe/Paris");
    assert_eq!(program["earnCap"], json!({"points": 1000, "period": "day"}));
    assert_eq!(
        program["promotions"][0],
        json!({"promotionId": "double", "name": "Promotion double", "startsAt": "2024-01-01T00:00:00+00:00",
               "endsAt": null, "stackable": false, "priority": 0, "budgetPoints": null,
               "effect": {"kind": "MULTIPLIER", "multiplierBps": 20000, "points": null, "description": "2× points"},
               "schedule": null, "limit": null})
    );
    assert_eq!(program["promotions"][1]["effect"]["description"], "+5 points");
    assert_eq!(program["promotions"][1]["schedule"]["to"], "24:00");
    assert_eq!(
        program["promotions"][1]["limit"],
        json!({"count": 1, "period": "promotion"})
    );

    // A promotion removed from the program keeps its statistics, listed after the program's.
    configure(
        &stack,
        json!({"promotions": [
            promotion("double", json!({"multiplier": {"multiplier_bps": 20000}}), json!({})),
        ]}),
    )
    .await;
    let data = stack
        .query
        .graphql_until(
            &stack.keys.analyst,
            STATS,
            json!({"org": ORG}),
            std::time::Duration::from_secs(20),
            |data| data["promotionStats"][1]["name"].is_null(),
        )
        .await;
    assert_eq!(
        data["promotionStats"][1],
        json!({"promotionId": "hello", "name": null, "uses": 2, "points": 10, "members": 2, "budgetLeft": null,
               "daily": [{"day": today, "uses": 2, "points": 10}]})
    );
    assert_eq!(data["promotionStats"][0]["points"], 75);

    // The audit replays the promotion read models exactly.
    let audit = projector::audit::audit(stack.db.pool(), "rm").await.unwrap();
    assert!(audit.is_clean(), "{audit}");
    let stats = audit
        .tables
        .iter()
        .find(|t| t.table == "promotion_stats")
        .unwrap();
    assert_eq!((stats.live_rows, stats.replay_rows), (2, 2));

    stack.cleanup().await;
}

const ACTIVE: &str = "query($org: ID!, $id: ID!) { member(orgId: $org, memberId: $id) {
  activePromotions { promotionId } } }";

async fn active(stack: &Stack, member: Uuid) -> Vec<String> {
    let reply = stack
        .query
        .graphql(
            Some(&stack.keys.storefront),
            ACTIVE,
            json!({"org": ORG, "id": member}),
        )
        .await;
    reply.data()["member"]["activePromotions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["promotionId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn active_promotions_respect_dates_schedule_tier_conditions_and_limits() {
    let stack = Stack::start().await;
    let all_week = json!(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]);
    // A window of every day that does not contain the current UTC hour.
    let (from, to) = if Utc::now().hour() < 12 {
        ("13:00", "14:00")
    } else {
        ("01:00", "02:00")
    };
    let bonus = json!({"bonus": {"points": 5}});
    let stackable = |more: Value| {
        let mut more = more;
        more["stackable"] = json!(true);
        more
    };
    configure(
        &stack,
        json!({"promotions": [
            promotion("always", bonus.clone(), stackable(json!({}))),
            promotion("once", bonus.clone(), stackable(json!({"limit": {"count": 1, "period": "promotion"}}))),
            promotion("gold", bonus.clone(), stackable(json!({"conditions": {"tiers": ["Gold"]}}))),
            promotion("bronze", bonus.clone(), stackable(json!({"conditions": {"tiers": ["Bronze"]}}))),
            promotion("later-today", bonus.clone(),
                      stackable(json!({"schedule": {"days": all_week, "from": from, "to": to}}))),
            promotion("ended", bonus.clone(), stackable(json!({"ends_at": "2024-02-01T00:00:00Z"}))),
            promotion("first", bonus.clone(), stackable(json!({"conditions": {"first_purchase": true}}))),
            promotion("comeback", bonus.clone(), stackable(json!({"conditions": {"inactive_days": 30}}))),
        ]}),
    )
    .await;
    let ada = stack.enroll("card-ada", None).await;
    let bob = stack.enroll("card-bob", None).await;
    // Enrolled: in the directory, with no purchase yet.
    stack.wait_for_balance(ada, 0).await;
    stack.wait_for_balance(bob, 0).await;
    let before = ["always", "once", "bronze", "first"];
    assert_eq!(active(&stack, ada).await, before);
    assert_eq!(active(&stack, bob).await, before);

    // Ada's first purchase: 10 + always, once, bronze, first (5 each) = 30.
    let answer = stack.purchase(ada, "ada-1", 1_000).await;
    assert_eq!(answer["balance"], 30, "{answer}");
    stack.wait_for_balance(ada, 30).await;
    // Ada used `once` and `first` up; she purchased today, so `comeback` waits 30 days. Bob's
    // promotions do not depend on Ada's uses.
    assert_eq!(active(&stack, ada).await, ["always", "bronze"]);
    assert_eq!(active(&stack, bob).await, before);

    stack.cleanup().await;
}

#[tokio::test]
async fn active_promotions_of_a_page_of_members_cost_a_constant_number_of_statements() {
    use std::sync::Arc;

    use query_service::auth::Caller;
    use query_service::db::Db;
    use query_service::graphql::Schemas;
    use query_service::live::LiveFeed;

    let stack = Stack::start().await;
    configure(
        &stack,
        json!({"promotions": [
            promotion("always", json!({"bonus": {"points": 5}}), json!({})),
            promotion("once", json!({"bonus": {"points": 5}}),
                      json!({"stackable": true, "limit": {"count": 1, "period": "promotion"}})),
        ]}),
    )
    .await;
    let mut members = Vec::new();
    for i in 0..12 {
        members.push(stack.enroll(&format!("card-{i}"), None).await);
    }
    // Every other member purchased: `once` is used up for them.
    for (i, member) in members.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        stack.purchase(*member, &format!("rcpt-{i}"), 1_000).await;
    }
    stack.wait_for_balance(members[10], 20).await;
    stack.wait_for_balance(members[11], 0).await;

    let db = Db::new(stack.db.pool().clone());
    let schemas = Schemas::new(
        db.clone(),
        Arc::new(LiveFeed::default()),
        query_service::Limits::default(),
    );
    let analyst = common::keys::authenticate(stack.db.pool(), &stack.keys.analyst)
        .await
        .unwrap()
        .unwrap();
    let mut statements = Vec::new();
    for first in [2, 12] {
        let before = db.statements();
        let response = schemas
            .execute_json(
                Caller::Key(analyst.clone()),
                "query($org: ID!, $first: Int) { members(orgId: $org, first: $first) {
                   edges { node { memberId balance { points } activePromotions { promotionId } } } } }",
                json!({"org": ORG, "first": first}),
            )
            .await;
        assert!(response.get("errors").is_none(), "{response:#}");
        let edges = response["data"]["members"]["edges"].as_array().unwrap();
        assert_eq!(edges.len(), first);
        for edge in edges {
            let node = &edge["node"];
            let purchased = node["balance"]["points"] != 0;
            let expected = if purchased {
                json!([{"promotionId": "always"}])
            } else {
                json!([{"promotionId": "always"}, {"promotionId": "once"}])
            };
            assert_eq!(node["activePromotions"], expected, "{node}");
        }
        statements.push(db.statements() - before);
    }
    assert_eq!(
        statements[0], statements[1],
        "statements for 2 and for 12 members: {statements:?}"
    );

    stack.cleanup().await;
}
