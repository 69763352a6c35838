//! Storefront identity (SPEC §10) end to end: publishable keys and signing secrets created,
//! listed and revoked with the `keys` CLI and the admin API; secrets shown once and never
//! stored; several active at once; a revoked secret or publishable key refused by the other
//! services within a second (their caches listen for the change); and the command API letting
//! a customer token redeem for its own member only.

mod query_support;

use std::time::{Duration, Instant};

use clap::Parser as _;
use loyalty_client::customer_token::{sign, CustomerToken};
use loyalty_tests::{create_signing_secret, TestDb, TEST_PEPPER};
use query_support::{Stack, ORG};
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

/// The longest a revocation may take to reach another process (SPEC §10, issue 14).
const REVOCATION_DEADLINE: Duration = Duration::from_secs(1);

const ME: &str = "query($org: ID!) { me(orgId: $org) { balance { points } } }";

/// Runs `command-service <args>` in this process; returns what it printed.
async fn cli(db: &TestDb, args: &[&str]) -> String {
    let mut argv = vec!["command-service"];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--database-url", db.url(), "--secrets-pepper", TEST_PEPPER]);
    let mut out = Vec::new();
    command_service::Cli::try_parse_from(&argv)
        .unwrap_or_else(|error| panic!("{argv:?}: {error}"))
        .execute_to(&mut out)
        .await
        .unwrap_or_else(|error| panic!("{argv:?}: {error:#}"));
    String::from_utf8(out).expect("UTF-8 output")
}

fn last_line(output: &str) -> &str {
    output.lines().last().unwrap_or_default()
}

fn token(secret: &str, subject: &str) -> String {
    sign(
        &CustomerToken::new(ORG, subject, Duration::from_secs(900)),
        secret,
    )
}

/// Asks `me` until `refused` holds for the reply; returns the reply and how long it took.
async fn until_refused(
    stack: &Stack,
    key: &str,
    token: &str,
    refused: impl Fn(&loyalty_tests::GraphqlReply) -> bool,
) -> (loyalty_tests::GraphqlReply, Duration) {
    let started = Instant::now();
    loop {
        let reply = stack
            .query
            .graphql_as_customer(key, Some(token), ME, json!({"org": ORG}))
            .await;
        if refused(&reply) || started.elapsed() > REVOCATION_DEADLINE {
            return (reply, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_keys_cli_creates_lists_and_revokes_publishable_keys_and_signing_secrets() {
    let stack = Stack::start().await;
    let db = &stack.db;

    let output = cli(db, &["keys", "create", "--org", ORG, "--role", "publishable"]).await;
    let key = last_line(&output);
    assert!(key.starts_with("lk_publishable_"), "{output}");
    let found = common::keys::authenticate(db.pool(), key)
        .await
        .unwrap()
        .expect("the key works");
    assert_eq!(
        (found.org_id.as_str(), found.role),
        (ORG, common::keys::Role::Publishable)
    );
    let listing = cli(db, &["keys", "list", "--org", ORG]).await;
    assert!(listing.contains(&found.key_id.to_string()), "{listing}");
    assert!(!listing.contains(key), "a listing never shows a key: {listing}");

    let output = cli(db, &["keys", "signing-secret", "create", "--org", ORG]).await;
    let secret = last_line(&output).to_owned();
    assert!(secret.starts_with("lks_"), "{output}");
    let listing = cli(db, &["keys", "signing-secret", "list", "--org", ORG]).await;
    assert!(
        !listing.contains(&secret),
        "a listing never shows a secret: {listing}"
    );
    let fingerprint = common::signing_secrets::fingerprint(&secret);
    let row = listing
        .lines()
        .find(|line| line.contains(&fingerprint))
        .unwrap_or_else(|| panic!("no secret with fingerprint {fingerprint}: {listing}"));
    assert!(row.ends_with(" -"), "a new secret is active: {row}");
    let secret_id = row.split_whitespace().next().unwrap().to_owned();

    // The printed secret signs tokens the query service accepts, with the printed key.
    let member = stack.enroll("card-1", None).await;
    stack.purchase(member, "rcpt-1", 1_500).await;
    stack.wait_for_balance(member, 15).await;
    let customer = token(&secret, "card-1");
    let reply = stack
        .query
        .graphql_as_customer(key, Some(&customer), ME, json!({"org": ORG}))
        .await;
    assert_eq!(reply.data()["me"]["balance"]["points"], 15);

    let output = cli(
        db,
        &["keys", "signing-secret", "revoke", "--secret-id", &secret_id],
    )
    .await;
    assert!(output.contains(&secret_id), "{output}");
    let listing = cli(db, &["keys", "signing-secret", "list", "--org", ORG]).await;
    assert!(
        !listing
            .lines()
            .any(|line| line.contains(&fingerprint) && line.ends_with(" -")),
        "{listing}"
    );
    let (reply, _) = until_refused(&stack, key, &customer, |reply| reply.status == 401).await;
    assert_eq!(
        reply.body["errors"][0]["extensions"]["reason"], "revoked_secret",
        "{:#}",
        reply.body
    );

    stack.cleanup().await;
}

#[tokio::test]
async fn the_admin_api_shows_a_secret_once_never_stores_it_and_rotates_without_downtime() {
    let stack = Stack::start().await;
    let admin = stack.commands.client(&stack.keys.admin);
    let member = stack.enroll("card-1", None).await;
    stack.purchase(member, "rcpt-1", 2_000).await;
    stack.wait_for_balance(member, 20).await;

    let created = admin
        .post(&format!("/v1/orgs/{ORG}/signing-secrets"), "secret-1", &json!({}))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let first = created.body["secret"].as_str().unwrap().to_owned();
    let first_id = created.body["secret_id"].as_str().unwrap().to_owned();
    assert_eq!(
        created.body["fingerprint"],
        common::signing_secrets::fingerprint(&first)
    );
    // A retry gets the same secret; another request another one.
    let again = admin
        .post(&format!("/v1/orgs/{ORG}/signing-secrets"), "secret-1", &json!({}))
        .await;
    assert_eq!(
        (again.status, again.body["secret"].as_str()),
        (201, Some(first.as_str()))
    );
    let second = admin
        .post(&format!("/v1/orgs/{ORG}/signing-secrets"), "secret-2", &json!({}))
        .await;
    let second = second.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(first, second);

    // Listed without the secrets; neither is anywhere in the database.
    let listed = admin.get(&format!("/v1/orgs/{ORG}/signing-secrets")).await;
    assert_eq!(
        listed.body["signing_secrets"].as_array().map(Vec::len),
        Some(2),
        "{}",
        listed.text
    );
    assert!(!listed.text.contains(&first) && !listed.text.contains(&second));
    for secret in [&first, &second] {
        assert_eq!(
            tables_containing(&stack, &secret[4..]).await,
            Vec::<String>::new()
        );
    }

    // Both are active: tokens of either are accepted.
    let publishable = admin
        .post(&format!("/v1/orgs/{ORG}/publishable-keys"), "pk-1", &json!({}))
        .await;
    assert_eq!(publishable.status, 201, "{}", publishable.text);
    let key = publishable.body["key"].as_str().unwrap().to_owned();
    let (old_token, new_token) = (token(&first, "card-1"), token(&second, "card-1"));
    for customer in [&old_token, &new_token] {
        let reply = stack
            .query
            .graphql_as_customer(&key, Some(customer), ME, json!({"org": ORG}))
            .await;
        assert_eq!(reply.data()["me"]["balance"]["points"], 20);
    }

    // Revoking the first refuses its tokens within the deadline; the second keeps working.
    let revoked = admin
        .post(
            &format!("/v1/orgs/{ORG}/signing-secrets/{first_id}/revoke"),
            "revoke-1",
            &json!({}),
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    assert!(revoked.body["revoked_at"].is_string());
    let (reply, took) = until_refused(&stack, &key, &old_token, |reply| reply.status == 401).await;
    assert_eq!(
        reply.error_codes(),
        ["INVALID_CUSTOMER_TOKEN"],
        "{:#} after {took:?}",
        reply.body
    );
    assert_eq!(reply.body["errors"][0]["extensions"]["reason"], "revoked_secret");
    assert!(reply.body["data"].is_null());
    let reply = stack
        .query
        .graphql_as_customer(&key, Some(&new_token), ME, json!({"org": ORG}))
        .await;
    assert_eq!(reply.data()["me"]["balance"]["points"], 20);

    // Revoking the publishable key refuses the widget within the deadline too.
    let key_id = publishable.body["key_id"].as_str().unwrap();
    let listed = admin.get(&format!("/v1/orgs/{ORG}/publishable-keys")).await;
    assert!(
        listed.text.contains(key_id) && !listed.text.contains(&key),
        "{}",
        listed.text
    );
    let revoked = admin
        .post(
            &format!("/v1/orgs/{ORG}/publishable-keys/{key_id}/revoke"),
            "revoke-2",
            &json!({}),
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    let (reply, took) = until_refused(&stack, &key, &new_token, |reply| reply.status == 401).await;
    assert_eq!(
        reply.error_codes(),
        ["UNAUTHENTICATED"],
        "{:#} after {took:?}",
        reply.body
    );

    // Admin keys of the org only.
    for other in [&stack.keys.pos, &stack.keys.storefront] {
        let answer = stack
            .commands
            .client(other)
            .post(&format!("/v1/orgs/{ORG}/signing-secrets"), "nope", &json!({}))
            .await;
        assert_eq!((answer.status, answer.error_code()), (403, Some("forbidden")));
    }
    let unknown = admin
        .post(
            &format!("/v1/orgs/{ORG}/signing-secrets/{}/revoke", Uuid::new_v4()),
            "revoke-3",
            &json!({}),
        )
        .await;
    assert_eq!((unknown.status, unknown.error_code()), (404, Some("not_found")));

    stack.cleanup().await;
}

/// The tables of the database (every schema) with a row whose text contains `needle`.
async fn tables_containing(stack: &Stack, needle: &str) -> Vec<String> {
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema, table_name FROM information_schema.tables \
         WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')",
    )
    .fetch_all(stack.db.pool())
    .await
    .unwrap();
    let mut found = Vec::new();
    for (schema, table) in tables {
        let hits: i64 = sqlx::query_scalar(&format!(
            r#"SELECT count(*) FROM "{schema}"."{table}" t WHERE t::text LIKE '%' || $1 || '%'"#
        ))
        .bind(needle)
        .fetch_one(stack.db.pool())
        .await
        .unwrap();
        if hits > 0 {
            found.push(format!("{schema}.{table}"));
        }
    }
    found
}

#[tokio::test]
async fn a_customer_token_redeems_on_the_command_api_for_its_own_member_only() {
    let stack = Stack::start().await;
    let secret = create_signing_secret(&stack.db, ORG).await;
    let own = stack.enroll("card-1", None).await;
    let other = stack.enroll("card-2", None).await;
    for (member, receipt) in [(own, "rcpt-1"), (other, "rcpt-2")] {
        stack.purchase(member, receipt, 5_000).await;
    }
    let customer = stack
        .commands
        .client(&stack.keys.publishable)
        .typed()
        .with_customer_token(token(&secret, "card-1"));
    let redeem = |path: String, key: &'static str| {
        let customer = customer.clone();
        async move {
            customer
                .send(
                    Method::POST,
                    &path,
                    Some(key),
                    Some(&json!({"redemption_id": key, "reward_id": "free-coffee"})),
                )
                .await
                .unwrap()
        }
    };

    let answer = redeem(format!("/v1/orgs/{ORG}/members/{own}/redemptions"), "r-own").await;
    assert_eq!(
        (answer.status, &answer.body["balance"]),
        (200, &json!(40)),
        "{}",
        answer.text
    );
    let answer = redeem(
        format!("/v1/orgs/{ORG}/members/by-external-id/card-1/redemptions"),
        "r-own-2",
    )
    .await;
    assert_eq!(
        (answer.status, &answer.body["balance"]),
        (200, &json!(30)),
        "{}",
        answer.text
    );

    // Another member, an unknown one, a malformed one: one answer, nothing recorded.
    let events_before = event_count(&stack).await;
    let mut refusals = Vec::new();
    for path in [
        format!("/v1/orgs/{ORG}/members/{other}/redemptions"),
        format!("/v1/orgs/{ORG}/members/{}/redemptions", Uuid::new_v4()),
        format!("/v1/orgs/{ORG}/members/by-external-id/card-2/redemptions"),
        format!("/v1/orgs/{ORG}/members/by-external-id/nobody/redemptions"),
    ] {
        let answer = redeem(path.clone(), "r-steal").await;
        assert_eq!(answer.status, 403, "{path}: {}", answer.text);
        refusals.push(answer.body["error"].clone());
    }
    assert!(
        refusals.windows(2).all(|pair| pair[0] == pair[1]),
        "{refusals:#?}"
    );
    assert_eq!(refusals[0]["code"], "not_your_member");
    assert_eq!(event_count(&stack).await, events_before);

    // Nothing else: no purchases, no reads, and no redemptions without a valid token.
    let answer = customer
        .send(
            Method::POST,
            &format!("/v1/orgs/{ORG}/members/{own}/purchases"),
            Some("p-1"),
            Some(&json!({"transaction_id": "t", "location_id": "main-street", "amount_minor": 100, "currency": "EUR", "occurred_at": chrono::Utc::now()})),
        )
        .await
        .unwrap();
    assert_eq!(
        (answer.status, answer.error_code()),
        (403, Some("forbidden")),
        "{}",
        answer.text
    );
    let answer = customer
        .send(Method::GET, &format!("/v1/orgs/{ORG}/members/{own}"), None, None)
        .await
        .unwrap();
    assert_eq!(answer.status, 403, "{}", answer.text);
    let expired = sign(
        &CustomerToken::new(ORG, "card-1", Duration::from_secs(60))
            .issued_at(chrono::Utc::now() - chrono::Duration::hours(1)),
        &secret,
    );
    let answer = customer
        .with_customer_token(expired)
        .send(
            Method::POST,
            &format!("/v1/orgs/{ORG}/members/{own}/redemptions"),
            Some("r-x"),
            Some(&json!({"redemption_id": "r-x", "reward_id": "free-coffee"})),
        )
        .await
        .unwrap();
    assert_eq!(
        (answer.status, answer.error_code()),
        (401, Some("invalid_customer_token")),
        "{}",
        answer.text
    );
    let alone = stack.commands.client(&stack.keys.publishable);
    let answer = alone
        .post(
            &format!("/v1/orgs/{ORG}/members/{own}/redemptions"),
            "r-y",
            &json!({"redemption_id": "r-y", "reward_id": "free-coffee"}),
        )
        .await;
    assert_eq!(
        (answer.status, answer.error_code()),
        (403, Some("forbidden")),
        "{}",
        answer.text
    );
    assert_eq!(event_count(&stack).await, events_before);

    stack.cleanup().await;
}

async fn event_count(stack: &Stack) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(stack.db.pool())
        .await
        .unwrap()
}
