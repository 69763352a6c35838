//! The command API against real Postgres and NATS: every endpoint's success path, its error
//! paths (each answered with a named error and storing nothing), idempotent replay, and the
//! operational endpoints.

use std::time::Duration;

use chrono::{DateTime, Utc};
use loyalty_tests::{
    command_config, spawn_command_service_with, ApiClient, ApiResponse, OrgKeys, TestCommandService, TestDb,
    TestNats,
};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

const ORG: &str = "acme";

/// Default tiers, a 50-point coffee, a 3-stamp card for purchases of 5.00 or more.
fn program() -> Value {
    json!({
        "currency": "EUR",
        "earn_rate": 1,
        "rewards": [
            {"reward_id": "coffee", "name": "Coffee", "points_cost": 50},
            {"reward_id": "mug", "name": "Mug", "points_cost": 10, "active": false}
        ],
        "stamp_cards": [
            {"card_id": "coffee-card", "name": "Coffee card", "stamps_required": 3, "reward_id": "coffee", "min_amount_minor": 500}
        ]
    })
}

struct Fixture {
    db: TestDb,
    nats: TestNats,
    service: TestCommandService,
    admin: ApiClient,
    pos: ApiClient,
}

impl Fixture {
    /// A service, keys of org `acme`, and (when `configured`) its program and location
    /// `store-1`.
    async fn new(configured: bool) -> Self {
        Self::with_config(configured, |_| {}).await
    }

    /// As [`Fixture::new`], with the service's configuration changed by `adjust`.
    async fn with_config(configured: bool, adjust: impl FnOnce(&mut command_service::Config)) -> Self {
        let db = TestDb::new().await;
        let nats = TestNats::new().await;
        let mut config = command_config(&db, &nats);
        adjust(&mut config);
        let service = spawn_command_service_with(config).await;
        let keys = OrgKeys::create(&db, ORG).await;
        let admin = service.client(&keys.admin);
        let pos = service.client(&keys.pos);
        let fixture = Self {
            db,
            nats,
            service,
            admin,
            pos,
        };
        if configured {
            let answer = fixture
                .admin
                .put("/v1/orgs/acme/program", "setup-program", &program())
                .await;
            assert_eq!(answer.status, 200, "{}", answer.text);
            let answer = fixture
                .admin
                .post(
                    "/v1/orgs/acme/locations",
                    "setup-location",
                    &json!({"location_id": "store-1", "name": "Store 1"}),
                )
                .await;
            assert_eq!(answer.status, 201, "{}", answer.text);
        }
        fixture
    }

    async fn cleanup(self) {
        self.service.stop().await.expect("the service stops cleanly");
        self.nats.cleanup().await;
        self.db.cleanup().await;
    }

    async fn enroll(&self, key: &str, body: Value) -> Uuid {
        let answer = self.pos.post("/v1/orgs/acme/members", key, &body).await;
        assert_eq!(answer.status, 201, "{}", answer.text);
        answer.body["member_id"].as_str().unwrap().parse().unwrap()
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(self.db.pool()).await.unwrap()
    }

    /// Rows of every table a command can write, to prove a refused request wrote nothing.
    async fn stored(&self) -> [i64; 4] {
        [
            self.count("SELECT count(*) FROM events").await,
            self.count("SELECT count(*) FROM command_idempotency_keys").await,
            self.count("SELECT count(*) FROM command_transaction_claims")
                .await,
            self.count("SELECT count(*) FROM command_members").await,
        ]
    }
}

fn purchase(transaction_id: &str, amount_minor: i64, occurred_at: DateTime<Utc>) -> Value {
    json!({
        "transaction_id": transaction_id,
        "location_id": "store-1",
        "amount_minor": amount_minor,
        "currency": "EUR",
        "occurred_at": occurred_at,
    })
}

/// A request and the error it must get: method, path, body, status, code, field.
type Case<'a> = (Method, String, Value, u16, &'a str, Option<&'a str>);

fn assert_error(answer: &ApiResponse, status: u16, code: &str, field: Option<&str>) {
    assert_eq!(answer.status, status, "{}", answer.text);
    assert_eq!(answer.error_code(), Some(code), "{}", answer.text);
    assert_eq!(answer.error_field(), field, "{}", answer.text);
    assert!(
        answer.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        answer.text
    );
}

#[tokio::test]
async fn a_member_enrols_earns_is_refunded_redeems_and_is_adjusted() {
    let f = Fixture::new(true).await;
    let program = f.pos.get("/v1/orgs/acme/program").await;
    assert_eq!(program.status, 200, "{}", program.text);
    assert_eq!(program.body["version"], 1);
    assert_eq!(program.body["config"]["currency"], "EUR");
    assert_eq!(
        program.body["locations"],
        json!([{"location_id": "store-1", "name": "Store 1"}])
    );

    let enrolled = f
        .pos
        .post(
            "/v1/orgs/acme/members",
            "enrol-ann",
            &json!({"external_id": "card-1", "display_name": "Ann"}),
        )
        .await;
    assert_eq!(enrolled.status, 201, "{}", enrolled.text);
    assert_eq!(enrolled.event_types(), ["MemberEnrolled"]);
    assert_eq!(enrolled.body["balance"], 0);
    assert_eq!(enrolled.body["events"][0]["sequence"], 1);
    assert_eq!(enrolled.body["events"][0]["version"], "1");
    assert_eq!(enrolled.body["events"][0]["payload"]["external_id"], "card-1");
    let member: Uuid = enrolled.body["member_id"].as_str().unwrap().parse().unwrap();

    // 123.45 EUR earns floor(123.45) = 123 points at Bronze (1.0×) and a stamp.
    let morning = Utc::now() - chrono::Duration::hours(2);
    let bought = f
        .pos
        .post(
            &format!("/v1/orgs/acme/members/{member}/purchases"),
            "buy-1",
            &purchase("T-1", 12_345, morning),
        )
        .await;
    assert_eq!(bought.status, 200, "{}", bought.text);
    assert_eq!(bought.event_types(), ["PurchaseRecorded", "StampCollected"]);
    assert_eq!(bought.body["events"][0]["payload"]["points_earned"], 123);
    assert_eq!(bought.body["events"][0]["sequence"], 2);
    assert_eq!(bought.body["balance"], 123);
    assert_eq!(bought.body["member_id"], member.to_string());

    // The same member named by external id; a second purchase the same day: no second stamp.
    let bought = f
        .pos
        .post(
            "/v1/orgs/acme/members/by-external-id/card-1/purchases",
            "buy-2",
            &purchase("T-2", 5_000, morning + chrono::Duration::minutes(5)),
        )
        .await;
    assert_eq!(bought.status, 200, "{}", bought.text);
    assert_eq!(bought.event_types(), ["PurchaseRecorded"]);
    assert_eq!(bought.body["balance"], 173);

    // Refunding 23.45 of 123.45 claws back floor(123 × 2345 / 12345) = 23 points.
    let refunded = f
        .pos
        .post(
            "/v1/orgs/acme/members/by-external-id/card-1/refunds",
            "refund-1",
            &json!({"refund_id": "R-1", "transaction_id": "T-1", "amount_minor": 2_345}),
        )
        .await;
    assert_eq!(refunded.status, 200, "{}", refunded.text);
    assert_eq!(refunded.event_types(), ["PurchaseRefunded"]);
    assert_eq!(refunded.body["events"][0]["payload"]["points_clawed_back"], 23);
    assert_eq!(refunded.body["balance"], 150);

    let redeemed = f
        .pos
        .post(
            "/v1/orgs/acme/members/by-external-id/card-1/redemptions",
            "redeem-1",
            &json!({"redemption_id": "X-1", "reward_id": "coffee"}),
        )
        .await;
    assert_eq!(redeemed.status, 200, "{}", redeemed.text);
    assert_eq!(redeemed.event_types(), ["RewardRedeemed"]);
    assert_eq!(redeemed.body["balance"], 100);

    let adjusted = f
        .admin
        .post(
            &format!("/v1/orgs/acme/members/{member}/adjustments"),
            "adjust-1",
            &json!({"adjustment_id": "A-1", "delta": 25, "reason": "goodwill"}),
        )
        .await;
    assert_eq!(adjusted.status, 200, "{}", adjusted.text);
    assert_eq!(adjusted.event_types(), ["PointsAdjusted"]);
    assert_eq!(adjusted.body["balance"], 125);
    let adjusted = f
        .admin
        .post(
            "/v1/orgs/acme/members/by-external-id/card-1/adjustments",
            "adjust-2",
            &json!({"adjustment_id": "A-2", "delta": -5, "reason": "correction"}),
        )
        .await;
    assert_eq!(adjusted.status, 200, "{}", adjusted.text);
    assert_eq!(adjusted.body["balance"], 120);

    for path in [
        format!("/v1/orgs/acme/members/{member}"),
        "/v1/orgs/acme/members/by-external-id/card-1".to_owned(),
    ] {
        let view = f.pos.get(&path).await;
        assert_eq!(view.status, 200, "{}", view.text);
        let body = &view.body;
        assert_eq!(body["member_id"], member.to_string());
        assert_eq!(body["external_id"], "card-1");
        assert_eq!(body["display_name"], "Ann");
        assert_eq!(body["balance"], 120);
        assert_eq!(body["lifetime_earned"], 173);
        assert_eq!(body["clawed_back"], 23);
        assert_eq!(body["redeemed"], 50);
        assert_eq!(body["tier"]["name"], "Bronze");
        assert_eq!(body["stamp_cards"][0]["card_id"], "coffee-card");
        assert_eq!(body["stamp_cards"][0]["stamps"], 1);
        assert_eq!(body["version"], 8);
    }

    // Metadata of every event names the org, the command, the idempotency key and the key.
    let metadata: Value =
        sqlx::query_scalar("SELECT metadata FROM events WHERE aggregate_type = 'member' AND sequence = 2")
            .fetch_one(f.db.pool())
            .await
            .unwrap();
    assert_eq!(metadata["org_id"], "acme");
    assert_eq!(metadata["command"], "RecordPurchase");
    assert_eq!(metadata["idempotency_key"], "buy-1");
    assert!(metadata["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    let key_id: Uuid = sqlx::query_scalar("SELECT key_id FROM api_keys WHERE role = 'pos'")
        .fetch_one(f.db.pool())
        .await
        .unwrap();
    assert_eq!(metadata["key_id"], key_id.to_string());
    f.cleanup().await;
}

#[tokio::test]
async fn jobs_expire_points_and_reevaluate_tiers_once_per_as_of() {
    let f = Fixture::new(true).await;
    let old = f.enroll("enrol-old", json!({"external_id": "old"})).await;
    let fresh = f.enroll("enrol-fresh", json!({})).await;
    // Earned 400 days ago with a 365-day expiry: expired 35 days ago.
    let long_ago = Utc::now() - chrono::Duration::days(400);
    let answer = f
        .pos
        .post(
            &format!("/v1/orgs/acme/members/{old}/purchases"),
            "old-buy",
            &purchase("T-old", 4_200, long_ago),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let answer = f
        .pos
        .post(
            &format!("/v1/orgs/acme/members/{fresh}/purchases"),
            "fresh-buy",
            &purchase("T-fresh", 1_000, Utc::now()),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);

    let as_of = Utc::now();
    let expired = f
        .admin
        .post(
            "/v1/orgs/acme/jobs/expire-points",
            "expire-1",
            &json!({"as_of": as_of}),
        )
        .await;
    assert_eq!(expired.status, 200, "{}", expired.text);
    assert_eq!(expired.body["job"], "ExpirePoints");
    assert_eq!(expired.body["members"], 2);
    assert_eq!(expired.body["members_changed"], 1);
    assert_eq!(expired.body["events"], 1);
    let old_view = f.pos.get(&format!("/v1/orgs/acme/members/{old}")).await;
    assert_eq!(old_view.body["balance"], 0);
    assert_eq!(old_view.body["expired"], 42);
    let fresh_view = f.pos.get(&format!("/v1/orgs/acme/members/{fresh}")).await;
    assert_eq!(fresh_view.body["balance"], 10);

    // The same as_of again (under a new idempotency key): nothing more expires.
    let again = f
        .admin
        .post(
            "/v1/orgs/acme/jobs/expire-points",
            "expire-2",
            &json!({"as_of": as_of}),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(
        (again.body["members"].clone(), again.body["events"].clone()),
        (json!(2), json!(0))
    );

    let reevaluated = f
        .admin
        .post(
            "/v1/orgs/acme/jobs/reevaluate-tiers",
            "tiers-1",
            &json!({"as_of": as_of}),
        )
        .await;
    assert_eq!(reevaluated.status, 200, "{}", reevaluated.text);
    assert_eq!(reevaluated.body["job"], "ReevaluateTier");
    assert_eq!(reevaluated.body["members"], 2);
    let again = f
        .admin
        .post(
            "/v1/orgs/acme/jobs/reevaluate-tiers",
            "tiers-2",
            &json!({"as_of": as_of}),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["events"], 0);

    let before = f.stored().await;
    let future = f
        .admin
        .post(
            "/v1/orgs/acme/jobs/expire-points",
            "expire-future",
            &json!({"as_of": Utc::now() + chrono::Duration::days(1)}),
        )
        .await;
    assert_error(&future, 422, "as_of_in_future", Some("as_of"));
    let missing = f
        .admin
        .post("/v1/orgs/acme/jobs/reevaluate-tiers", "tiers-x", &json!({}))
        .await;
    assert_error(&missing, 400, "missing_field", Some("as_of"));
    assert_eq!(f.stored().await, before);
    f.cleanup().await;
}

#[tokio::test]
async fn without_a_program_commands_are_refused_with_a_clear_error() {
    let f = Fixture::new(false).await;
    let before = f.stored().await;
    let answer = f.pos.post("/v1/orgs/acme/members", "enrol", &json!({})).await;
    assert_error(&answer, 409, "program_not_configured", None);
    assert!(answer.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("PUT /v1/orgs/acme/program"));
    let answer = f
        .admin
        .post(
            "/v1/orgs/acme/jobs/expire-points",
            "expire",
            &json!({"as_of": Utc::now()}),
        )
        .await;
    assert_error(&answer, 409, "program_not_configured", None);
    let program = f.admin.get("/v1/orgs/acme/program").await;
    assert_eq!(program.status, 200);
    assert_eq!(program.body["config"], Value::Null);
    assert_eq!(f.stored().await, before);
    f.cleanup().await;
}

#[tokio::test]
async fn bad_input_is_refused_with_the_field_named_and_nothing_stored() {
    let f = Fixture::new(true).await;
    let member = f.enroll("enrol", json!({"external_id": "card-1"})).await;
    let answer = f
        .pos
        .post(
            &format!("/v1/orgs/acme/members/{member}/purchases"),
            "buy",
            &purchase("T-1", 1_000, Utc::now()),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let before = f.stored().await;

    let purchases = format!("/v1/orgs/acme/members/{member}/purchases");
    let now = Utc::now();
    let with = |field: &str, value: Value| {
        let mut body = purchase("T-new", 1_000, now);
        body[field] = value;
        body
    };
    let too_long = "x".repeat(129);
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        (Method::POST, purchases.clone(), with("amount_minor", json!(0)), 400, "invalid_amount", Some("amount_minor")),
        (Method::POST, purchases.clone(), with("amount_minor", json!(-5)), 400, "invalid_amount", Some("amount_minor")),
        (Method::POST, purchases.clone(), with("amount_minor", json!(100_000_000_001_i64)), 400, "invalid_amount", Some("amount_minor")),
        (Method::POST, purchases.clone(), with("amount_minor", json!(10.5)), 400, "invalid_field", Some("amount_minor")),
        (Method::POST, purchases.clone(), with("amount_minor", json!("1000")), 400, "invalid_field", Some("amount_minor")),
        (Method::POST, purchases.clone(), with("amount_minor", json!(u64::MAX)), 400, "invalid_field", Some("amount_minor")),
        (Method::POST, purchases.clone(), with("currency", json!("USD")), 422, "currency_mismatch", Some("currency")),
        (Method::POST, purchases.clone(), with("currency", json!("XYZ")), 400, "unknown_currency", Some("currency")),
        (Method::POST, purchases.clone(), with("location_id", json!("store-9")), 422, "unknown_location", Some("location_id")),
        (Method::POST, purchases.clone(), with("location_id", json!("Store 1")), 400, "invalid_location_id", Some("location_id")),
        (Method::POST, purchases.clone(), with("occurred_at", json!(now + chrono::Duration::days(1))), 422, "occurred_in_future", Some("occurred_at")),
        (Method::POST, purchases.clone(), with("occurred_at", json!("yesterday")), 400, "invalid_field", Some("occurred_at")),
        (Method::POST, purchases.clone(), with("transaction_id", json!("")), 400, "invalid_id", Some("transaction_id")),
        (Method::POST, purchases.clone(), with("transaction_id", json!(too_long)), 400, "invalid_id", Some("transaction_id")),
        (Method::POST, purchases.clone(), with("points", json!(5)), 400, "unknown_field", Some("points")),
        (Method::POST, purchases.clone(), json!({"location_id": "store-1", "amount_minor": 1, "currency": "EUR", "occurred_at": now}), 400, "missing_field", Some("transaction_id")),
        (Method::POST, purchases.clone(), json!(["T-new", "store-1", 1_000, "EUR", now]), 400, "invalid_body", None),
        // The same receipt with other details is not the same purchase.
        (Method::POST, purchases.clone(), purchase("T-1", 2_000, now), 409, "transaction_conflict", Some("transaction_id")),
        (Method::POST, "/v1/orgs/acme/members/not-a-uuid/purchases".into(), purchase("T-2", 1, now), 400, "invalid_member_id", Some("member_id")),
        (Method::POST, format!("/v1/orgs/acme/members/{}/purchases", Uuid::new_v4()), purchase("T-3", 1_000, now), 404, "member_not_found", Some("member_id")),
        (Method::POST, "/v1/orgs/acme/members/by-external-id/nobody/purchases".into(), purchase("T-4", 1_000, now), 404, "member_not_found", Some("member_id")),
        (Method::GET, format!("/v1/orgs/acme/members/{}", Uuid::new_v4()), Value::Null, 404, "member_not_found", Some("member_id")),
        (Method::GET, "/v1/orgs/acme/members/by-external-id/nobody".into(), Value::Null, 404, "member_not_found", Some("member_id")),
        (Method::GET, "/v1/orgs/acme/members/42".into(), Value::Null, 400, "invalid_member_id", Some("member_id")),
        (Method::POST, "/v1/orgs/ACME/members".into(), json!({}), 400, "invalid_org_id", Some("org")),
        // Enrolment.
        (Method::POST, "/v1/orgs/acme/members".into(), json!({"member_id": "xyz"}), 400, "invalid_field", Some("member_id")),
        (Method::POST, "/v1/orgs/acme/members".into(), json!({"display_name": "ann@example.com"}), 400, "invalid_display_name", Some("display_name")),
        (Method::POST, "/v1/orgs/acme/members".into(), json!({"display_name": "  "}), 400, "invalid_display_name", Some("display_name")),
        (Method::POST, "/v1/orgs/acme/members".into(), json!({"external_id": ""}), 400, "invalid_id", Some("external_id")),
        (Method::POST, "/v1/orgs/acme/members".into(), json!({"external_id": "card-1"}), 409, "external_id_taken", Some("external_id")),
        (Method::POST, "/v1/orgs/acme/members".into(), json!({"member_id": member}), 409, "member_exists", Some("member_id")),
        (Method::POST, "/v1/orgs/acme/members".into(), json!({"email": "a@b.c"}), 400, "unknown_field", Some("email")),
        // Refunds, redemptions, adjustments.
        (Method::POST, format!("/v1/orgs/acme/members/{member}/refunds"), json!({"refund_id": "R", "transaction_id": "T-1", "amount_minor": 1_001}), 422, "refund_exceeds_purchase", Some("amount_minor")),
        (Method::POST, format!("/v1/orgs/acme/members/{member}/refunds"), json!({"refund_id": "R", "transaction_id": "T-9", "amount_minor": 1}), 422, "purchase_not_found", Some("transaction_id")),
        (Method::POST, format!("/v1/orgs/acme/members/{member}/refunds"), json!({"refund_id": "R", "transaction_id": "T-1", "amount_minor": 0}), 400, "invalid_amount", Some("amount_minor")),
        (Method::POST, format!("/v1/orgs/acme/members/{member}/redemptions"), json!({"redemption_id": "X", "reward_id": "coffee"}), 422, "insufficient_points", Some("points")),
        (Method::POST, format!("/v1/orgs/acme/members/{member}/redemptions"), json!({"redemption_id": "X", "reward_id": "yacht"}), 422, "unknown_reward", Some("reward_id")),
        (Method::POST, format!("/v1/orgs/acme/members/{member}/redemptions"), json!({"redemption_id": "X", "reward_id": "mug"}), 422, "reward_inactive", Some("reward_id")),
        (Method::POST, format!("/v1/orgs/acme/members/{member}/adjustments"), json!({"adjustment_id": "A", "delta": 0, "reason": "x"}), 400, "invalid_delta", Some("delta")),
        (Method::POST, format!("/v1/orgs/acme/members/{member}/adjustments"), json!({"adjustment_id": "A", "delta": 5, "reason": " "}), 400, "reason_required", Some("reason")),
        (Method::POST, format!("/v1/orgs/acme/members/{member}/adjustments"), json!({"adjustment_id": "A", "delta": -50, "reason": "x"}), 422, "insufficient_points", Some("points")),
        (Method::POST, format!("/v1/orgs/acme/members/{member}/adjustments"), json!({"adjustment_id": "A", "delta": 5}), 400, "missing_field", Some("reason")),
        // The program and locations.
        (Method::PUT, "/v1/orgs/acme/program".into(), json!({"currency": "EURO"}), 400, "unknown_currency", Some("currency")),
        (Method::PUT, "/v1/orgs/acme/program".into(), json!({"currency": "EUR", "earn_rate": 0}), 400, "invalid_program", Some("earn_rate")),
        (Method::PUT, "/v1/orgs/acme/program".into(), json!({"currency": "EUR", "tiers": [
            {"name": "A", "threshold_points": 0, "multiplier_bps": 10000},
            {"name": "B", "threshold_points": 0, "multiplier_bps": 10000}]}), 400, "invalid_program", Some("tiers[1].threshold_points")),
        (Method::PUT, "/v1/orgs/acme/program".into(), json!({"currency": "EUR", "rewards": [{"reward_id": "r", "name": "R", "points_cost": 1, "colour": "red"}]}), 400, "unknown_field", Some("rewards[0].colour")),
        (Method::POST, "/v1/orgs/acme/locations".into(), json!({"location_id": "Store One", "name": "x"}), 400, "invalid_location_id", Some("location_id")),
        (Method::POST, "/v1/orgs/acme/locations".into(), json!({"location_id": "store-2", "name": ""}), 400, "invalid_location_name", Some("name")),
        (Method::POST, "/v1/orgs/acme/locations".into(), json!({"location_id": "store-1", "name": "Another name"}), 409, "location_exists", Some("location_id")),
    ];
    for (i, (method, path, body, status, code, field)) in cases.into_iter().enumerate() {
        let client =
            if path.ends_with("/adjustments") || path.ends_with("/program") || path.ends_with("/locations") {
                &f.admin
            } else {
                &f.pos
            };
        let body = (method != Method::GET).then_some(&body);
        let key = (method != Method::GET).then(|| format!("bad-{i}"));
        let answer = client.send(method.clone(), &path, key.as_deref(), body).await;
        assert_error(&answer, status, code, field);
        assert_eq!(
            f.stored().await,
            before,
            "{method} {path} {body:?} stored something"
        );
    }

    // Malformed requests: the body, its type and size, the Idempotency-Key.
    let raw = |body: &str| body.as_bytes().to_vec();
    let answer = f
        .pos
        .send_raw(
            Method::POST,
            &purchases,
            Some("raw-1"),
            Some("application/json"),
            raw(r#"{"transaction_id": "#),
        )
        .await;
    assert_error(&answer, 400, "malformed_json", None);
    let answer = f
        .pos
        .send_raw(
            Method::POST,
            &purchases,
            Some("raw-2"),
            Some("text/plain"),
            raw("{}"),
        )
        .await;
    assert_error(&answer, 415, "unsupported_media_type", None);
    let answer = f
        .pos
        .send_raw(Method::POST, &purchases, Some("raw-3"), None, raw("{}"))
        .await;
    assert_error(&answer, 415, "unsupported_media_type", None);
    let huge = json!({"transaction_id": "x".repeat(70 * 1024)})
        .to_string()
        .into_bytes();
    let answer = f
        .pos
        .send_raw(
            Method::POST,
            &purchases,
            Some("raw-4"),
            Some("application/json"),
            huge,
        )
        .await;
    assert_error(&answer, 413, "payload_too_large", None);
    let answer = f
        .pos
        .send(Method::POST, &purchases, None, Some(&purchase("T-5", 1_000, now)))
        .await;
    assert_error(&answer, 400, "invalid_idempotency_key", Some("Idempotency-Key"));
    let answer = f
        .pos
        .send(
            Method::POST,
            &purchases,
            Some("has space"),
            Some(&purchase("T-5", 1_000, now)),
        )
        .await;
    assert_error(&answer, 400, "invalid_idempotency_key", Some("Idempotency-Key"));
    let answer = f
        .admin
        .send(Method::PUT, "/v1/orgs/acme/program", None, Some(&program()))
        .await;
    assert_error(&answer, 400, "invalid_idempotency_key", Some("Idempotency-Key"));
    let answer = f.pos.get("/v1/nowhere").await;
    assert_error(&answer, 404, "not_found", None);
    let answer = f
        .pos
        .send(Method::DELETE, "/v1/orgs/acme/members", None, None)
        .await;
    assert_error(&answer, 405, "method_not_allowed", None);

    assert_eq!(f.stored().await, before);
    f.cleanup().await;
}

#[tokio::test]
async fn a_transaction_is_credited_to_one_member_of_the_org_only() {
    let f = Fixture::new(true).await;
    let ann = f.enroll("enrol-ann", json!({})).await;
    let bob = f.enroll("enrol-bob", json!({})).await;
    let now = Utc::now();
    let answer = f
        .pos
        .post(
            &format!("/v1/orgs/acme/members/{ann}/purchases"),
            "ann-buys",
            &purchase("T-1", 1_000, now),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let before = f.stored().await;
    let answer = f
        .pos
        .post(
            &format!("/v1/orgs/acme/members/{bob}/purchases"),
            "bob-buys",
            &purchase("T-1", 1_000, now),
        )
        .await;
    assert_error(&answer, 409, "transaction_claimed", Some("transaction_id"));
    assert_eq!(f.stored().await, before);

    // The same receipt sent again for Ann (a new key: a POS that lost its state) is the same
    // purchase: no second earn.
    let answer = f
        .pos
        .post(
            &format!("/v1/orgs/acme/members/{ann}/purchases"),
            "ann-again",
            &purchase("T-1", 1_000, now),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.event_types(), Vec::<String>::new());
    assert_eq!(answer.body["balance"], 10);
    assert_eq!(
        f.count("SELECT count(*) FROM events WHERE event_type = 'PurchaseRecorded'")
            .await,
        1
    );
    f.cleanup().await;
}

#[tokio::test]
async fn rules_across_members_hold_when_two_requests_race() {
    let f = Fixture::new(true).await;
    let ann = f.enroll("enrol-ann", json!({})).await;
    let bob = f.enroll("enrol-bob", json!({})).await;
    let now = Utc::now();
    let insert = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
                  VALUES ('member', $1, $2, $3, '1', $4, '{}')";

    // Another writer is committing Ann's purchase T-race right now: Bob's request passes the
    // early check (nothing committed yet), then the store's trigger waits for that writer and
    // refuses Bob's event once it committed.
    let mut other = f.db.pool().begin().await.unwrap();
    sqlx::query(insert)
        .bind(format!("acme/{ann}"))
        .bind(2_i64)
        .bind("PurchaseRecorded")
        .bind(json!({"PurchaseRecorded": {"transaction_id": "T-race"}}))
        .execute(&mut *other)
        .await
        .unwrap();
    let request = tokio::spawn({
        let pos = f.pos.clone();
        async move {
            pos.post(
                &format!("/v1/orgs/acme/members/{bob}/purchases"),
                "bob-race",
                &purchase("T-race", 1_000, now),
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !request.is_finished(),
        "the request should wait for the other writer"
    );
    other.commit().await.unwrap();
    let answer = request.await.unwrap();
    assert_error(&answer, 409, "transaction_claimed", Some("transaction_id"));

    // The same for an external id being enrolled by another writer.
    let mut other = f.db.pool().begin().await.unwrap();
    sqlx::query(insert)
        .bind(format!("acme/{}", Uuid::new_v4()))
        .bind(1_i64)
        .bind("MemberEnrolled")
        .bind(
            json!({"MemberEnrolled": {"external_id": "card-race", "display_name": null, "enrolled_at": now}}),
        )
        .execute(&mut *other)
        .await
        .unwrap();
    let request = tokio::spawn({
        let pos = f.pos.clone();
        async move {
            pos.post(
                "/v1/orgs/acme/members",
                "enrol-race",
                &json!({"external_id": "card-race"}),
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    other.commit().await.unwrap();
    let answer = request.await.unwrap();
    assert_error(&answer, 409, "external_id_taken", Some("external_id"));
    assert_eq!(
        f.count(&format!(
            "SELECT count(*) FROM events WHERE aggregate_id = 'acme/{bob}'"
        ))
        .await,
        1,
        "Bob has his enrolment only"
    );
    f.cleanup().await;
}

#[tokio::test]
async fn a_retry_with_the_same_key_gets_the_original_response_and_a_different_request_gets_409() {
    let f = Fixture::new(true).await;
    let member = f.enroll("enrol", json!({})).await;
    let path = format!("/v1/orgs/acme/members/{member}/purchases");
    let body = purchase("T-1", 2_500, Utc::now());

    let first = f.pos.post(&path, "key-1", &body).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let events = f.count("SELECT count(*) FROM events").await;

    let retry = f.pos.post(&path, "key-1", &body).await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.text, first.text, "a replay is byte for byte the original");
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    // The same JSON written differently is the same request.
    let reordered: Value = serde_json::from_str(&format!(
        r#"{{ "occurred_at": {},  "currency": "EUR", "amount_minor": 2500, "location_id": "store-1", "transaction_id": "T-1" }}"#,
        body["occurred_at"]
    ))
    .unwrap();
    let retry = f.pos.post(&path, "key-1", &reordered).await;
    assert_eq!((retry.status, retry.text.as_str()), (200, first.text.as_str()));
    assert_eq!(f.count("SELECT count(*) FROM events").await, events);

    let mut different = body.clone();
    different["amount_minor"] = json!(2_600);
    let conflict = f.pos.post(&path, "key-1", &different).await;
    assert_error(&conflict, 409, "idempotency_key_reused", Some("Idempotency-Key"));
    let elsewhere = f
        .pos
        .post(
            &format!("/v1/orgs/acme/members/{member}/refunds"),
            "key-1",
            &json!({"refund_id": "R", "transaction_id": "T-1", "amount_minor": 1}),
        )
        .await;
    assert_error(&elsewhere, 409, "idempotency_key_reused", Some("Idempotency-Key"));
    assert_eq!(f.count("SELECT count(*) FROM events").await, events);

    // A refused request stores no response: once the member can afford it, the retry works.
    let redeem = json!({"redemption_id": "X-1", "reward_id": "coffee"});
    let redemptions = format!("/v1/orgs/acme/members/{member}/redemptions");
    let refused = f.pos.post(&redemptions, "redeem-1", &redeem).await;
    assert_error(&refused, 422, "insufficient_points", Some("points"));
    let answer = f
        .pos
        .post(&path, "key-2", &purchase("T-2", 3_000, Utc::now()))
        .await;
    assert_eq!(answer.body["balance"], 55);
    let accepted = f.pos.post(&redemptions, "redeem-1", &redeem).await;
    assert_eq!(accepted.status, 200, "{}", accepted.text);
    assert_eq!(accepted.body["balance"], 5);
    f.cleanup().await;
}

#[tokio::test]
async fn a_retry_after_a_lost_response_answers_from_the_stored_events() {
    let f = Fixture::new(true).await;
    // An enrolment without member_id: the retry must name the same member, not a second one.
    let enrolled = f
        .pos
        .post(
            "/v1/orgs/acme/members",
            "enrol-lost",
            &json!({"display_name": "Ann"}),
        )
        .await;
    assert_eq!(enrolled.status, 201, "{}", enrolled.text);
    let member = enrolled.body["member_id"].as_str().unwrap().to_owned();
    let path = format!("/v1/orgs/acme/members/{member}/purchases");
    let body = purchase("T-1", 1_234, Utc::now());
    let bought = f.pos.post(&path, "buy-lost", &body).await;
    assert_eq!(bought.status, 200, "{}", bought.text);

    // As if the process died after the commit but before storing the responses.
    sqlx::query("DELETE FROM command_idempotency_keys")
        .execute(f.db.pool())
        .await
        .unwrap();
    let events = f.count("SELECT count(*) FROM events").await;

    let retried = f
        .pos
        .post(
            "/v1/orgs/acme/members",
            "enrol-lost",
            &json!({"display_name": "Ann"}),
        )
        .await;
    assert_eq!(retried.status, 201, "{}", retried.text);
    assert_eq!(retried.body, enrolled.body);
    let retried = f.pos.post(&path, "buy-lost", &body).await;
    assert_eq!(retried.status, 200, "{}", retried.text);
    assert_eq!(retried.body, bought.body);
    assert_eq!(
        f.count("SELECT count(*) FROM events").await,
        events,
        "nothing appended twice"
    );
    assert_eq!(f.count("SELECT count(*) FROM command_members").await, 1);

    // A different enrolment under the same key is not mistaken for the lost one.
    sqlx::query("DELETE FROM command_idempotency_keys")
        .execute(f.db.pool())
        .await
        .unwrap();
    let other = f
        .pos
        .post(
            "/v1/orgs/acme/members",
            "enrol-lost",
            &json!({"display_name": "Bob"}),
        )
        .await;
    assert_error(&other, 409, "member_exists", Some("member_id"));
    f.cleanup().await;
}

#[tokio::test]
async fn a_request_in_progress_holds_its_key_until_its_lease_ends() {
    let f = Fixture::new(true).await;
    let member = f.enroll("enrol", json!({})).await;
    let path = format!("/v1/orgs/acme/members/{member}/purchases");
    let body = purchase("T-1", 1_000, Utc::now());
    let key_id: Uuid = sqlx::query_scalar("SELECT key_id FROM api_keys WHERE role = 'pos'")
        .fetch_one(f.db.pool())
        .await
        .unwrap();
    // Another process holds the key for this very request.
    let hash = command_service::idempotency::request_hash("POST", &path, &body);
    sqlx::query(
        "INSERT INTO command_idempotency_keys (org_id, idempotency_key, request_hash, key_id, lease_id, locked_until) \
         VALUES ('acme', 'busy', $1, $2, gen_random_uuid(), now() + interval '1 hour')",
    )
    .bind(&hash)
    .bind(key_id)
    .execute(f.db.pool())
    .await
    .unwrap();
    let answer = f.pos.post(&path, "busy", &body).await;
    assert_error(&answer, 409, "request_in_progress", Some("Idempotency-Key"));
    assert_eq!(answer.headers["retry-after"], "1");
    assert_eq!(
        f.count("SELECT count(*) FROM events WHERE event_type = 'PurchaseRecorded'")
            .await,
        0
    );

    // The holder died: once its lease ran out, the retry takes the key over.
    sqlx::query("UPDATE command_idempotency_keys SET locked_until = now() - interval '1 second' WHERE idempotency_key = 'busy'")
        .execute(f.db.pool())
        .await
        .unwrap();
    let answer = f.pos.post(&path, "busy", &body).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.event_types(), ["PurchaseRecorded", "StampCollected"]);

    // Concurrent duplicates of one request: one runs, the others wait for it or replay it.
    let path = format!("/v1/orgs/acme/members/{member}/purchases");
    let body = purchase("T-2", 1_000, Utc::now());
    let answers = futures::future::join_all((0..8).map(|_| f.pos.post(&path, "same", &body))).await;
    let fresh: Vec<&ApiResponse> = answers
        .iter()
        .filter(|a| a.status == 200 && a.headers.get("idempotent-replayed").is_none())
        .collect();
    assert_eq!(fresh.len(), 1, "{answers:#?}");
    for answer in &answers {
        match answer.status {
            200 => assert_eq!(answer.text, fresh[0].text),
            409 => assert_eq!(answer.error_code(), Some("request_in_progress")),
            other => panic!("unexpected {other}: {}", answer.text),
        }
    }
    assert_eq!(
        f.count("SELECT count(*) FROM events WHERE event_type = 'PurchaseRecorded'")
            .await,
        2
    );
    f.cleanup().await;
}

#[tokio::test]
async fn two_different_requests_racing_with_one_key_append_once_and_the_loser_changes_nothing() {
    let f = Fixture::new(true).await;
    let ann = f.enroll("enrol-ann", json!({})).await;
    let bob = f.enroll("enrol-bob", json!({})).await;
    for round in 0..5 {
        let key = format!("shared-{round}");
        let (ann_path, bob_path) = (
            format!("/v1/orgs/acme/members/{ann}/purchases"),
            format!("/v1/orgs/acme/members/{bob}/purchases"),
        );
        let (ann_body, bob_body) = (
            purchase(&format!("A-{round}"), 1_000, Utc::now()),
            purchase(&format!("B-{round}"), 2_000, Utc::now()),
        );
        let (to_ann, to_bob) = tokio::join!(
            f.pos.post(&ann_path, &key, &ann_body),
            f.pos.post(&bob_path, &key, &bob_body),
        );
        let (won, lost) = if to_ann.status == 200 {
            (to_ann, to_bob)
        } else {
            (to_bob, to_ann)
        };
        assert_eq!(won.status, 200, "{}", won.text);
        assert_error(&lost, 409, "idempotency_key_reused", Some("Idempotency-Key"));
        // Only the winner's purchase is in the log, and the key answers it.
        assert_eq!(
            f.count(&format!(
                "SELECT count(*) FROM events WHERE event_type = 'PurchaseRecorded' \
                 AND metadata ->> 'idempotency_key' = '{key}'"
            ))
            .await,
            1
        );
        let stored: String = sqlx::query_scalar(
            "SELECT response_body FROM command_idempotency_keys WHERE idempotency_key = $1",
        )
        .bind(&key)
        .fetch_one(f.db.pool())
        .await
        .unwrap();
        assert_eq!(stored, won.text);
    }
    // The losers' members were not changed: each later purchase is its member's next one.
    let answer = f
        .pos
        .post(
            &format!("/v1/orgs/acme/members/{ann}/purchases"),
            "after",
            &purchase("A-after", 1_000, Utc::now()),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    f.cleanup().await;
}

#[tokio::test]
async fn a_duplicate_of_a_running_member_command_waits_for_it_and_replays_its_answer() {
    let f = Fixture::new(true).await;
    let member = f.enroll("enrol", json!({})).await;
    let path = format!("/v1/orgs/acme/members/{member}/purchases");
    let body = purchase("T-1", 1_000, Utc::now());

    // Appends to the event store wait while a test transaction holds its table lock.
    let mut blocker = f.db.pool().begin().await.unwrap();
    sqlx::query("LOCK TABLE events IN EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let send =
        |pos: ApiClient, path: String, body: Value| async move { pos.post(&path, "slow", &body).await };
    let first = tokio::spawn(send(f.pos.clone(), path.clone(), body.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let duplicate = tokio::spawn(send(f.pos.clone(), path.clone(), body.clone()));
    // The running request reserved nothing: its answer is written with its events.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        f.count("SELECT count(*) FROM command_idempotency_keys WHERE idempotency_key = 'slow'")
            .await,
        0
    );

    blocker.rollback().await.unwrap();
    let first = first.await.unwrap();
    let duplicate = duplicate.await.unwrap();
    assert_eq!(first.status, 200, "{}", first.text);
    assert!(first.headers.get("idempotent-replayed").is_none());
    assert_eq!(
        (duplicate.status, duplicate.text.as_str()),
        (200, first.text.as_str()),
        "the duplicate gets the first request's answer"
    );
    assert_eq!(duplicate.headers["idempotent-replayed"], "true");
    assert_eq!(
        f.count("SELECT count(*) FROM events WHERE event_type = 'PurchaseRecorded'")
            .await,
        1
    );
    // The answer was stored by the transaction that appended the events.
    let (same_transaction, stored): (bool, String) = sqlx::query_as(
        "SELECT k.xmin = e.xmin, k.response_body FROM command_idempotency_keys k \
         JOIN events e ON e.metadata ->> 'idempotency_key' = k.idempotency_key \
         WHERE k.idempotency_key = 'slow' AND e.event_type = 'PurchaseRecorded'",
    )
    .fetch_one(f.db.pool())
    .await
    .unwrap();
    assert!(same_transaction);
    assert_eq!(stored, first.text);
    f.cleanup().await;
}

#[tokio::test]
async fn health_readiness_metrics_and_the_openapi_document_are_served() {
    let f = Fixture::new(true).await;
    let anonymous = f.service.anonymous();
    let health = anonymous.get("/healthz").await;
    assert_eq!((health.status, health.body["status"].clone()), (200, json!("ok")));
    let ready = anonymous.get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.body["checks"], json!({"postgres": "up", "nats": "up"}));

    let doc = anonymous.get("/openapi.json").await;
    assert_eq!(doc.status, 200);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc.body["paths"]["/v1/orgs/{org}/members/{member_id}/purchases"]["post"].is_object());
    assert!(doc.body["components"]["securitySchemes"]["api_key"].is_object());

    // A request id is echoed (or made up) on every response.
    let answer = f.pos.get("/v1/orgs/acme/program").await;
    assert!(answer.headers.get("x-request-id").is_some());

    let member = f.enroll("enrol", json!({})).await;
    let answer = f
        .pos
        .post(
            &format!("/v1/orgs/acme/members/{member}/purchases"),
            "buy",
            &purchase("T-1", 1_000, Utc::now()),
        )
        .await;
    assert_eq!(answer.status, 200);
    // Give the relay a moment to publish so its gauges exist.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = reqwest::get(f.service.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        r#"command_http_requests_total{method="POST",route="/v1/orgs/{org}/members/{member_id}/purchases",status="200"}"#,
        r#"command_http_request_duration_seconds_bucket{method="POST",route="/v1/orgs/{org}/members/{member_id}/purchases",le="#,
        "relay_events_published_total",
        "relay_lag_events",
        "relay_lag_seconds",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from /metrics");
    }
    f.cleanup().await;
}
