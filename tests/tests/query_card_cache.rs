//! The member card cache of the query service against the real chain: a card polled by a
//! storefront is answered from memory, and a purchase of that member, once projected, is on
//! the card within a second however long cards may otherwise be kept.

mod query_support;

use std::time::{Duration, Instant};

use query_support::{Stack, ORG};
use serde_json::{json, Value};
use uuid::Uuid;

const CARD: &str = "query Card($org: ID!, $id: ID!) {
  member(orgId: $org, memberId: $id) {
    displayName
    balance { points }
    history(first: 3) { nodes { eventType } }
  }
}";

async fn card(stack: &Stack, member: Uuid) -> Value {
    let reply = stack
        .query
        .graphql(
            Some(&stack.keys.storefront),
            CARD,
            json!({"org": ORG, "id": member}),
        )
        .await;
    assert_eq!(reply.first_error(), None, "{:?}", reply.data());
    reply.data()["member"].clone()
}

/// Renames `member` in the read model behind the services' backs (no event, so no
/// notification): what a card shows afterwards tells whether it was read again.
async fn rename_behind_the_cache(stack: &Stack, member: Uuid, name: &str) {
    sqlx::query("UPDATE rm.member_directory SET display_name = $1 WHERE org_id = $2 AND member_id = $3")
        .bind(name)
        .bind(ORG)
        .bind(member)
        .execute(stack.db.pool())
        .await
        .expect("renaming in the read model");
}

#[tokio::test]
async fn a_polled_card_comes_from_memory_until_the_projector_changes_that_member() {
    // Cards are kept for ten minutes unless the projector says otherwise.
    let stack = Stack::start_with(|config| config.card_cache_max_age_ms = 600_000).await;
    let ada = stack.enroll("card-ada", Some("Ada")).await;
    let bob = stack.enroll("card-bob", Some("Bob")).await;
    stack.purchase(ada, "rcpt-1", 1_000).await;
    stack.wait_for_balance(ada, 10).await;
    stack.wait_for_balance(bob, 0).await;

    // The first answers teach the cache which member the query reads and fill it.
    for member in [ada, bob] {
        for _ in 0..3 {
            card(&stack, member).await;
        }
    }
    rename_behind_the_cache(&stack, ada, "Renamed").await;
    rename_behind_the_cache(&stack, bob, "Renamed").await;
    let cached = card(&stack, ada).await;
    assert_eq!(cached["displayName"], "Ada", "served from memory: {cached}");
    assert_eq!(cached["balance"]["points"], 10, "{cached}");

    // Ada buys: once the purchase is projected, her card is read again, at once.
    stack.purchase(ada, "rcpt-2", 2_500).await;
    stack.wait_for_balance(ada, 35).await;
    let projected = Instant::now();
    let fresh = loop {
        let fresh = card(&stack, ada).await;
        if fresh["balance"]["points"] == 35 {
            break fresh;
        }
        assert!(
            projected.elapsed() < Duration::from_secs(1),
            "the purchase is not on the card a second after it was projected: {fresh}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(fresh["displayName"], "Renamed", "{fresh}");
    assert_eq!(
        fresh["history"]["nodes"][0]["eventType"], "PurchaseRecorded",
        "{fresh}"
    );

    // Bob's card did not change, so it was not read again.
    let untouched = card(&stack, bob).await;
    assert_eq!(untouched["displayName"], "Bob", "{untouched}");

    // Another caller asking the same never gets what was cached for the storefront key.
    let analyst = stack
        .query
        .graphql(Some(&stack.keys.analyst), CARD, json!({"org": ORG, "id": bob}))
        .await;
    assert_eq!(analyst.data()["member"]["displayName"], "Renamed");
    stack.cleanup().await;
}

#[tokio::test]
async fn with_the_cache_off_every_card_is_read_from_the_read_models() {
    let stack = Stack::start_with(|config| config.card_cache_members = 0).await;
    let ada = stack.enroll("card-ada", Some("Ada")).await;
    stack.wait_for_balance(ada, 0).await;
    for _ in 0..3 {
        card(&stack, ada).await;
    }
    rename_behind_the_cache(&stack, ada, "Renamed").await;
    assert_eq!(card(&stack, ada).await["displayName"], "Renamed");
    stack.cleanup().await;
}
