//! Who may read what: every top-level field (and the subscription) against every kind of
//! caller. Publishable keys read the public fields (program, leaderboards) of their org, and
//! with a customer token also that customer's member and `me`; storefront keys read
//! member-level fields and leaderboards of their org; analyst keys read everything of their org
//! but `me`; pos/admin keys, other orgs' keys and anonymous callers get an error and no data.
//! (What a customer token reads of members, field by field, is `query_customer_tokens.rs`.)

mod query_support;

use std::collections::BTreeSet;
use std::time::Duration;

use loyalty_client::customer_token::{sign, CustomerToken};
use loyalty_tests::OrgKeys as Keys;
use loyalty_tests::{create_signing_secret, GraphqlWs};
use query_support::{Stack, ORG};
use serde_json::{json, Value};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Access {
    Public,
    Member,
    Customer,
    Analyst,
}

/// Every top-level query field, its access level and a query selecting it.
const FIELDS: &[(&str, Access, &str)] = &[
    (
        "member",
        Access::Member,
        "member(orgId: $org, memberId: $id) { balance { points } }",
    ),
    ("me", Access::Customer, "me(orgId: $org) { memberId }"),
    (
        "leaderboard",
        Access::Public,
        "leaderboard(orgId: $org, period: ALL_TIME) { rank points }",
    ),
    ("program", Access::Public, "program(orgId: $org) { version }"),
    (
        "segmentCounts",
        Access::Analyst,
        "segmentCounts(orgId: $org) { segment count }",
    ),
    ("rfmGrid", Access::Analyst, "rfmGrid(orgId: $org) { r f count }"),
    (
        "tierDistribution",
        Access::Analyst,
        "tierDistribution(orgId: $org) { tier count }",
    ),
    ("liability", Access::Analyst, "liability(orgId: $org) { points }"),
    (
        "liabilityHistory",
        Access::Analyst,
        "liabilityHistory(orgId: $org, days: 3) { day points }",
    ),
    (
        "segmentTransitionCounts",
        Access::Analyst,
        "segmentTransitionCounts(orgId: $org) { day to count }",
    ),
    (
        "promotionStats",
        Access::Analyst,
        "promotionStats(orgId: $org) { promotionId uses }",
    ),
    (
        "members",
        Access::Analyst,
        "members(orgId: $org) { edges { node { memberId } } }",
    ),
    (
        "segmentTransitions",
        Access::Analyst,
        "segmentTransitions(orgId: $org) { edges { node { to } } }",
    ),
    (
        "achievementStats",
        Access::Analyst,
        "achievementStats(orgId: $org) { achievementId unlocked }",
    ),
    (
        "membersCloseToUnlocking",
        Access::Analyst,
        "membersCloseToUnlocking(orgId: $org, achievementId: \"a\") { memberId }",
    ),
    (
        "simulations",
        Access::Analyst,
        "simulations(orgId: $org) { simulationId }",
    ),
];

struct Caller {
    name: &'static str,
    key: Option<String>,
    /// A customer token sent with the key.
    token: Option<String>,
    /// What the caller may read of [`ORG`].
    reads: &'static [Access],
    refusal: &'static str,
}

/// A customer token for the member `card-1` of `org`, signed with `secret`.
fn token(org: &str, secret: &str) -> String {
    sign(
        &CustomerToken::new(org, "card-1", Duration::from_secs(900)),
        secret,
    )
}

fn callers(acme: &Keys, globex: &Keys, acme_secret: &str, globex_secret: &str) -> Vec<Caller> {
    use Access::*;
    let caller = |name, key: &String, reads, refusal| Caller {
        name,
        key: Some(key.clone()),
        token: None,
        reads,
        refusal,
    };
    let customer = |name, key: &String, token: String, reads| Caller {
        name,
        key: Some(key.clone()),
        token: Some(token),
        reads,
        refusal: "FORBIDDEN",
    };
    vec![
        caller(
            "acme storefront",
            &acme.storefront,
            &[Public, Member],
            "FORBIDDEN",
        ),
        caller(
            "acme analyst",
            &acme.analyst,
            &[Public, Member, Analyst],
            "FORBIDDEN",
        ),
        caller("acme publishable", &acme.publishable, &[Public], "FORBIDDEN"),
        customer(
            "acme customer",
            &acme.publishable,
            token(ORG, acme_secret),
            &[Public, Member, Customer],
        ),
        caller("acme pos", &acme.pos, &[], "FORBIDDEN"),
        caller("acme admin", &acme.admin, &[], "FORBIDDEN"),
        caller("globex storefront", &globex.storefront, &[], "FORBIDDEN"),
        caller("globex analyst", &globex.analyst, &[], "FORBIDDEN"),
        caller("globex publishable", &globex.publishable, &[], "FORBIDDEN"),
        customer(
            "globex customer",
            &globex.publishable,
            token("globex", globex_secret),
            &[],
        ),
        Caller {
            name: "anonymous",
            key: None,
            token: None,
            reads: &[],
            refusal: "UNAUTHENTICATED",
        },
    ]
}

fn allowed(caller: &Caller, access: Access) -> bool {
    caller.reads.contains(&access)
}

async fn ask(stack: &Stack, caller: &Caller, query: &str, variables: Value) -> loyalty_tests::GraphqlReply {
    match (&caller.key, &caller.token) {
        (Some(key), Some(token)) => {
            stack
                .query
                .graphql_as_customer(key, Some(token), query, variables)
                .await
        }
        (key, _) => stack.query.graphql(key.as_deref(), query, variables).await,
    }
}

#[tokio::test]
async fn every_field_is_guarded_by_role_and_org() {
    let stack = Stack::start().await;
    let member = stack.enroll("card-1", None).await;
    stack.purchase(member, "rcpt-1", 4_200).await;
    stack.wait_for_balance(member, 42).await;
    let globex = Keys::create(&stack.db, "globex").await;
    let acme_secret = create_signing_secret(&stack.db, ORG).await;
    let globex_secret = create_signing_secret(&stack.db, "globex").await;
    let variables = json!({"org": ORG, "id": member});

    // The matrix covers every top-level field the schema has.
    let schema = stack
        .query
        .graphql(None, "{ __schema { queryType { fields { name } } } }", json!({}))
        .await;
    let served: BTreeSet<&str> = schema.data()["__schema"]["queryType"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|field| field["name"].as_str().unwrap())
        .collect();
    let covered: BTreeSet<&str> = FIELDS.iter().map(|(name, ..)| *name).collect();
    assert_eq!(served, covered, "every top-level field needs a row in FIELDS");

    for caller in callers(&stack.keys, &globex, &acme_secret, &globex_secret) {
        for (field, access, selection) in FIELDS {
            let (query, variables) = if selection.contains("$id") {
                (
                    format!("query($org: ID!, $id: ID!) {{ {selection} }}"),
                    variables.clone(),
                )
            } else {
                (format!("query($org: ID!) {{ {selection} }}"), json!({"org": ORG}))
            };
            let reply = ask(&stack, &caller, &query, variables).await;
            let what = format!("{} reading {field}: {:#}", caller.name, reply.body);
            assert_eq!(reply.status, 200, "{what}");
            if allowed(&caller, *access) {
                let data = reply.data();
                assert!(!data[field].is_null(), "{what}");
            } else {
                assert_eq!(reply.error_codes(), [caller.refusal], "{what}");
                let data = &reply.body["data"];
                assert!(
                    data.is_null() || data[field].is_null(),
                    "no data may leak: {what}"
                );
            }
        }
    }

    // What an allowed key reads is its org's data.
    let reply = stack
        .query
        .graphql(
            Some(&stack.keys.storefront),
            "query($org: ID!, $id: ID!) { member(orgId: $org, memberId: $id) { balance { points } } }",
            variables.clone(),
        )
        .await;
    assert_eq!(reply.data()["member"]["balance"]["points"], 42);

    // Keys that are not keys never reach the schema.
    for header_key in ["lk_analyst_notarealkeynotarealkeynotareal", ""] {
        let reply = stack
            .query
            .graphql(Some(header_key), "{ __typename }", json!({}))
            .await;
        assert_eq!(reply.status, 401, "{:#}", reply.body);
        assert_eq!(reply.error_codes(), ["UNAUTHENTICATED"]);
        assert!(reply.body["data"].is_null());
    }

    stack.cleanup().await;
}

#[tokio::test]
async fn the_subscription_is_guarded_by_role_and_org() {
    let stack = Stack::start().await;
    let member = stack.enroll("card-1", None).await;
    let globex = Keys::create(&stack.db, "globex").await;
    let acme_secret = create_signing_secret(&stack.db, ORG).await;
    let globex_secret = create_signing_secret(&stack.db, "globex").await;
    let subscription = "subscription($org: ID!, $id: ID!) { memberUpdated(orgId: $org, memberId: $id, includeCurrent: true) { points } }";

    for caller in callers(&stack.keys, &globex, &acme_secret, &globex_secret) {
        let connected = match (&caller.key, &caller.token) {
            (Some(key), Some(token)) => {
                GraphqlWs::connect_as_customer(&stack.query.ws_url(), key, token).await
            }
            (key, _) => GraphqlWs::connect(&stack.query.ws_url(), key.as_deref()).await,
        };
        let mut ws = connected.unwrap_or_else(|error| panic!("{} cannot connect: {error}", caller.name));
        ws.subscribe("1", subscription, json!({"org": ORG, "id": member}))
            .await;
        let message: Value = ws
            .next_message(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{}: no answer to subscribe", caller.name));
        let what = format!("{}: {message:#}", caller.name);
        if allowed(&caller, Access::Member) {
            assert_eq!(message["type"], "next", "{what}");
            assert_eq!(message["payload"]["data"]["memberUpdated"]["points"], 0, "{what}");
        } else {
            // The guard's error is the subscription's one result: errors, no data.
            assert_eq!(message["type"], "next", "{what}");
            assert!(message["payload"]["data"].is_null(), "no data may leak: {what}");
            assert_eq!(
                message["payload"]["errors"][0]["extensions"]["code"], caller.refusal,
                "{what}"
            );
            let end = ws.next_message(Duration::from_secs(10)).await;
            assert_eq!(
                end.map(|m| m["type"].clone()),
                Some(json!("complete")),
                "{}",
                caller.name
            );
        }
    }

    let refused = GraphqlWs::connect(
        &stack.query.ws_url(),
        Some("lk_storefront_notarealkeynotarealkeynotare"),
    )
    .await
    .err()
    .expect("an unknown key cannot open a websocket");
    assert!(refused.contains("unknown or revoked API key"), "{refused}");

    stack.cleanup().await;
}
