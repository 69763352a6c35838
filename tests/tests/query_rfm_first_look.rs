//! "The first look is right" (issue 13): a member who just purchased shows RFM metrics at once,
//! and scores as soon as the org has any. The projector scores every org at start-up and a new
//! org right after its first purchases (no 15-minute wait: the schedule is off here); a member
//! who purchases after the last scoring gets live metrics and provisional scores at once.

mod query_support;

use std::time::Duration;

use loyalty_tests::{projector_config, spawn_projector_with};
use query_support::{Stack, ORG};
use serde_json::{json, Value};
use uuid::Uuid;

const RFM: &str = "query($org: ID!, $id: ID!) { member(orgId: $org, memberId: $id) {
    rfm { recencyDays frequency monetaryMinor r f m segment provisional } } }";

async fn rfm(stack: &Stack, member: Uuid) -> Value {
    let reply = stack
        .query
        .graphql(Some(&stack.keys.analyst), RFM, json!({"org": ORG, "id": member}))
        .await;
    reply.data()["member"]["rfm"].clone()
}

async fn rfm_until(stack: &Stack, member: Uuid, accept: impl Fn(&Value) -> bool) -> Value {
    let data = stack
        .query
        .graphql_until(
            &stack.keys.analyst,
            RFM,
            json!({"org": ORG, "id": member}),
            Duration::from_secs(20),
            |data| accept(&data["member"]["rfm"]),
        )
        .await;
    data["member"]["rfm"].clone()
}

#[tokio::test]
async fn scores_come_at_start_up_for_a_new_org_and_provisionally_for_a_new_customer() {
    // The harness projector never scores by itself: the state of a newcomer's org today.
    let stack = Stack::start().await;
    let regular = stack.enroll("card-1", None).await;
    let occasional = stack.enroll("card-2", None).await;
    for (member, receipt, amount) in [
        (regular, "r-1", 3_000),
        (regular, "r-2", 2_000),
        (occasional, "o-1", 1_000),
    ] {
        stack.purchase(member, receipt, amount).await;
    }
    stack.wait_for_balance(regular, 50).await;
    stack.wait_for_balance(occasional, 10).await;
    assert_eq!(rfm(&stack, regular).await, Value::Null, "never scored");

    // A projector as deployed (eager scoring on, the 15-minute schedule off): start-up scores.
    let Stack {
        db,
        nats,
        commands,
        projector,
        query,
        keys,
    } = stack;
    projector.stop().await.unwrap();
    let mut config = projector_config(&db, &nats, "projector");
    config.rfm_eager = true;
    let projector = spawn_projector_with(config.clone()).await;
    let stack = Stack {
        db,
        nats,
        commands,
        projector,
        query,
        keys,
    };
    let scored = rfm_until(&stack, regular, |rfm| !rfm.is_null()).await;
    assert_eq!(
        scored,
        json!({"recencyDays": 0, "frequency": 2, "monetaryMinor": 5_000, "r": 1, "f": 3, "m": 3,
               "segment": "At Risk", "provisional": false}),
        "two members, equally recent: R = 1 + 5·0/2; the regular buys more often and more"
    );
    assert_eq!(rfm(&stack, occasional).await["f"], 1);

    // A customer who purchases now: metrics at once, scores ranked against the last scoring.
    let newcomer = stack.enroll("card-3", None).await;
    stack.purchase(newcomer, "n-1", 9_900).await;
    stack.wait_for_balance(newcomer, 99).await;
    let first_look = rfm(&stack, newcomer).await;
    assert_eq!(
        first_look,
        json!({"recencyDays": 0, "frequency": 1, "monetaryMinor": 9_900,
               "r": 1, "f": 1, "m": 4, "segment": "Lost", "provisional": true}),
        "ranked against the 2 scored members (N = 3 with it): none less recent, none with fewer \
         purchases, 2 who spent less: m = 1 + floor(5·2/3)"
    );
    // The regular's metrics are live too (a purchase after the scoring counts at once).
    stack.purchase(regular, "r-3", 500).await;
    stack.wait_for_balance(regular, 55).await;
    let live = rfm(&stack, regular).await;
    assert_eq!(
        (&live["frequency"], &live["monetaryMinor"]),
        (&json!(3), &json!(5_500))
    );

    // A new org's first customers are scored right after they arrive, without a restart.
    let globex = loyalty_tests::OrgKeys::create(&stack.db, "globex").await;
    let admin = stack.commands.client(&globex.admin);
    let setup = [
        (
            "/v1/orgs/globex/program",
            reqwest::Method::PUT,
            json!({"currency": "EUR", "earn_rate": 1}),
        ),
        (
            "/v1/orgs/globex/locations",
            reqwest::Method::POST,
            json!({"location_id": "hq", "name": "HQ"}),
        ),
    ];
    for (path, method, body) in setup {
        let answer = admin
            .send(method, path, Some(&Uuid::new_v4().to_string()), Some(&body))
            .await;
        assert!(answer.is_success(), "{path}: {}", answer.text);
    }
    let pos = stack.commands.client(&globex.pos);
    let enrolled = pos
        .post(
            "/v1/orgs/globex/members",
            "g-enrol",
            &json!({"external_id": "g-1"}),
        )
        .await;
    let member: Uuid = enrolled.body["member_id"].as_str().unwrap().parse().unwrap();
    let answer = pos
        .post(
            &format!("/v1/orgs/globex/members/{member}/purchases"),
            "g-buy",
            &json!({"transaction_id": "g-t", "location_id": "hq", "amount_minor": 1_200,
                    "currency": "EUR", "occurred_at": chrono::Utc::now()}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let data = stack
        .query
        .graphql_until(
            &globex.analyst,
            "query($id: ID!) { member(orgId: \"globex\", memberId: $id) { rfm { frequency provisional } } }",
            json!({"id": member}),
            Duration::from_secs(20),
            |data| data["member"]["rfm"]["provisional"] == false,
        )
        .await;
    assert_eq!(data["member"]["rfm"]["frequency"], 1);

    stack.cleanup().await;
}
