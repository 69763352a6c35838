//! `redeemReward` (SPEC §10): a shopper redeems for themselves from the widget, through the
//! command side's normal path. Idempotent on `redemptionId`; refused with a clear error when the
//! balance is short; never for another member; the balance reaches the customer's own live
//! subscription.

mod query_support;

use std::time::Duration;

use loyalty_client::customer_token::{sign, CustomerToken};
use loyalty_tests::{create_signing_secret, GraphqlReply, GraphqlWs};
use query_support::{Stack, ORG};
use serde_json::{json, Value};

const REDEEM: &str = "mutation($org: ID!, $reward: ID!, $id: ID!) {
    redeemReward(orgId: $org, rewardId: $reward, redemptionId: $id) {
        memberId redemptionId rewardId pointsSpent balance } }";

async fn redeem(stack: &Stack, token: &str, reward: &str, id: &str) -> GraphqlReply {
    stack
        .query
        .graphql_as_customer(
            &stack.keys.publishable,
            Some(token),
            REDEEM,
            json!({"org": ORG, "reward": reward, "id": id}),
        )
        .await
}

async fn redemptions(stack: &Stack, member: uuid::Uuid) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'RewardRedeemed'",
    )
    .bind(format!("{ORG}/{member}"))
    .fetch_one(stack.db.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn a_customer_redeems_for_themselves_once_per_redemption_id_and_sees_the_balance_live() {
    let stack = Stack::start().await;
    let secret = create_signing_secret(&stack.db, ORG).await;
    let own = stack.enroll("card-1", None).await;
    let other = stack.enroll("card-2", None).await;
    stack.purchase(own, "rcpt-1", 4_200).await;
    stack.purchase(other, "rcpt-2", 4_200).await;
    stack.wait_for_balance(own, 42).await;
    stack.wait_for_balance(other, 42).await;
    let token = sign(
        &CustomerToken::new(ORG, "card-1", Duration::from_secs(900)),
        &secret,
    );

    let mut ws = GraphqlWs::connect_as_customer(&stack.query.ws_url(), &stack.keys.publishable, &token)
        .await
        .unwrap();
    ws.subscribe(
        "live",
        "subscription($org: ID!, $id: ID!) { memberUpdated(orgId: $org, memberId: $id, includeCurrent: true) { points eventType } }",
        json!({"org": ORG, "id": own}),
    )
    .await;
    let first = ws
        .next_message(Duration::from_secs(10))
        .await
        .expect("the current state");
    assert_eq!(
        first["payload"]["data"]["memberUpdated"]["points"], 42,
        "{first:#}"
    );

    let reply = redeem(&stack, &token, "free-coffee", "click-1").await;
    let expected = json!({"memberId": own.to_string(), "redemptionId": "click-1",
        "rewardId": "free-coffee", "pointsSpent": 10, "balance": 32});
    assert_eq!(reply.data()["redeemReward"], expected);
    let update: Value = ws
        .next_message(Duration::from_secs(10))
        .await
        .expect("a live update");
    assert_eq!(
        update["payload"]["data"]["memberUpdated"],
        json!({"points": 32, "eventType": "RewardRedeemed"}),
        "{update:#}"
    );

    // A retry (the shopper clicked twice, or the network dropped the answer) is the same
    // redemption: same answer, one event.
    let retry = redeem(&stack, &token, "free-coffee", "click-1").await;
    assert_eq!(retry.data()["redeemReward"], expected);
    assert_eq!(redemptions(&stack, own).await, 1);
    // The same id for another reward is refused, not a second redemption.
    let reused = redeem(&stack, &token, "tote-bag", "click-1").await;
    assert_eq!(reused.error_codes(), ["REFUSED"], "{:#}", reused.body);
    assert_eq!(
        reused.body["errors"][0]["extensions"]["reason"],
        "idempotency_key_reused"
    );
    assert_eq!(reused.body["errors"][0]["extensions"]["field"], "redemptionId");

    // Short of points: a clear refusal, nothing recorded.
    let short = redeem(&stack, &token, "tote-bag", "click-2").await;
    assert_eq!(short.status, 200);
    assert_eq!(short.error_codes(), ["REFUSED"], "{:#}", short.body);
    let error = &short.body["errors"][0];
    assert_eq!(error["extensions"]["reason"], "insufficient_points", "{error:#}");
    assert!(
        error["message"].as_str().unwrap().contains("500"),
        "the message says what it costs: {error:#}"
    );
    assert!(short.body["data"].is_null());
    let unknown = redeem(&stack, &token, "yacht", "click-3").await;
    assert_eq!(
        unknown.body["errors"][0]["extensions"]["reason"], "unknown_reward",
        "{:#}",
        unknown.body
    );
    assert_eq!(unknown.body["errors"][0]["extensions"]["field"], "rewardId");
    assert_eq!(redemptions(&stack, own).await, 1);

    // Nobody else redeems: org-wide read keys, the publishable key alone, a wrong token.
    for key in [&stack.keys.storefront, &stack.keys.analyst] {
        let reply = stack
            .query
            .graphql(
                Some(key),
                REDEEM,
                json!({"org": ORG, "reward": "free-coffee", "id": "x"}),
            )
            .await;
        assert_eq!(reply.error_codes(), ["FORBIDDEN"], "{:#}", reply.body);
    }
    let alone = stack
        .query
        .graphql_as_customer(
            &stack.keys.publishable,
            None,
            REDEEM,
            json!({"org": ORG, "reward": "free-coffee", "id": "x"}),
        )
        .await;
    assert_eq!(alone.error_codes(), ["FORBIDDEN"], "{:#}", alone.body);
    let forged = sign(
        &CustomerToken::new(ORG, "card-2", Duration::from_secs(900)),
        "lks_guess",
    );
    let reply = redeem(&stack, &forged, "free-coffee", "steal-1").await;
    assert_eq!(
        (reply.status.as_u16(), reply.error_codes()),
        (401, vec!["INVALID_CUSTOMER_TOKEN".to_owned()])
    );
    assert_eq!(redemptions(&stack, other).await, 0);

    stack.cleanup().await;
}
