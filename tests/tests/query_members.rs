//! Analysts' member lists: keyset pagination lists every member exactly once while others
//! enrol; filters by tier, balance and RFM segment; segment counts, the R × F grid and
//! segment transitions agree with each other.

mod query_support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::future::join_all;
use query_support::{Stack, ORG};
use serde_json::{json, Value};
use uuid::Uuid;

const PAGE: &str = r#"
query($org: ID!, $first: Int, $after: String, $order: MemberOrder!, $filter: MemberFilter) {
  members(orgId: $org, first: $first, after: $after, orderBy: $order, filter: $filter) {
    edges { cursor node { memberId enrolledAt balance { points } } }
    pageInfo { hasNextPage endCursor }
  }
}"#;

async fn enroll_many(stack: &Stack, prefix: &str, count: usize) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for chunk in (0..count).collect::<Vec<_>>().chunks(8) {
        let enrolled = join_all(chunk.iter().map(|i| async move {
            let external_id = format!("{prefix}-{i}");
            stack.enroll(&external_id, None).await
        }))
        .await;
        ids.extend(enrolled);
    }
    ids
}

/// Every page of a member list, in order: (member id, the page's node).
async fn all_pages(stack: &Stack, order: &str, filter: Value, first: i64) -> Vec<(Uuid, Value)> {
    let mut after = Value::Null;
    let mut listed = Vec::new();
    loop {
        let reply = stack
            .query
            .graphql(
                Some(&stack.keys.analyst),
                PAGE,
                json!({"org": ORG, "first": first, "after": after, "order": order, "filter": filter}),
            )
            .await;
        let members = &reply.data()["members"];
        let edges = members["edges"].as_array().unwrap();
        assert!(edges.len() as i64 <= first);
        for edge in edges {
            let node = edge["node"].clone();
            listed.push((node["memberId"].as_str().unwrap().parse().unwrap(), node));
        }
        if members["pageInfo"]["hasNextPage"] != true {
            return listed;
        }
        after = members["pageInfo"]["endCursor"].clone();
    }
}

async fn wait_for_members(stack: &Stack, count: usize) {
    stack
        .query
        .graphql_until(
            &stack.keys.analyst,
            "query($org: ID!) { members(orgId: $org, first: 100) { edges { cursor } } }",
            json!({"org": ORG}),
            Duration::from_secs(20),
            |data| {
                data["members"]["edges"]
                    .as_array()
                    .is_some_and(|e| e.len() == count)
            },
        )
        .await;
}

#[tokio::test]
async fn paging_lists_every_member_exactly_once_while_members_enrol() {
    let stack = Stack::start().await;
    let existing = enroll_many(&stack, "early", 45).await;
    // Distinct balances for some, ties at 0 for the rest.
    for (i, member) in existing.iter().take(12).enumerate() {
        stack
            .purchase(*member, &format!("rcpt-{i}"), 100 * (i as i64 % 5 + 1))
            .await;
    }
    wait_for_members(&stack, existing.len()).await;
    stack.wait_for_balance(existing[11], 2).await;

    let mut enrolled_before: HashSet<Uuid> = existing.iter().copied().collect();
    for order in ["ENROLLED_AT", "POINTS_DESC"] {
        // Pages are read while another 24 members enrol.
        let prefix = format!("late-{order}");
        let (listed, late) = tokio::join!(
            all_pages(&stack, order, Value::Null, 4),
            enroll_many(&stack, &prefix, 24)
        );
        let mut seen = HashSet::new();
        for (id, _) in &listed {
            assert!(seen.insert(*id), "{order}: member {id} listed twice");
        }
        for id in &enrolled_before {
            assert!(seen.contains(id), "{order}: member {id} never listed");
        }
        // Members enrolled meanwhile may or may not be listed (once, if so); nothing else is.
        let late: HashSet<Uuid> = late.into_iter().collect();
        assert!(seen
            .iter()
            .all(|id| enrolled_before.contains(id) || late.contains(id)));
        enrolled_before.extend(late);
        wait_for_members(&stack, enrolled_before.len()).await;
        // The order holds across page boundaries.
        let keys: Vec<(String, i64)> = listed
            .iter()
            .map(|(_, node)| {
                (
                    node["enrolledAt"].as_str().unwrap().to_owned(),
                    node["balance"]["points"].as_i64().unwrap(),
                )
            })
            .collect();
        for pair in keys.windows(2) {
            match order {
                "ENROLLED_AT" => assert!(pair[0].0 <= pair[1].0, "{order}: {pair:?}"),
                _ => assert!(pair[0].1 >= pair[1].1, "{order}: {pair:?}"),
            }
        }
    }

    // A cursor of one order is refused by the other.
    let first_page = stack
        .query
        .graphql(
            Some(&stack.keys.analyst),
            PAGE,
            json!({"org": ORG, "first": 1, "order": "POINTS_DESC"}),
        )
        .await;
    let cursor = first_page.data()["members"]["pageInfo"]["endCursor"].clone();
    let reply = stack
        .query
        .graphql(
            Some(&stack.keys.analyst),
            PAGE,
            json!({"org": ORG, "first": 1, "after": cursor, "order": "ENROLLED_AT"}),
        )
        .await;
    assert_eq!(
        reply.first_error(),
        Some("after: the cursor belongs to a different `orderBy`")
    );

    stack.cleanup().await;
}

#[tokio::test]
async fn filters_segments_and_transitions_agree() {
    let stack = Stack::start().await;
    let members = enroll_many(&stack, "m", 6).await;
    // Balances 600 (Silver after the purchase), 120, 80, 40, 10; the last member never buys.
    let amounts = [60_000, 12_000, 8_000, 4_000, 1_000];
    for (i, (member, amount)) in members.iter().zip(amounts).enumerate() {
        stack.purchase(*member, &format!("rcpt-{i}"), amount).await;
    }
    stack.purchase(members[0], "rcpt-again", 1_000).await;
    stack.wait_for_balance(members[0], 612).await;
    for (member, amount) in members.iter().zip(amounts).skip(1) {
        stack.wait_for_balance(*member, amount / 100).await;
    }
    let before_scoring = chrono::Utc::now();
    projector::rfm::recompute(stack.db.pool(), "rm", ORG, chrono::Utc::now())
        .await
        .unwrap();

    let ids = |listed: Vec<(Uuid, Value)>| listed.into_iter().map(|(id, _)| id).collect::<HashSet<_>>();
    let silver = ids(all_pages(&stack, "ENROLLED_AT", json!({"tier": "Silver"}), 2).await);
    assert_eq!(silver, HashSet::from([members[0]]));
    let middle = ids(all_pages(
        &stack,
        "POINTS_DESC",
        json!({"minPoints": 40, "maxPoints": 120}),
        2,
    )
    .await);
    assert_eq!(middle, HashSet::from([members[1], members[2], members[3]]));

    let reply = stack
        .query
        .graphql(
            Some(&stack.keys.analyst),
            "query($org: ID!, $since: DateTime) {
               segmentCounts(orgId: $org) { segment count }
               rfmGrid(orgId: $org) { r f segment count }
               segmentTransitions(orgId: $org, since: $since, first: 100) {
                 edges { node { memberId from to member { rfm { segment } } } }
               }
             }",
            json!({"org": ORG, "since": before_scoring}),
        )
        .await;
    let data = reply.data();
    let counts: HashMap<String, i64> = data["segmentCounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["segment"].as_str().unwrap().to_owned(),
                c["count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(counts.len(), 11, "all 11 segments are listed");
    assert_eq!(
        counts.values().sum::<i64>(),
        5,
        "the five purchasing members are scored"
    );
    let grid = data["rfmGrid"].as_array().unwrap();
    assert_eq!(grid.len(), 25);
    for (segment, count) in &counts {
        let in_grid: i64 = grid
            .iter()
            .filter(|cell| cell["segment"] == segment.as_str())
            .map(|cell| cell["count"].as_i64().unwrap())
            .sum();
        assert_eq!(in_grid, *count, "{segment}");
    }
    // Each member's first scoring is a transition from nothing into its current segment.
    let transitions = data["segmentTransitions"]["edges"].as_array().unwrap();
    assert_eq!(transitions.len(), 5, "{transitions:#?}");
    for edge in transitions {
        let node = &edge["node"];
        assert!(node["from"].is_null(), "{node}");
        assert_eq!(node["to"], node["member"]["rfm"]["segment"], "{node}");
    }

    // The segment filter lists exactly the members counted in the segment.
    for (segment, count) in counts.iter().filter(|(_, count)| **count > 0) {
        let listed = all_pages(&stack, "ENROLLED_AT", json!({"segment": segment}), 2).await;
        assert_eq!(listed.len() as i64, *count, "{segment}");
    }
    let reply = stack
        .query
        .graphql(
            Some(&stack.keys.analyst),
            PAGE,
            json!({"org": ORG, "order": "ENROLLED_AT", "filter": {"segment": "Sleepers"}}),
        )
        .await;
    assert_eq!(reply.error_codes(), ["BAD_USER_INPUT"]);
    assert!(reply
        .first_error()
        .unwrap()
        .starts_with("filter.segment: unknown segment 'Sleepers'"));

    stack.cleanup().await;
}
