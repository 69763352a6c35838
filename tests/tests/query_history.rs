//! A member's history comes from the event store, newest first, paged by cursor: every event
//! exactly once, with the points it moved.

mod query_support;

use std::collections::BTreeSet;

use query_support::{Stack, ORG};
use serde_json::{json, Value};

const HISTORY: &str = "query($org: ID!, $id: ID!, $after: String, $pointsOnly: Boolean!) {
  member(orgId: $org, memberId: $id) {
    balance { points }
    history(first: 2, after: $after, pointsOnly: $pointsOnly) {
      edges { node { sequence eventType pointsDelta balanceAfter transactionId } }
      pageInfo { hasNextPage hasPreviousPage endCursor }
    }
  }
}";

async fn pages(stack: &Stack, member: uuid::Uuid, points_only: bool) -> Vec<Value> {
    let mut after = Value::Null;
    let mut entries = Vec::new();
    loop {
        let reply = stack
            .query
            .graphql(
                Some(&stack.keys.storefront),
                HISTORY,
                json!({"org": ORG, "id": member, "after": after, "pointsOnly": points_only}),
            )
            .await;
        let history = &reply.data()["member"]["history"];
        assert_eq!(history["pageInfo"]["hasPreviousPage"], !after.is_null());
        entries.extend(
            history["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["node"].clone()),
        );
        if history["pageInfo"]["hasNextPage"] != true {
            return entries;
        }
        after = history["pageInfo"]["endCursor"].clone();
    }
}

#[tokio::test]
async fn history_pages_cover_every_event_once_with_its_points() {
    let stack = Stack::start().await;
    let member = stack.enroll("card-1", None).await;
    for (i, amount) in [1_000, 2_550, 399, 12_000].into_iter().enumerate() {
        stack.purchase(member, &format!("rcpt-{i}"), amount).await;
    }
    stack
        .command(
            reqwest::Method::POST,
            &format!("/v1/orgs/{ORG}/members/{member}/redemptions"),
            &stack.keys.pos,
            json!({"redemption_id": "red-1", "reward_id": "free-coffee"}),
        )
        .await;

    // The member is found through the directory (a read model); its history then comes from
    // the event store.
    stack.wait_for_balance(member, 148).await;
    let all = pages(&stack, member, false).await;
    let sequences: Vec<i64> = all.iter().map(|e| e["sequence"].as_i64().unwrap()).collect();
    assert!(
        sequences.windows(2).all(|w| w[0] > w[1]),
        "newest first: {sequences:?}"
    );
    let distinct: BTreeSet<i64> = sequences.iter().copied().collect();
    assert_eq!(distinct, (1..=sequences[0]).collect(), "every event once");
    assert_eq!(all.last().unwrap()["eventType"], "MemberEnrolled");

    // 10 + 25 + 3 + 120 earned, 10 redeemed.
    let moved = pages(&stack, member, true).await;
    let deltas: Vec<i64> = moved.iter().map(|e| e["pointsDelta"].as_i64().unwrap()).collect();
    assert_eq!(deltas, [-10, 120, 3, 25, 10]);
    assert_eq!(moved[0]["eventType"], "RewardRedeemed");
    assert_eq!(moved[0]["balanceAfter"], 148);
    assert_eq!(moved[1]["transactionId"], "rcpt-3");

    stack.cleanup().await;
}
