//! Authentication, tenant isolation and the role matrix of the command API: a key acts only on
//! its own org, only with its role's rights, and a refused request stores nothing.

use chrono::Utc;
use common::keys::Role;
use loyalty_tests::{
    spawn_command_service, ApiClient, ApiResponse, OrgKeys, TestCommandService, TestDb, TestNats,
};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

fn program() -> Value {
    json!({
        "currency": "EUR",
        "rewards": [{"reward_id": "coffee", "name": "Coffee", "points_cost": 5}]
    })
}

/// An org with its program, location `store-1`, keys of every role and one member
/// (external id `card-1`) with 1000 points.
struct Org {
    name: &'static str,
    keys: OrgKeys,
    member: Uuid,
}

async fn set_up_org(db: &TestDb, service: &TestCommandService, name: &'static str) -> Org {
    let keys = OrgKeys::create(db, name).await;
    let admin = service.client(&keys.admin);
    let answer = admin
        .put(&format!("/v1/orgs/{name}/program"), "p", &program())
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let answer = admin
        .post(
            &format!("/v1/orgs/{name}/locations"),
            "l",
            &json!({"location_id": "store-1", "name": "Store"}),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let answer = admin
        .post(
            &format!("/v1/orgs/{name}/members"),
            "m",
            &json!({"external_id": "card-1"}),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let member = answer.body["member_id"].as_str().unwrap().parse().unwrap();
    let answer = admin
        .post(
            &format!("/v1/orgs/{name}/members/{member}/adjustments"),
            "a",
            &json!({"adjustment_id": "seed", "delta": 1000, "reason": "seed"}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    Org { name, keys, member }
}

/// Whether an endpoint needs an admin key or a POS key suffices.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Needs {
    Pos,
    Admin,
}

struct Endpoint {
    method: Method,
    path: String,
    body: Option<Value>,
    needs: Needs,
    success: u16,
}

/// Every endpoint of the API on `org`, with a body unique to `tag` so that allowed calls
/// succeed independently of each other.
fn endpoints(org: &Org, tag: &str) -> Vec<Endpoint> {
    let o = org.name;
    let m = org.member;
    let now = Utc::now();
    let purchase = |tx: String| json!({"transaction_id": tx, "location_id": "store-1", "amount_minor": 1_000, "currency": "EUR", "occurred_at": now});
    let endpoint = |method: Method, path: String, body: Option<Value>, needs: Needs, success: u16| Endpoint {
        method,
        path,
        body,
        needs,
        success,
    };
    vec![
        endpoint(
            Method::PUT,
            format!("/v1/orgs/{o}/program"),
            Some(
                json!({"currency": "EUR", "earn_rate": 2, "rewards": [{"reward_id": "coffee", "name": "Coffee", "points_cost": 5}]}),
            ),
            Needs::Admin,
            200,
        ),
        endpoint(
            Method::GET,
            format!("/v1/orgs/{o}/program"),
            None,
            Needs::Pos,
            200,
        ),
        endpoint(
            Method::POST,
            format!("/v1/orgs/{o}/locations"),
            Some(json!({"location_id": format!("store-{tag}"), "name": tag})),
            Needs::Admin,
            201,
        ),
        endpoint(
            Method::POST,
            format!("/v1/orgs/{o}/members"),
            Some(json!({"external_id": format!("card-{tag}")})),
            Needs::Pos,
            201,
        ),
        endpoint(
            Method::GET,
            format!("/v1/orgs/{o}/members/{m}"),
            None,
            Needs::Pos,
            200,
        ),
        endpoint(
            Method::GET,
            format!("/v1/orgs/{o}/members/by-external-id/card-1"),
            None,
            Needs::Pos,
            200,
        ),
        endpoint(
            Method::POST,
            format!("/v1/orgs/{o}/members/{m}/purchases"),
            Some(purchase(format!("T-{tag}"))),
            Needs::Pos,
            200,
        ),
        endpoint(
            Method::POST,
            format!("/v1/orgs/{o}/members/by-external-id/card-1/purchases"),
            Some(purchase(format!("T-ext-{tag}"))),
            Needs::Pos,
            200,
        ),
        endpoint(
            Method::POST,
            format!("/v1/orgs/{o}/members/{m}/refunds"),
            Some(json!({"refund_id": format!("R-{tag}"), "transaction_id": "T-base", "amount_minor": 1})),
            Needs::Pos,
            200,
        ),
        endpoint(
            Method::POST,
            format!("/v1/orgs/{o}/members/{m}/redemptions"),
            Some(json!({"redemption_id": format!("X-{tag}"), "reward_id": "coffee"})),
            Needs::Pos,
            200,
        ),
        endpoint(
            Method::POST,
            format!("/v1/orgs/{o}/members/{m}/adjustments"),
            Some(json!({"adjustment_id": format!("A-{tag}"), "delta": 3, "reason": "test"})),
            Needs::Admin,
            200,
        ),
        endpoint(
            Method::POST,
            format!("/v1/orgs/{o}/members/by-external-id/card-1/adjustments"),
            Some(json!({"adjustment_id": format!("A-ext-{tag}"), "delta": 3, "reason": "test"})),
            Needs::Admin,
            200,
        ),
        endpoint(
            Method::POST,
            format!("/v1/orgs/{o}/jobs/expire-points"),
            Some(json!({"as_of": now})),
            Needs::Admin,
            200,
        ),
        endpoint(
            Method::POST,
            format!("/v1/orgs/{o}/jobs/reevaluate-tiers"),
            Some(json!({"as_of": now})),
            Needs::Admin,
            200,
        ),
    ]
}

async fn call(client: &ApiClient, endpoint: &Endpoint, idempotency_key: &str) -> ApiResponse {
    let key = (endpoint.method != Method::GET).then_some(idempotency_key);
    client
        .send(
            endpoint.method.clone(),
            &endpoint.path,
            key,
            endpoint.body.as_ref(),
        )
        .await
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db.pool()).await.unwrap()
}

async fn stored(db: &TestDb) -> [i64; 4] {
    [
        count(db, "SELECT count(*) FROM events").await,
        count(db, "SELECT count(*) FROM command_idempotency_keys").await,
        count(db, "SELECT count(*) FROM command_transaction_claims").await,
        count(db, "SELECT count(*) FROM command_members").await,
    ]
}

#[tokio::test]
async fn a_key_cannot_read_or_write_another_org() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let service = spawn_command_service(&db, &nats).await;
    let acme = set_up_org(&db, &service, "acme").await;
    let globex = set_up_org(&db, &service, "globex").await;
    let before = stored(&db).await;

    for role in Role::ALL {
        let client = service.client(acme.keys.key(role));
        for (i, endpoint) in endpoints(&globex, &format!("{role}")).iter().enumerate() {
            let answer = call(&client, endpoint, &format!("cross-{role}-{i}")).await;
            assert_eq!(
                answer.status, 403,
                "an acme {role} key on {} {}: {}",
                endpoint.method, endpoint.path, answer.text
            );
            assert_eq!(answer.error_code(), Some("wrong_org"), "{}", answer.text);
            assert!(!answer.text.contains("card-1"), "{}", answer.text);
        }
        // Authorization comes before the body is even looked at.
        let answer = client
            .send_raw(
                Method::POST,
                &format!("/v1/orgs/globex/members/{}/purchases", globex.member),
                Some("cross-raw"),
                Some("application/json"),
                b"{not json".to_vec(),
            )
            .await;
        assert_eq!(answer.error_code(), Some("wrong_org"), "{}", answer.text);
    }
    assert_eq!(
        stored(&db).await,
        before,
        "a refused cross-org request stored something"
    );

    // A globex member cannot be named through acme's paths either: member ids are per org.
    let admin = service.client(&acme.keys.admin);
    let answer = admin
        .get(&format!("/v1/orgs/acme/members/{}", globex.member))
        .await;
    assert_eq!(
        (answer.status, answer.error_code()),
        (404, Some("member_not_found"))
    );
    let answer = admin
        .post(
            &format!("/v1/orgs/acme/members/{}/adjustments", globex.member),
            "steal",
            &json!({"adjustment_id": "steal", "delta": -1000, "reason": "x"}),
        )
        .await;
    assert_eq!(
        (answer.status, answer.error_code()),
        (404, Some("member_not_found"))
    );
    let globex_view = service
        .client(&globex.keys.pos)
        .get(&format!("/v1/orgs/globex/members/{}", globex.member))
        .await;
    assert_eq!(globex_view.body["balance"], 1000);
    assert_eq!(stored(&db).await, before);

    service.stop().await.unwrap();
    nats.cleanup().await;
    db.cleanup().await;
}

#[tokio::test]
async fn each_role_may_do_exactly_what_the_matrix_allows() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let service = spawn_command_service(&db, &nats).await;
    let acme = set_up_org(&db, &service, "acme").await;
    let answer = service
        .client(&acme.keys.pos)
        .post(
            &format!("/v1/orgs/acme/members/{}/purchases", acme.member),
            "base",
            &json!({"transaction_id": "T-base", "location_id": "store-1", "amount_minor": 100_000, "currency": "EUR", "occurred_at": Utc::now()}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);

    for role in Role::ALL {
        let client = service.client(acme.keys.key(role));
        for (i, endpoint) in endpoints(&acme, &format!("{role}")).iter().enumerate() {
            let allowed = match role {
                Role::Admin => true,
                Role::Pos => endpoint.needs == Needs::Pos,
                // Without a customer token (tests/tests/storefront_identity.rs has those).
                Role::Storefront | Role::Analyst | Role::Publishable => false,
            };
            let before = stored(&db).await;
            let answer = call(&client, endpoint, &format!("{role}-{i}")).await;
            let what = format!("{role} on {} {}: {}", endpoint.method, endpoint.path, answer.text);
            if allowed {
                assert_eq!(answer.status, endpoint.success, "{what}");
            } else {
                assert_eq!(answer.status, 403, "{what}");
                assert_eq!(answer.error_code(), Some("forbidden"), "{what}");
                assert_eq!(stored(&db).await, before, "{what} stored something");
            }
        }
    }
    service.stop().await.unwrap();
    nats.cleanup().await;
    db.cleanup().await;
}

#[tokio::test]
async fn requests_without_a_valid_key_are_refused() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let service = spawn_command_service(&db, &nats).await;
    let acme = set_up_org(&db, &service, "acme").await;
    let path = format!("/v1/orgs/acme/members/{}", acme.member);

    let answer = service.anonymous().get(&path).await;
    assert_eq!(
        (answer.status, answer.error_code()),
        (401, Some("missing_credentials"))
    );
    assert_eq!(answer.headers["www-authenticate"], "Bearer");

    let basic = reqwest::Client::new()
        .get(service.url(&path))
        .header("Authorization", "Basic YWRtaW46YWRtaW4=")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);

    let guessed = service.client("lk_admin_00000000000000000000000000000000");
    let answer = guessed.get(&path).await;
    assert_eq!(
        (answer.status, answer.error_code()),
        (401, Some("invalid_credentials"))
    );

    let key_id: Uuid = sqlx::query_scalar("SELECT key_id FROM api_keys WHERE role = 'pos'")
        .fetch_one(db.pool())
        .await
        .unwrap();
    // Keys are cached per process; the revocation reaches the cache by NOTIFY, within a
    // second (the contract), not necessarily before the next request.
    assert_eq!(service.client(&acme.keys.pos).get(&path).await.status, 200);
    assert!(common::keys::revoke(db.pool(), key_id).await.unwrap());
    let revoked_at = std::time::Instant::now();
    let answer = loop {
        let answer = service.client(&acme.keys.pos).get(&path).await;
        if answer.status != 200 || revoked_at.elapsed() > std::time::Duration::from_secs(1) {
            break answer;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(
        (answer.status, answer.error_code()),
        (401, Some("invalid_credentials")),
        "a revoked key was still accepted {:?} after its revocation",
        revoked_at.elapsed()
    );

    // The operational endpoints need no key.
    assert_eq!(service.anonymous().get("/healthz").await.status, 200);
    assert_eq!(service.anonymous().get("/openapi.json").await.status, 200);

    service.stop().await.unwrap();
    nats.cleanup().await;
    db.cleanup().await;
}
