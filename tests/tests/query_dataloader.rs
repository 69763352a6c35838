//! No N+1: a page of members with every member-level read model (balance, tier, RFM, stamp
//! cards, affordable rewards, leaderboard ranks, tier and segment history) costs the same
//! number of SQL statements for 3 members as for 60, and a storefront's member card one
//! statement besides its history. Counted by the query service's `Db`, through which every
//! statement goes.

mod query_support;

use std::sync::Arc;

use futures::future::join_all;
use query_service::auth::Caller;
use query_service::db::Db;
use query_service::graphql::Schemas;
use query_service::live::LiveFeed;
use query_support::{Stack, ORG};
use serde_json::json;

const PAGE_WITH_EVERYTHING: &str = r#"
query($org: ID!, $first: Int) {
  members(orgId: $org, first: $first) {
    edges { node {
      memberId externalId
      balance { points lifetimeEarned nextExpiry { points date } }
      tier { name multiplierBps qualifyingPoints nextTier pointsToNext }
      rfm { r f m segment }
      stampCards { cardId name stamps }
      affordableRewards { rewardId }
      leaderboardRanks { period rank points }
      tierHistory { change toTier }
      segmentHistory { to member { memberId } }
    } }
  }
}"#;

#[tokio::test]
async fn a_page_of_members_costs_a_constant_number_of_statements() {
    let stack = Stack::start_without_eager_rfm().await;
    let mut members = Vec::new();
    for chunk in (0..60).collect::<Vec<i64>>().chunks(10) {
        members.extend(
            join_all(chunk.iter().map(|i| {
                let stack = &stack;
                async move {
                    let member = stack.enroll(&format!("card-{i}"), None).await;
                    stack
                        .purchase(member, &format!("rcpt-{i}"), 1_000 + 100 * i)
                        .await;
                    member
                }
            }))
            .await,
        );
    }
    stack.wait_for_balance(members[59], 69).await;
    let (db, schemas) = counted_schemas(&stack).await;
    let analyst = key(&stack, &stack.keys.analyst).await;

    let mut statements = Vec::new();
    for first in [3, 60] {
        let before = db.statements();
        let response = schemas
            .execute_json(
                Caller::Key(analyst.clone()),
                PAGE_WITH_EVERYTHING,
                json!({"org": ORG, "first": first}),
            )
            .await;
        assert!(response.get("errors").is_none(), "{response:#}");
        let edges = response["data"]["members"]["edges"].as_array().unwrap();
        assert_eq!(edges.len(), first);
        // The loaders answered for every member, not just some.
        for edge in edges {
            let node = &edge["node"];
            assert!(node["balance"]["points"].as_i64().unwrap() >= 10, "{node}");
            assert!(!node["rfm"].is_null(), "{node}");
            assert_eq!(node["stampCards"][0]["stamps"], 1, "{node}");
            assert_eq!(node["leaderboardRanks"].as_array().unwrap().len(), 3, "{node}");
            assert_eq!(
                node["segmentHistory"][0]["member"]["memberId"], node["memberId"],
                "{node}"
            );
        }
        statements.push(db.statements() - before);
    }
    assert_eq!(
        statements[0], statements[1],
        "statements for 3 and for 60 members: {statements:?}"
    );
    // One for the page, one for every read model of its members.
    assert_eq!(statements[1], 2, "{statements:?}");

    stack.cleanup().await;
}

#[tokio::test]
async fn a_storefront_member_card_costs_one_statement_and_one_for_its_history() {
    let stack = Stack::start_without_eager_rfm().await;
    let member = stack.enroll("card-1", Some("Ada")).await;
    stack.purchase(member, "rcpt-1", 2_500).await;
    let other = stack.enroll("card-2", None).await;
    stack.purchase(other, "rcpt-2", 1_000).await;
    stack.wait_for_balance(other, 10).await;
    stack.wait_for_balance(member, 25).await;
    let (db, schemas) = counted_schemas(&stack).await;
    let storefront = key(&stack, &stack.keys.storefront).await;
    let before = db.statements();
    let response = schemas
        .execute_json(
            Caller::Key(storefront),
            loadgen::MEMBER_QUERY,
            json!({"orgId": ORG, "memberId": member.to_string()}),
        )
        .await;
    let statements = db.statements() - before;
    assert!(response.get("errors").is_none(), "{response:#}");
    let card = &response["data"]["member"];
    assert_eq!(card["memberId"], member.to_string(), "{card:#}");
    assert_eq!(card["displayName"], "Ada", "{card:#}");
    assert_eq!(card["balance"]["points"], 25, "{card:#}");
    assert!(card["tier"]["name"].is_string(), "{card:#}");
    assert_eq!(card["rfm"]["frequency"], 1, "{card:#}");
    assert_eq!(card["stampCards"][0]["stamps"], 1, "{card:#}");
    // Newest first: the stamp, the purchase, the enrolment.
    let history = card["history"]["nodes"].as_array().unwrap();
    let types: Vec<&str> = history.iter().map(|n| n["eventType"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["StampCollected", "PurchaseRecorded", "MemberEnrolled"],
        "{card:#}"
    );
    assert_eq!(history[1]["balanceAfter"], 25, "{card:#}");
    // Ada (25 points) leads every board of the org, ahead of the other member's 10.
    let ranks = card["leaderboardRanks"].as_array().unwrap();
    assert_eq!(ranks.len(), 3, "{card:#}");
    assert!(
        ranks.iter().all(|rank| rank["rank"] == 1 && rank["points"] == 25),
        "{card:#}"
    );
    assert_eq!(statements, 2, "the card and its history");

    // A member the org does not have: null, from that one statement alone.
    let before = db.statements();
    let storefront = key(&stack, &stack.keys.storefront).await;
    let response = schemas
        .execute_json(
            Caller::Key(storefront),
            loadgen::MEMBER_QUERY,
            json!({"orgId": ORG, "memberId": uuid::Uuid::new_v4().to_string()}),
        )
        .await;
    assert!(response.get("errors").is_none(), "{response:#}");
    assert!(response["data"]["member"].is_null(), "{response:#}");
    assert_eq!(
        db.statements() - before,
        1,
        "one statement for a member that does not exist"
    );

    stack.cleanup().await;
}

/// The org's RFM scored, and a schema over a `Db` that counts the statements it runs.
async fn counted_schemas(stack: &Stack) -> (Db, Schemas) {
    projector::rfm::recompute(stack.db.pool(), "rm", ORG, chrono::Utc::now())
        .await
        .unwrap();
    let db = Db::new(stack.db.pool().clone());
    let schemas = Schemas::new(
        db.clone(),
        Arc::new(LiveFeed::default()),
        query_service::Limits::default(),
    );
    (db, schemas)
}

async fn key(stack: &Stack, secret: &str) -> common::keys::ApiKey {
    common::keys::authenticate(stack.db.pool(), secret)
        .await
        .unwrap()
        .unwrap()
}
