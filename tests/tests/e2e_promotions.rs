//! End to end (issue 11): a promotion with a budget added through the promotion admin API,
//! purchases through the POS API; the breakdown of each purchase and the promotion's
//! statistics (budget left included) visible in GraphQL, the promotion no longer active once
//! its budget is spent, and `projector audit` clean.

mod query_support;

use std::process::ExitCode;

use clap::Parser as _;
use query_support::{Stack, ORG};
use serde_json::{json, Value};
use uuid::Uuid;

async fn purchase_breakdowns(stack: &Stack, member: Uuid) -> Vec<Value> {
    let reply = stack
        .query
        .graphql(
            Some(&stack.keys.storefront),
            "query($org: ID!, $id: ID!) { member(orgId: $org, memberId: $id) {
               history(first: 50) { edges { node { eventType
                 breakdown { base tierPoints promotions { promotionId points } capCut total } } } } } }",
            json!({"org": ORG, "id": member}),
        )
        .await;
    let mut breakdowns: Vec<Value> = reply.data()["member"]["history"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|edge| edge["node"]["eventType"] == "PurchaseRecorded")
        .map(|edge| edge["node"]["breakdown"].clone())
        .collect();
    breakdowns.reverse();
    breakdowns
}

async fn active(stack: &Stack, member: Uuid) -> Value {
    let reply = stack
        .query
        .graphql(
            Some(&stack.keys.storefront),
            "query($org: ID!, $id: ID!) { member(orgId: $org, memberId: $id) {
               activePromotions { promotionId effect { description } } } }",
            json!({"org": ORG, "id": member}),
        )
        .await;
    reply.data()["member"]["activePromotions"].clone()
}

#[tokio::test]
async fn a_budgeted_promotion_from_the_api_to_graphql_and_a_clean_audit() {
    let stack = Stack::start().await;
    stack
        .command(
            reqwest::Method::POST,
            &format!("/v1/orgs/{ORG}/promotions"),
            &stack.keys.admin,
            json!({"promotion_id": "double", "name": "Double points",
                   "starts_at": "2024-01-01T00:00:00Z",
                   "effect": {"multiplier": {"multiplier_bps": 20000}}, "budget_points": 60}),
        )
        .await;
    let ada = stack.enroll("card-ada", Some("Ada")).await;
    let bob = stack.enroll("card-bob", Some("Bob")).await;
    stack.wait_for_balance(bob, 0).await;
    let running = json!([{"promotionId": "double", "effect": {"description": "2× points"}}]);
    assert_eq!(active(&stack, ada).await, running);

    // Ada: 10.00 → 10 + 10 (50 left); 25.00 → 25 + 25 (25 left). Bob: 40.00 → 40 + the 25
    // left; 5.00 → 5, the budget is spent.
    for (member, txn, amount) in [
        (ada, "ada-1", 1_000),
        (ada, "ada-2", 2_500),
        (bob, "bob-1", 4_000),
        (bob, "bob-2", 500),
    ] {
        stack.purchase(member, txn, amount).await;
    }
    stack.wait_for_balance(ada, 70).await;
    stack.wait_for_balance(bob, 70).await;

    let double = |points: i64| json!([{"promotionId": "double", "points": points}]);
    let breakdown = |base: i64, promotions: Value, total: i64| json!({"base": base, "tierPoints": base, "promotions": promotions, "capCut": 0, "total": total});
    assert_eq!(
        purchase_breakdowns(&stack, ada).await,
        [breakdown(10, double(10), 20), breakdown(25, double(25), 50)]
    );
    assert_eq!(
        purchase_breakdowns(&stack, bob).await,
        [breakdown(40, double(25), 65), breakdown(5, json!([]), 5)]
    );

    let today = chrono::Utc::now().date_naive().to_string();
    let stats = stack
        .query
        .graphql(
            Some(&stack.keys.analyst),
            "query($org: ID!) { promotionStats(orgId: $org) {
               promotionId name uses points members budgetLeft daily { day uses points } } }",
            json!({"org": ORG}),
        )
        .await;
    assert_eq!(
        stats.data()["promotionStats"],
        json!([{"promotionId": "double", "name": "Double points", "uses": 3, "points": 60, "members": 2,
                "budgetLeft": 0, "daily": [{"day": today, "uses": 3, "points": 60}]}])
    );
    // A spent budget: the promotion is no longer active for anyone.
    assert_eq!(active(&stack, ada).await, json!([]));
    assert_eq!(active(&stack, bob).await, json!([]));

    let cli = projector::cli::Cli::try_parse_from(["projector", "audit", "--database-url", stack.db.url()])
        .unwrap();
    assert_eq!(projector::cli::execute(cli).await.unwrap(), ExitCode::SUCCESS);

    stack.cleanup().await;
}
