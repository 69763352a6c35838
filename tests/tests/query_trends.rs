//! The analysts' trends per UTC day: the liability at the end of each day (every day listed,
//! quiet days carrying the day before, the last one equal to the liability now) and the members
//! moving between RFM segments per day.

mod query_support;

use chrono::{Days, NaiveTime, Utc};
use query_support::{Stack, LOCATION, ORG};
use serde_json::{json, Value};
use uuid::Uuid;

/// A purchase at one second past midnight (UTC), `days_ago` days ago.
async fn purchase_on(stack: &Stack, member: Uuid, transaction_id: &str, amount_minor: i64, days_ago: u64) {
    let day = Utc::now()
        .date_naive()
        .checked_sub_days(Days::new(days_ago))
        .unwrap();
    let at = day.and_time(NaiveTime::from_hms_opt(0, 0, 1).unwrap()).and_utc();
    stack
        .command(
            reqwest::Method::POST,
            &format!("/v1/orgs/{ORG}/members/{member}/purchases"),
            &stack.keys.pos,
            json!({"transaction_id": transaction_id, "location_id": LOCATION, "amount_minor": amount_minor,
                   "currency": "EUR", "occurred_at": at}),
        )
        .await;
}

fn day(days_ago: u64) -> String {
    Utc::now()
        .date_naive()
        .checked_sub_days(Days::new(days_ago))
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn the_liability_per_day_and_the_segment_moves_per_day() {
    let stack = Stack::start().await;
    let ada = stack.enroll("card-ada", Some("Ada")).await;
    let bob = stack.enroll("card-bob", Some("Bob")).await;
    purchase_on(&stack, ada, "a-1", 10_000, 3).await;
    purchase_on(&stack, bob, "b-1", 2_000, 1).await;
    purchase_on(&stack, ada, "a-2", 5_000, 0).await;
    stack.wait_for_balance(ada, 150).await;
    stack.wait_for_balance(bob, 20).await;
    projector::rfm::recompute(stack.db.pool(), "rm", ORG, Utc::now())
        .await
        .unwrap();

    let reply = stack
        .query
        .graphql(
            Some(&stack.keys.analyst),
            "query($org: ID!) {
               liability(orgId: $org) { points }
               liabilityHistory(orgId: $org, days: 5) { day points change }
               segmentTransitionCounts(orgId: $org, days: 1) { day from to count }
               segmentCounts(orgId: $org) { segment count }
             }",
            json!({"org": ORG}),
        )
        .await;
    let data = reply.data();
    assert_eq!(data["liability"]["points"], 170);
    let entry = |days_ago: u64, points: i64, change: i64| json!({"day": day(days_ago), "points": points, "change": change});
    assert_eq!(
        data["liabilityHistory"],
        json!([
            entry(4, 0, 0),
            entry(3, 100, 100),
            entry(2, 100, 0),
            entry(1, 120, 20),
            entry(0, 170, 50)
        ])
    );

    // Both members were scored for the first time today: moves from nothing into their segment.
    let moves = data["segmentTransitionCounts"].as_array().unwrap();
    let segments: Vec<(String, i64)> = data["segmentCounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["count"].as_i64().unwrap() > 0)
        .map(|c| {
            (
                c["segment"].as_str().unwrap().to_owned(),
                c["count"].as_i64().unwrap(),
            )
        })
        .collect();
    let mut moved: Vec<(String, i64)> = moves
        .iter()
        .map(|m| {
            assert_eq!((&m["day"], &m["from"]), (&json!(day(0)), &Value::Null), "{m}");
            (m["to"].as_str().unwrap().to_owned(), m["count"].as_i64().unwrap())
        })
        .collect();
    moved.sort();
    let mut expected = segments;
    expected.sort();
    assert_eq!(moved, expected);
    assert_eq!(moved.iter().map(|(_, n)| n).sum::<i64>(), 2);

    // The window is checked and named in the error.
    let reply = stack
        .query
        .graphql(
            Some(&stack.keys.analyst),
            "query($org: ID!) { liabilityHistory(orgId: $org, days: 0) { day } }",
            json!({"org": ORG}),
        )
        .await;
    assert_eq!(reply.error_codes(), ["BAD_USER_INPUT"]);
    assert_eq!(
        reply.first_error(),
        Some("days: must be between 1 and 731 (got 0)")
    );
    stack.cleanup().await;
}
