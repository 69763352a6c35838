//! What a customer token reads (SPEC §10): every field of `Member`, taken from the schema
//! itself so that a new field is covered the day it is added, against every kind of token —
//! its own member, another member, a member that does not exist, another org, expired, signed
//! by a revoked secret, wrongly signed, living too long, and the publishable key alone. Only
//! the own member answers; every refusal is a clear error with no data, and another member
//! and a nonexistent one get the very same answer.

mod query_support;

use std::time::Duration;

use chrono::Utc;
use loyalty_client::customer_token::{sign, CustomerToken};
use loyalty_tests::{create_signing_secret, GraphqlReply, GraphqlWs, OrgKeys};
use query_support::{Stack, ORG};
use serde_json::{json, Value};
use uuid::Uuid;

const LIFETIME: Duration = Duration::from_secs(900);

/// A selection of every field of `Member`, from introspection: scalars as they are, objects
/// through `__typename` (which still runs the field's resolver and its guard).
async fn member_fields(stack: &Stack) -> Vec<(String, String)> {
    let reply = stack
        .query
        .graphql(
            None,
            r#"{ __type(name: "Member") { fields { name
                 args { name defaultValue type { kind } }
                 type { kind ofType { kind ofType { kind ofType { kind } } } } } } }"#,
            json!({}),
        )
        .await;
    let fields = reply.data()["__type"]["fields"].as_array().unwrap().clone();
    let names: Vec<&str> = fields.iter().filter_map(|field| field["name"].as_str()).collect();
    assert!(names.len() >= 14 && names.contains(&"balance"), "{names:?}");
    fields
        .iter()
        .map(|field| {
            let name = field["name"].as_str().unwrap().to_owned();
            for argument in field["args"].as_array().unwrap() {
                assert!(
                    argument["type"]["kind"] != "NON_NULL" || !argument["defaultValue"].is_null(),
                    "Member.{name} has a required argument: give this test a value for it"
                );
            }
            let mut ty = &field["type"];
            while matches!(ty["kind"].as_str(), Some("NON_NULL" | "LIST")) {
                ty = &ty["ofType"];
            }
            let selection = match ty["kind"].as_str() {
                Some("SCALAR" | "ENUM") => name.clone(),
                _ => format!("{name} {{ __typename }}"),
            };
            (name, selection)
        })
        .collect()
}

/// A way of asking, and what it must get.
struct Case {
    name: &'static str,
    key: String,
    token: Option<String>,
    member: Uuid,
    expect: Expect,
}

#[derive(Debug, Clone, PartialEq)]
enum Expect {
    Data,
    /// A refusal inside a 200 answer: the code and the message.
    Refused(&'static str, &'static str),
    /// The request refused before the schema: 401 with `INVALID_CUSTOMER_TOKEN` and this reason.
    BadToken(&'static str),
}

fn customer(org: &str, subject: &str, secret: &str) -> String {
    sign(&CustomerToken::new(org, subject, LIFETIME), secret)
}

#[tokio::test]
async fn a_customer_token_reads_every_member_field_of_its_own_member_and_nothing_else() {
    let stack = Stack::start().await;
    let own = stack.enroll("card-1", Some("Ann")).await;
    let other = stack.enroll("card-2", Some("Bob")).await;
    stack.purchase(own, "rcpt-1", 4_200).await;
    stack.purchase(other, "rcpt-2", 9_900).await;
    stack.wait_for_balance(own, 42).await;
    stack.wait_for_balance(other, 99).await;
    let secret = create_signing_secret(&stack.db, ORG).await;
    let revoked = create_signing_secret(&stack.db, ORG).await;
    let globex = OrgKeys::create(&stack.db, "globex").await;
    let globex_secret = create_signing_secret(&stack.db, "globex").await;
    let revoked_id: Uuid = sqlx::query_scalar("SELECT secret_id FROM signing_secrets WHERE fingerprint = $1")
        .bind(common::signing_secrets::fingerprint(&revoked))
        .fetch_one(stack.db.pool())
        .await
        .unwrap();
    let revoked_token = customer(ORG, "card-1", &revoked);
    common::signing_secrets::revoke(stack.db.pool(), Some(ORG), revoked_id)
        .await
        .unwrap()
        .unwrap();

    let publishable = stack.keys.publishable.clone();
    let not_yours = Expect::Refused("FORBIDDEN", query_service::auth::NOT_YOUR_MEMBER);
    let cases = [
        Case {
            name: "own member (token names its external id)",
            key: publishable.clone(),
            token: Some(customer(ORG, "card-1", &secret)),
            member: own,
            expect: Expect::Data,
        },
        Case {
            name: "own member (token names its member id)",
            key: publishable.clone(),
            token: Some(customer(ORG, &own.to_string(), &secret)),
            member: own,
            expect: Expect::Data,
        },
        Case {
            name: "another member",
            key: publishable.clone(),
            token: Some(customer(ORG, "card-1", &secret)),
            member: other,
            expect: not_yours.clone(),
        },
        Case {
            name: "a member that does not exist",
            key: publishable.clone(),
            token: Some(customer(ORG, "card-1", &secret)),
            member: Uuid::new_v4(),
            expect: not_yours.clone(),
        },
        Case {
            name: "another org's key and token",
            key: globex.publishable.clone(),
            token: Some(customer("globex", "card-1", &globex_secret)),
            member: own,
            expect: Expect::Refused("FORBIDDEN", "this key cannot read org 'acme'"),
        },
        Case {
            name: "a token for another org",
            key: publishable.clone(),
            token: Some(customer("globex", "card-1", &globex_secret)),
            member: own,
            expect: Expect::BadToken("wrong_org"),
        },
        Case {
            name: "expired",
            key: publishable.clone(),
            token: Some(sign(
                &CustomerToken::new(ORG, "card-1", LIFETIME).issued_at(Utc::now() - chrono::Duration::hours(2)),
                &secret,
            )),
            member: own,
            expect: Expect::BadToken("expired"),
        },
        Case {
            name: "revoked secret",
            key: publishable.clone(),
            token: Some(revoked_token),
            member: own,
            expect: Expect::BadToken("revoked_secret"),
        },
        Case {
            name: "wrongly signed",
            key: publishable.clone(),
            token: Some(customer(ORG, "card-1", "lks_not-the-secret")),
            member: own,
            expect: Expect::BadToken("bad_signature"),
        },
        Case {
            name: "living longer than 24 h",
            key: publishable.clone(),
            token: Some(sign(
                &CustomerToken::new(ORG, "card-1", Duration::from_secs(25 * 3600)),
                &secret,
            )),
            member: own,
            expect: Expect::BadToken("too_long_lived"),
        },
        Case {
            name: "publishable key alone",
            key: publishable.clone(),
            token: None,
            member: own,
            expect: Expect::Refused(
                "FORBIDDEN",
                "`member` requires a customer token (`X-Customer-Token`) with the publishable key, or a storefront or analyst key",
            ),
        },
    ];

    let fields = member_fields(&stack).await;
    for case in &cases {
        let mut answers = Vec::new();
        for (field, selection) in &fields {
            let query = format!(
                "query($org: ID!, $id: ID!) {{ member(orgId: $org, memberId: $id) {{ {selection} }} }}"
            );
            let reply = stack
                .query
                .graphql_as_customer(
                    &case.key,
                    case.token.as_deref(),
                    &query,
                    json!({"org": ORG, "id": case.member}),
                )
                .await;
            let what = format!("{} reading Member.{field}: {:#}", case.name, reply.body);
            check(&reply, &case.expect, "member", &what);
            if case.expect == Expect::Data {
                let member = &reply.data()["member"];
                assert!(member.get(field).is_some(), "{what}");
                if field == "memberId" {
                    assert_eq!(member[field], json!(own.to_string()), "{what}");
                }
            }
            answers.push(reply.body["errors"].clone());
        }
        if case.expect != Expect::Data {
            assert!(
                answers.windows(2).all(|pair| pair[0] == pair[1]),
                "{}: {answers:#?}",
                case.name
            );
        }
    }

    // `me` and the subscription follow the same rules.
    for case in &cases {
        let expect = match &case.expect {
            // `me` names no member: the token's own it is.
            Expect::Refused("FORBIDDEN", message) if *message == query_service::auth::NOT_YOUR_MEMBER => {
                Expect::Data
            }
            Expect::Refused(code, _) if case.token.is_none() => Expect::Refused(
                code,
                "`me` requires a customer token (`X-Customer-Token`) with the org's publishable key",
            ),
            other => other.clone(),
        };
        let reply = stack
            .query
            .graphql_as_customer(
                &case.key,
                case.token.as_deref(),
                "query($org: ID!) { me(orgId: $org) { memberId balance { points } } }",
                json!({"org": ORG}),
            )
            .await;
        let what = format!("{} reading me: {:#}", case.name, reply.body);
        check(&reply, &expect, "me", &what);
        if expect == Expect::Data {
            assert_eq!(reply.data()["me"]["memberId"], json!(own.to_string()), "{what}");
            assert_eq!(reply.data()["me"]["balance"]["points"], 42, "{what}");
        }
    }
    let token = customer(ORG, "card-1", &secret);
    let subscription = "subscription($org: ID!, $id: ID!) { memberUpdated(orgId: $org, memberId: $id, includeCurrent: true) { points } }";
    for (member, expected) in [(own, Some(42)), (other, None), (Uuid::new_v4(), None)] {
        let mut ws = GraphqlWs::connect_as_customer(&stack.query.ws_url(), &publishable, &token)
            .await
            .unwrap();
        ws.subscribe("1", subscription, json!({"org": ORG, "id": member}))
            .await;
        let message: Value = ws.next_message(Duration::from_secs(10)).await.expect("an answer");
        match expected {
            Some(points) => assert_eq!(
                message["payload"]["data"]["memberUpdated"]["points"], points,
                "{message:#}"
            ),
            None => {
                assert!(message["payload"]["data"].is_null(), "{message:#}");
                assert_eq!(
                    message["payload"]["errors"][0]["message"],
                    query_service::auth::NOT_YOUR_MEMBER,
                    "{message:#}"
                );
            }
        }
    }
    let refused = GraphqlWs::connect_as_customer(
        &stack.query.ws_url(),
        &publishable,
        &customer(ORG, "card-1", "lks_wrong"),
    )
    .await
    .err()
    .expect("a wrongly signed token cannot open a websocket");
    assert!(
        refused.contains("not signed by any active signing secret"),
        "{refused}"
    );

    stack.cleanup().await;
}

fn check(reply: &GraphqlReply, expect: &Expect, field: &str, what: &str) {
    match expect {
        Expect::Data => {
            assert_eq!(reply.status, 200, "{what}");
            assert!(reply.body.get("errors").is_none_or(Value::is_null), "{what}");
        }
        Expect::Refused(code, message) => {
            assert_eq!(reply.status, 200, "{what}");
            assert_eq!(reply.error_codes(), [*code], "{what}");
            assert_eq!(reply.first_error(), Some(*message), "{what}");
            assert!(
                reply.body["data"].is_null() || reply.body["data"][field].is_null(),
                "no data may leak: {what}"
            );
        }
        Expect::BadToken(reason) => {
            assert_eq!(reply.status, 401, "{what}");
            assert_eq!(reply.error_codes(), ["INVALID_CUSTOMER_TOKEN"], "{what}");
            assert_eq!(reply.body["errors"][0]["extensions"]["reason"], *reason, "{what}");
            assert!(reply.body["data"].is_null(), "no data may leak: {what}");
        }
    }
}
