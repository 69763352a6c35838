//! End to end: a POS purchase enters through the command API, the relay publishes it, the
//! projector applies it, and GraphQL answers with it — live over the websocket within a
//! second, and in every read-model query once the projector has caught up.

mod query_support;

use std::time::{Duration, Instant};

use loyalty_tests::GraphqlWs;
use query_support::{Stack, LOCATION, ORG};
use serde_json::json;

const MEMBER_VIEW: &str = r#"
query($org: ID!, $id: ID, $ext: String) {
  member(orgId: $org, memberId: $id, externalId: $ext) {
    memberId externalId displayName
    balance { points lifetimeEarned redeemed expired clawedBack nextExpiry { points date } }
    tier { name multiplierBps qualifyingPoints nextTier pointsToNext pointsToKeep }
    stampCards { cardId name stamps stampsRequired cardsCompleted }
    affordableRewards { rewardId pointsCost }
    history(first: 10) { edges { node { eventType pointsDelta balanceAfter transactionId amountMinor } } }
    leaderboardRanks { period rank points }
  }
}"#;

#[tokio::test]
async fn a_purchase_reaches_the_subscriber_within_a_second_and_every_query() {
    let stack = Stack::start().await;
    let member = stack.enroll("card-0001", Some("Ada")).await;

    let mut ws = GraphqlWs::connect(&stack.query.ws_url(), Some(&stack.keys.storefront))
        .await
        .expect("the storefront key opens a websocket");
    ws.subscribe(
        "live",
        "subscription($org: ID!, $id: ID!) { memberUpdated(orgId: $org, memberId: $id, includeCurrent: true) \
         { eventType sequence points pointsDelta tier multiplierBps } }",
        json!({"org": ORG, "id": member}),
    )
    .await;
    // The current state comes first: once it is here the subscription is registered.
    let current = ws
        .next_message(Duration::from_secs(10))
        .await
        .expect("the current state");
    assert_eq!(
        current["payload"]["data"]["memberUpdated"]["points"], 0,
        "{current}"
    );
    assert_eq!(
        current["payload"]["data"]["memberUpdated"]["tier"], "Bronze",
        "{current}"
    );

    // 25.90 EUR at 1 point per euro, Bronze 1.0×: 25 points, and a stamp.
    let answer = stack.purchase(member, "rcpt-1", 2_590).await;
    let sent = Instant::now();
    assert_eq!(answer["balance"], 25, "{answer}");
    let update = loop {
        let message = ws
            .next_message(Duration::from_secs(1).saturating_sub(sent.elapsed()))
            .await
            .expect("the purchase is pushed to the subscriber within 1 s");
        let update = message["payload"]["data"]["memberUpdated"].clone();
        if update["eventType"] == "PurchaseRecorded" {
            break update;
        }
    };
    assert_eq!(update["points"], 25, "{update}");
    assert_eq!(update["pointsDelta"], 25, "{update}");
    assert_eq!(update["tier"], "Bronze", "{update}");
    assert_eq!(update["multiplierBps"], 10_000, "{update}");

    // The read models catch up: the storefront view of the member, by id and by external id.
    stack.wait_for_balance(member, 25).await;
    for variables in [
        json!({"org": ORG, "id": member}),
        json!({"org": ORG, "ext": "card-0001"}),
    ] {
        let reply = stack
            .query
            .graphql(Some(&stack.keys.storefront), MEMBER_VIEW, variables)
            .await;
        let view = &reply.data()["member"];
        assert_eq!(view["memberId"], member.to_string());
        assert_eq!(view["externalId"], "card-0001");
        assert_eq!(view["displayName"], "Ada");
        let balance = &view["balance"];
        assert_eq!(
            (
                &balance["points"],
                &balance["lifetimeEarned"],
                &balance["redeemed"]
            ),
            (&json!(25), &json!(25), &json!(0))
        );
        assert_eq!(balance["nextExpiry"]["points"], 25, "{balance}");
        let tier = &view["tier"];
        assert_eq!(tier["name"], "Bronze");
        assert_eq!(tier["qualifyingPoints"], 25);
        assert_eq!(tier["nextTier"], "Silver");
        assert_eq!(tier["pointsToNext"], 475);
        assert_eq!(
            view["stampCards"],
            json!([{"cardId": "coffee", "name": "Coffee card", "stamps": 1, "stampsRequired": 3, "cardsCompleted": 0}])
        );
        // 25 points buy the coffee (10), not the tote bag (500).
        assert_eq!(
            view["affordableRewards"],
            json!([{"rewardId": "free-coffee", "pointsCost": 10}])
        );
        let history: Vec<_> = view["history"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|edge| edge["node"]["eventType"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(history, ["StampCollected", "PurchaseRecorded", "MemberEnrolled"]);
        let purchase = &view["history"]["edges"][1]["node"];
        assert_eq!(
            (
                &purchase["pointsDelta"],
                &purchase["balanceAfter"],
                &purchase["transactionId"],
                &purchase["amountMinor"]
            ),
            (&json!(25), &json!(25), &json!("rcpt-1"), &json!(2_590))
        );
        assert_eq!(
            view["leaderboardRanks"],
            json!([{"period": "WEEK", "rank": 1, "points": 25},
                   {"period": "MONTH", "rank": 1, "points": 25},
                   {"period": "ALL_TIME", "rank": 1, "points": 25}])
        );
    }

    // The analyst's org-wide views.
    let reply = stack
        .query
        .graphql(
            Some(&stack.keys.analyst),
            "query($org: ID!, $loc: ID) {
               liability(orgId: $org) { points }
               tierDistribution(orgId: $org) { tier count }
               leaderboard(orgId: $org, period: WEEK, locationId: $loc) { rank memberId displayName points }
             }",
            json!({"org": ORG, "loc": LOCATION}),
        )
        .await;
    let data = reply.data();
    assert_eq!(data["liability"]["points"], 25);
    assert_eq!(
        data["tierDistribution"],
        json!([{"tier": "Bronze", "count": 1}, {"tier": "Silver", "count": 0},
               {"tier": "Gold", "count": 0}, {"tier": "Platinum", "count": 0}])
    );
    assert_eq!(
        data["leaderboard"],
        json!([{"rank": 1, "memberId": member.to_string(), "displayName": "Ada", "points": 25}])
    );

    stack.cleanup().await;
}
