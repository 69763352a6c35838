//! Live updates: a subscriber gets its member's balance and tier after each event (a tier
//! upgrade included), and only its member's events.

mod query_support;

use std::time::Duration;

use loyalty_tests::GraphqlWs;
use query_support::{Stack, ORG};
use serde_json::{json, Value};

const SUBSCRIPTION: &str = "subscription($org: ID!, $id: ID!) {
  memberUpdated(orgId: $org, memberId: $id, includeCurrent: true) {
    memberId eventType points pointsDelta tier multiplierBps qualifyingPoints
  }
}";

/// Reads messages until one of subscription `id` has `eventType`; returns them all.
async fn until(ws: &mut GraphqlWs, id: &str, event_type: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let message = ws
            .next_message(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("no {event_type} for {id}; got {seen:#?}"));
        let done =
            message["id"] == id && message["payload"]["data"]["memberUpdated"]["eventType"] == event_type;
        seen.push(message);
        if done {
            return seen;
        }
    }
}

fn update(message: &Value) -> &Value {
    &message["payload"]["data"]["memberUpdated"]
}

#[tokio::test]
async fn subscribers_get_their_members_balance_and_tier_and_nothing_else() {
    let stack = Stack::start().await;
    let ada = stack.enroll("card-ada", Some("Ada")).await;
    let bob = stack.enroll("card-bob", Some("Bob")).await;

    let mut ws = GraphqlWs::connect(&stack.query.ws_url(), Some(&stack.keys.analyst))
        .await
        .unwrap();
    for (id, member) in [("ada", ada), ("bob", bob)] {
        ws.subscribe(id, SUBSCRIPTION, json!({"org": ORG, "id": member}))
            .await;
        let current = ws.next_message(Duration::from_secs(10)).await.unwrap();
        assert_eq!(current["id"], id);
        assert_eq!(update(&current)["points"], 0);
        assert!(update(&current)["eventType"].is_null());
    }

    // 600 EUR: 600 points at Bronze, which makes Ada Silver (from her next purchase on).
    stack.purchase(ada, "rcpt-1", 60_000).await;
    let messages = until(&mut ws, "ada", "TierUpgraded").await;
    assert!(messages.iter().all(|m| m["id"] == "ada"), "{messages:#?}");
    let purchase = messages
        .iter()
        .map(update)
        .find(|u| u["eventType"] == "PurchaseRecorded")
        .expect("the purchase is pushed");
    assert_eq!(
        (&purchase["points"], &purchase["pointsDelta"], &purchase["tier"]),
        (&json!(600), &json!(600), &json!("Bronze"))
    );
    let upgrade = update(messages.last().unwrap());
    assert_eq!(
        (
            &upgrade["points"],
            &upgrade["tier"],
            &upgrade["multiplierBps"],
            &upgrade["qualifyingPoints"]
        ),
        (&json!(600), &json!("Silver"), &json!(12_500), &json!(600))
    );

    // A refund of a sixth claws back 100 points.
    stack
        .command(
            reqwest::Method::POST,
            &format!("/v1/orgs/{ORG}/members/{ada}/refunds"),
            &stack.keys.pos,
            json!({"refund_id": "ref-1", "transaction_id": "rcpt-1", "amount_minor": 10_000}),
        )
        .await;
    let messages = until(&mut ws, "ada", "PurchaseRefunded").await;
    let refund = update(messages.last().unwrap());
    assert_eq!(
        (&refund["points"], &refund["pointsDelta"], &refund["tier"]),
        (&json!(500), &json!(-100), &json!("Silver"))
    );

    // Bob's subscription saw none of that: his first update is his own purchase.
    stack.purchase(bob, "rcpt-2", 1_000).await;
    let messages = until(&mut ws, "bob", "PurchaseRecorded").await;
    let first_for_bob = messages.iter().find(|m| m["id"] == "bob").unwrap();
    assert_eq!(update(first_for_bob)["memberId"], bob.to_string());
    assert_eq!(update(first_for_bob)["eventType"], "PurchaseRecorded");
    assert_eq!(update(first_for_bob)["points"], 10);

    // A member the org does not have.
    ws.subscribe(
        "nobody",
        SUBSCRIPTION,
        json!({"org": ORG, "id": uuid::Uuid::new_v4()}),
    )
    .await;
    let refused = loop {
        let message = ws.next_message(Duration::from_secs(10)).await.unwrap();
        if message["id"] == "nobody" {
            break message;
        }
    };
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{refused}"
    );

    stack.cleanup().await;
}
