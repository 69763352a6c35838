//! The query service's safety limits: depth, complexity and page size are refused with clear
//! errors before anything runs; internal failures reach the client as a generic error; the
//! standard introspection query (GraphiQL, code generators) still works; GraphiQL, health and
//! metrics are served.

use common::keys::Role;
use loyalty_tests::{spawn_query_service, TestDb, TestNats};
use serde_json::json;

/// `member { segmentHistory { member { ... } } }` nested `levels` times, ending in
/// `balance { points }`: depth 2 × levels + 3.
fn nested(levels: usize) -> String {
    let mut selection = "balance { points }".to_owned();
    for _ in 0..levels {
        selection = format!("segmentHistory {{ member {{ {selection} }} }}");
    }
    format!(
        "query($org: ID!) {{ member(orgId: $org, memberId: \"6f1c1c2e-8d1a-4a55-9d53-0d7f3a1f2b10\") {{ {selection} }} }}"
    )
}

/// graphql-js `getIntrospectionQuery()` (what GraphiQL sends): about 13 levels deep.
const INTROSPECTION: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name
    ofType { kind name ofType { kind name ofType { kind name } } } } } } }
}"#;

#[tokio::test]
async fn limits_errors_and_endpoints() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let service = spawn_query_service(&db, &nats).await;
    let analyst = common::keys::create_key(db.pool(), "acme", Role::Analyst)
        .await
        .unwrap();
    let variables = json!({"org": "acme"});
    let ask = |query: String| {
        let (service, analyst, variables) = (&service, &analyst, &variables);
        async move { service.graphql(Some(analyst), &query, variables.clone()).await }
    };

    // Depth: 9 (3 levels) is fine, 11 (4 levels) is refused before anything runs.
    let reply = ask(nested(3)).await;
    assert!(reply.data()["member"].is_null());
    let reply = ask(nested(4)).await;
    assert_eq!(
        reply.first_error(),
        Some("Query is nested too deep."),
        "{:#}",
        reply.body
    );
    assert!(reply.body["data"].is_null());

    // Complexity: lists count their page size times their items' fields.
    let reply = ask(
        "query($org: ID!) { members(orgId: $org, first: 100) { edges { node { \
           history(first: 100) { edges { node { eventType pointsDelta } } } } } } }"
            .to_owned(),
    )
    .await;
    assert_eq!(
        reply.first_error(),
        Some("Query is too complex."),
        "{:#}",
        reply.body
    );
    assert!(reply.body["data"].is_null());

    // Page size: at most 100, and the error says so.
    for (field, selection) in [
        ("members", "members(orgId: $org, first: 101) { edges { cursor } }"),
        (
            "leaderboard",
            "leaderboard(orgId: $org, period: WEEK, first: 0) { rank }",
        ),
        (
            "segmentTransitions",
            "segmentTransitions(orgId: $org, first: 1000) { edges { cursor } }",
        ),
    ] {
        let reply = ask(format!("query($org: ID!) {{ {selection} }}")).await;
        assert_eq!(
            reply.error_codes(),
            ["BAD_USER_INPUT"],
            "{field}: {:#}",
            reply.body
        );
        let message = reply.first_error().unwrap();
        assert!(
            message.starts_with("first: must be between 1 and 100"),
            "{field}: {message}"
        );
    }

    // Bad arguments are named.
    for (arguments, message) in [
        ("memberId: \"42\"", "memberId: '42' is not a member id (UUID)"),
        ("", "member: give exactly one of `memberId` and `externalId`"),
        (
            "memberId: \"6f1c1c2e-8d1a-4a55-9d53-0d7f3a1f2b10\", externalId: \"c-1\"",
            "member: give exactly one of `memberId` and `externalId`",
        ),
    ] {
        let reply = ask(format!(
            "query($org: ID!) {{ member(orgId: $org, {arguments}) {{ memberId }} }}"
        ))
        .await;
        assert_eq!(
            reply.error_codes(),
            ["BAD_USER_INPUT"],
            "{arguments}: {:#}",
            reply.body
        );
        assert_eq!(reply.first_error(), Some(message));
    }

    // A cursor that is not one of ours.
    let reply =
        ask("query($org: ID!) { members(orgId: $org, after: \"bogus\") { edges { cursor } } }".to_owned())
            .await;
    assert_eq!(
        reply.first_error(),
        Some("after: not a cursor returned by this list")
    );

    // GraphiQL's introspection query works (anonymously, and deeper than data queries may go).
    let reply = service.graphql(None, INTROSPECTION, json!({})).await;
    let schema = &reply.data()["__schema"];
    assert_eq!(schema["queryType"]["name"], "Query");
    assert_eq!(schema["subscriptionType"]["name"], "Subscription");

    // Internal failures are logged, not shown: no SQL, table or driver text reaches the client.
    sqlx::query("DROP TABLE rm.org_liability")
        .execute(db.pool())
        .await
        .unwrap();
    let reply = ask("query($org: ID!) { liability(orgId: $org) { points } }".to_owned()).await;
    assert_eq!(reply.error_codes(), ["INTERNAL"], "{:#}", reply.body);
    assert_eq!(reply.first_error(), Some("internal error"));
    let shown = reply.body.to_string();
    assert!(
        !shown.contains("org_liability") && !shown.contains("relation"),
        "{shown}"
    );

    // GraphiQL on GET /graphql; health, readiness and metrics.
    let page = reqwest::get(service.url("/graphql")).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().to_lowercase().contains("graphiql"));
    for path in ["/healthz", "/readyz"] {
        let response = reqwest::get(service.url(path)).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let metrics = reqwest::get(service.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "graphql_requests_total",
        "graphql_request_duration_seconds_bucket",
        "query_sql_statements_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }

    service.stop().await.unwrap();
    nats.cleanup().await;
    db.cleanup().await;
}
