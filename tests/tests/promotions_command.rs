//! Promotions through the command API (SPEC §9, §11), against real Postgres and NATS: a
//! promotion added, changed and ended through the admin endpoints shows in the next purchase;
//! a quote equals what the same purchase then earns and records nothing; bad promotions and bad
//! basket lines are refused naming the field, and change nothing.

use chrono::{DateTime, Duration, Utc};
use loyalty_client::{MemberRef, Purchase, Quote};
use loyalty_tests::{
    spawn_command_service, ApiClient, ApiResponse, OrgKeys, TestCommandService, TestDb, TestNats,
};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

const ORG: &str = "acme";

struct Fixture {
    db: TestDb,
    nats: TestNats,
    service: TestCommandService,
    admin: ApiClient,
    pos: ApiClient,
    storefront: ApiClient,
}

impl Fixture {
    /// A service, the keys of `acme`, its locations `store-1` and `store-2`, and `program`.
    async fn new(program: Value) -> Self {
        let db = TestDb::new().await;
        let nats = TestNats::new().await;
        let service = spawn_command_service(&db, &nats).await;
        let keys = OrgKeys::create(&db, ORG).await;
        let fixture = Self {
            admin: service.client(&keys.admin),
            pos: service.client(&keys.pos),
            storefront: service.client(&keys.storefront),
            db,
            nats,
            service,
        };
        let answer = fixture
            .admin
            .put(
                "/v1/orgs/acme/program",
                "setup-program",
                &json!({"currency": "EUR"}),
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        for location in ["store-1", "store-2"] {
            let body = json!({"location_id": location, "name": location});
            let answer = fixture
                .admin
                .post("/v1/orgs/acme/locations", &format!("setup-{location}"), &body)
                .await;
            assert_eq!(answer.status, 201, "{}", answer.text);
        }
        // Configured once the locations exist, since promotions may name them.
        let answer = fixture
            .admin
            .put("/v1/orgs/acme/program", "setup-promotions", &program)
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        fixture
    }

    async fn cleanup(self) {
        self.service.stop().await.expect("the service stops cleanly");
        self.nats.cleanup().await;
        self.db.cleanup().await;
    }

    async fn enroll(&self, key: &str, external_id: &str) -> Uuid {
        let answer = self
            .pos
            .post("/v1/orgs/acme/members", key, &json!({"external_id": external_id}))
            .await;
        assert_eq!(answer.status, 201, "{}", answer.text);
        answer.body["member_id"].as_str().unwrap().parse().unwrap()
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(self.db.pool()).await.unwrap()
    }

    /// Rows of every table a command can write, and the program's version: a refused request
    /// changes none of them.
    async fn stored(&self) -> [i64; 5] {
        let program = self.admin.get("/v1/orgs/acme/program").await;
        [
            self.count("SELECT count(*) FROM events").await,
            self.count("SELECT count(*) FROM command_idempotency_keys").await,
            self.count("SELECT count(*) FROM command_transaction_claims")
                .await,
            self.count("SELECT coalesce(sum(spent), 0)::bigint FROM command_promotion_budgets")
                .await,
            program.body["version"].as_i64().unwrap(),
        ]
    }
}

fn promotion(id: &str, effect: Value) -> Value {
    json!({
        "promotion_id": id,
        "name": format!("Promotion {id}"),
        "starts_at": Utc::now() - Duration::hours(1),
        "effect": effect,
    })
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

fn assert_error(answer: &ApiResponse, status: u16, code: &str, field: Option<&str>) {
    assert_eq!(answer.status, status, "{}", answer.text);
    assert_eq!(answer.error_code(), Some(code), "{}", answer.text);
    assert_eq!(answer.error_field(), field, "{}", answer.text);
}

/// The points `promotion_id` added to a purchase answer (0 when it did not apply).
fn promotion_points(answer: &ApiResponse, promotion_id: &str) -> i64 {
    answer.body["breakdown"]["promotions"]
        .as_array()
        .unwrap_or_else(|| panic!("no breakdown in {}", answer.text))
        .iter()
        .filter(|applied| applied["promotion_id"] == promotion_id)
        .map(|applied| applied["points"].as_i64().unwrap())
        .sum()
}

#[tokio::test]
async fn a_promotion_added_changed_and_ended_through_the_api_shows_in_the_next_purchase() {
    let f = Fixture::new(json!({"currency": "EUR", "earn_rate": 1})).await;
    let member = f.enroll("enrol", "card-1").await;
    let purchases = format!("/v1/orgs/acme/members/{member}/purchases");
    // Occurring now: after an end the test asked for before.
    let buy = |n: u32| purchase(&format!("T-{n}"), 1_000, Utc::now());

    let before = f.pos.post(&purchases, "buy-0", &buy(0)).await;
    assert_eq!(before.status, 200, "{}", before.text);
    assert_eq!(before.body["breakdown"]["promotions"], json!([]));
    let base_total = before.body["breakdown"]["total"].as_i64().unwrap();
    assert!(base_total > 0);
    let version = f.admin.get("/v1/orgs/acme/program").await.body["version"]
        .as_i64()
        .unwrap();

    // Add: 201 with the program, a new version; the same request again answers the same.
    let bonus = promotion("welcome", json!({"bonus": {"points": 20}}));
    let added = f
        .admin
        .post("/v1/orgs/acme/promotions", "add-welcome", &bonus)
        .await;
    assert_eq!(added.status, 201, "{}", added.text);
    assert_eq!(added.body["version"].as_i64(), Some(version + 1));
    assert_eq!(added.body["config"]["promotions"][0]["promotion_id"], "welcome");
    let again = f
        .admin
        .post("/v1/orgs/acme/promotions", "add-welcome", &bonus)
        .await;
    assert_eq!((again.status, &again.text), (201, &added.text));
    assert_eq!(
        again
            .headers
            .get("idempotent-replayed")
            .map(|v| v.to_str().unwrap()),
        Some("true")
    );
    let other = promotion("welcome", json!({"bonus": {"points": 21}}));
    let reused = f
        .admin
        .post("/v1/orgs/acme/promotions", "add-welcome", &other)
        .await;
    assert_error(&reused, 409, "idempotency_key_reused", Some("Idempotency-Key"));
    let exists = f
        .admin
        .post("/v1/orgs/acme/promotions", "add-welcome-twice", &other)
        .await;
    assert_eq!(exists.status, 409, "{}", exists.text);
    assert_eq!(exists.error_code(), Some("promotion_exists"), "{}", exists.text);

    let body = buy(1);
    let with_bonus = f.pos.post(&purchases, "buy-1", &body).await;
    assert_eq!(with_bonus.status, 200, "{}", with_bonus.text);
    assert_eq!(promotion_points(&with_bonus, "welcome"), 20);
    assert_eq!(
        with_bonus.body["breakdown"]["total"].as_i64(),
        Some(base_total + 20)
    );
    // The purchase retried answers the same, breakdown included.
    let retried = f.pos.post(&purchases, "buy-1", &body).await;
    assert_eq!((retried.status, &retried.text), (200, &with_bonus.text));
    // Sent again under another key: nothing new, and the breakdown it was awarded.
    let resent = f.pos.post(&purchases, "buy-1-again", &body).await;
    assert_eq!(resent.status, 200, "{}", resent.text);
    assert_eq!(resent.body["events"], json!([]));
    assert_eq!(resent.body["breakdown"], with_bonus.body["breakdown"]);

    // Change: the body replaces the promotion; its id must be the path's.
    let changed = promotion("welcome", json!({"bonus": {"points": 35}}));
    let answer = f
        .admin
        .put("/v1/orgs/acme/promotions/welcome", "change-welcome", &changed)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["version"].as_i64(), Some(version + 2));
    assert_eq!(
        answer.body["config"]["promotions"][0]["effect"],
        json!({"bonus": {"points": 35}})
    );
    let again = f
        .admin
        .put("/v1/orgs/acme/promotions/welcome", "change-welcome", &changed)
        .await;
    assert_eq!((again.status, &again.text), (200, &answer.text));
    let mismatch = f
        .admin
        .put("/v1/orgs/acme/promotions/other", "change-other", &changed)
        .await;
    assert_error(&mismatch, 422, "promotion_id_mismatch", Some("promotion_id"));
    let unknown = promotion("nope", json!({"bonus": {"points": 5}}));
    let answer = f
        .admin
        .put("/v1/orgs/acme/promotions/nope", "change-nope", &unknown)
        .await;
    assert_eq!(answer.status, 404, "{}", answer.text);
    assert_eq!(answer.error_code(), Some("promotion_not_found"));

    let with_change = f.pos.post(&purchases, "buy-2", &buy(2)).await;
    assert_eq!(with_change.status, 200, "{}", with_change.text);
    assert_eq!(promotion_points(&with_change, "welcome"), 35);

    // End (no body: now); the next purchase no longer gets it.
    let ended = f
        .admin
        .send(
            Method::POST,
            "/v1/orgs/acme/promotions/welcome/end",
            Some("end-welcome"),
            None,
        )
        .await;
    assert_eq!(ended.status, 200, "{}", ended.text);
    assert_eq!(ended.body["version"].as_i64(), Some(version + 3));
    assert!(
        ended.body["config"]["promotions"][0]["ends_at"].is_string(),
        "{}",
        ended.text
    );
    let again = f
        .admin
        .send(
            Method::POST,
            "/v1/orgs/acme/promotions/welcome/end",
            Some("end-welcome"),
            None,
        )
        .await;
    assert_eq!((again.status, &again.text), (200, &ended.text));
    let unknown = f
        .admin
        .post("/v1/orgs/acme/promotions/nope/end", "end-nope", &json!({}))
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);

    let after_end = f.pos.post(&purchases, "buy-3", &buy(3)).await;
    assert_eq!(after_end.status, 200, "{}", after_end.text);
    assert_eq!(after_end.body["breakdown"]["promotions"], json!([]));
    assert_eq!(after_end.body["breakdown"]["total"].as_i64(), Some(base_total));

    // Only admins administer promotions.
    let refused = f
        .pos
        .post(
            "/v1/orgs/acme/promotions",
            "pos-add",
            &promotion("pos", json!({"bonus": {"points": 1}})),
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.text);

    // The balance is the sum of what the answers said.
    let earned: i64 = [&before, &with_bonus, &with_change, &after_end]
        .iter()
        .map(|answer| answer.body["breakdown"]["total"].as_i64().unwrap())
        .sum();
    let view = f.pos.get(&format!("/v1/orgs/acme/members/{member}")).await;
    assert_eq!(view.body["balance"].as_i64(), Some(earned));
    f.cleanup().await;
}

/// Several promotions at once: stackable ones, a basket-scoped one, a first-purchase bonus and a
/// budgeted one.
fn busy_program() -> Value {
    let start = Utc::now() - Duration::hours(1);
    json!({
        "currency": "EUR",
        "earn_rate": 1,
        "promotions": [
            {"promotion_id": "double", "name": "Double", "starts_at": start,
             "effect": {"multiplier": {"multiplier_bps": 20000}}, "stackable": true},
            {"promotion_id": "coffee", "name": "5 per coffee", "starts_at": start,
             "conditions": {"categories": ["coffee"]},
             "effect": {"per_unit": {"points": 5}}, "stackable": true},
            {"promotion_id": "first", "name": "First purchase", "starts_at": start,
             "conditions": {"first_purchase": true}, "effect": {"bonus": {"points": 100}}},
            {"promotion_id": "big", "name": "Big basket", "starts_at": start,
             "conditions": {"min_amount_minor": 3000, "location_ids": ["store-1"]},
             "effect": {"bonus": {"points": 40}}, "priority": 1},
            {"promotion_id": "budget", "name": "While it lasts", "starts_at": start,
             "effect": {"bonus": {"points": 4}}, "stackable": true, "budget_points": 10}
        ]
    })
}

#[tokio::test]
async fn a_quote_equals_what_the_purchase_then_earns_and_records_nothing() {
    let f = Fixture::new(busy_program()).await;
    let member = f.enroll("enrol", "card-1").await;
    let pos = f.pos.typed();
    let occurred_at = Utc::now() - Duration::seconds(1);
    let basket = |n: usize, amount_minor: i64, coffees: u32| Purchase {
        transaction_id: format!("T-{n}"),
        location_id: if n % 3 == 2 { "store-2" } else { "store-1" }.into(),
        amount_minor,
        currency: "EUR".into(),
        occurred_at,
        items: (coffees > 0).then(|| {
            vec![
                loyalty_client::Item {
                    sku: Some("COF-1".into()),
                    category: Some("coffee".into()),
                    quantity: coffees,
                    amount_minor: 300 * i64::from(coffees),
                },
                loyalty_client::Item {
                    sku: None,
                    category: Some("bakery".into()),
                    quantity: 1,
                    amount_minor: amount_minor - 300 * i64::from(coffees),
                },
            ]
        }),
    };
    let purchases = [
        basket(0, 1_500, 2),
        basket(1, 4_000, 0),
        basket(2, 3_500, 1),
        basket(3, 2_000, 3),
        basket(4, 5_000, 0),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for (n, purchase) in purchases.iter().enumerate() {
        // By id and by external id in turn.
        let by = if n % 2 == 0 {
            MemberRef::Id(member)
        } else {
            MemberRef::External("card-1")
        };
        let before = f.stored().await;
        let quote: Quote = pos.quote_purchase(ORG, by, purchase).await.unwrap();
        // Asked twice, with an Idempotency-Key this time: the same answer.
        let path = match by {
            MemberRef::Id(id) => format!("/v1/orgs/acme/members/{id}/purchase-quotes"),
            MemberRef::External(card) => {
                format!("/v1/orgs/acme/members/by-external-id/{card}/purchase-quotes")
            }
        };
        let body = serde_json::to_value(purchase).unwrap();
        let again = f.pos.post(&path, &format!("quote-{n}"), &body).await;
        assert_eq!(again.status, 200, "{}", again.text);
        assert_eq!(again.body["points"].as_i64(), Some(quote.points));
        assert_eq!(f.stored().await, before, "a quote records nothing");

        let recorded = pos
            .record_purchase(ORG, by, &format!("buy-{n}"), purchase)
            .await
            .unwrap();
        let breakdown = recorded.breakdown.expect("the purchase's breakdown");
        assert_eq!(quote.points, breakdown.total, "purchase {n}");
        assert_eq!(quote.breakdown, breakdown, "purchase {n}");
        let total: i64 = breakdown.tier_points + breakdown.promotions.iter().map(|p| p.points).sum::<i64>();
        assert_eq!(breakdown.total, total);
        seen.extend(breakdown.promotions.iter().map(|p| p.promotion_id.clone()));

        // The next quote sees this purchase: the first-purchase bonus is gone.
        let next = pos.quote_purchase(ORG, by, &basket(99, 1_000, 0)).await.unwrap();
        assert_eq!(next.breakdown.promotion_points("first"), 0);
    }
    // The quotes did exercise the promotions (each applied at least once).
    for promotion in ["double", "coffee", "first", "big", "budget"] {
        assert!(seen.contains(promotion), "{promotion} never applied: {seen:?}");
    }
    let spent: i64 = f
        .count("SELECT spent FROM command_promotion_budgets WHERE promotion_id = 'budget'")
        .await;
    assert_eq!(
        spent, 10,
        "the budgeted promotion spent its budget, and quotes drew nothing"
    );

    // Quotes are for POS and admin keys, and for enrolled members.
    let body = serde_json::to_value(&purchases[0]).unwrap();
    let refused = f
        .storefront
        .post(
            &format!("/v1/orgs/acme/members/{member}/purchase-quotes"),
            "q",
            &body,
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    let unknown = f
        .pos
        .send(
            Method::POST,
            &format!("/v1/orgs/acme/members/{}/purchase-quotes", Uuid::new_v4()),
            None,
            Some(&body),
        )
        .await;
    assert_error(&unknown, 404, "member_not_found", Some("member_id"));
    f.cleanup().await;
}

#[tokio::test]
async fn bad_promotions_are_refused_naming_the_field_and_change_nothing() {
    let f = Fixture::new(json!({"currency": "EUR"})).await;
    let good = promotion("ok", json!({"bonus": {"points": 5}}));
    let added = f.admin.post("/v1/orgs/acme/promotions", "add-ok", &good).await;
    assert_eq!(added.status, 201, "{}", added.text);
    let before = f.stored().await;

    let with = |field: &str, value: Value| {
        let mut body = promotion("new", json!({"bonus": {"points": 5}}));
        body[field] = value;
        body
    };
    let start = Utc::now();
    #[rustfmt::skip]
    let cases: Vec<(Value, &str)> = vec![
        // Unknown fields, at the top and nested.
        (with("colour", json!("red")), "colour"),
        (with("conditions", json!({"min_amount_minor": 1, "colour": "red"})), "conditions.colour"),
        (with("effect", json!({"double": {"multiplier_bps": 20000}})), "effect"),
        // Windows with from >= to, bad days and times.
        (with("schedule", json!({"days": ["tue"], "from": "18:00", "to": "14:00"})), "schedule.to"),
        (with("schedule", json!({"days": ["tue"], "from": "14:00", "to": "14:00"})), "schedule.to"),
        (with("schedule", json!({"days": ["tuesday"], "from": "14:00", "to": "18:00"})), "schedule.days[0]"),
        (with("schedule", json!({"days": ["tue"], "from": "25:00", "to": "26:00"})), "schedule.from"),
        (with("ends_at", json!(start - Duration::days(2))), "ends_at"),
        // Multipliers outside 1.0001×..10×.
        (with("effect", json!({"multiplier": {"multiplier_bps": 10000}})), "effect.multiplier.multiplier_bps"),
        (with("effect", json!({"multiplier": {"multiplier_bps": 100001}})), "effect.multiplier.multiplier_bps"),
        // Negative (or no) points.
        (with("effect", json!({"bonus": {"points": -5}})), "effect.bonus.points"),
        (with("effect", json!({"per_unit": {"points": 0}})), "effect.per_unit.points"),
        (with("budget_points", json!(-1)), "budget_points"),
        (with("conditions", json!({"min_amount_minor": -1})), "conditions.min_amount_minor"),
        (with("limit", json!({"count": 0, "period": "day"})), "limit.count"),
        (with("limit", json!({"count": 1, "period": "year"})), "limit.period"),
        // Unknown locations and tiers.
        (with("conditions", json!({"location_ids": ["store-1", "store-9"]})), "conditions.location_ids[1]"),
        (with("conditions", json!({"tiers": ["Diamond"]})), "conditions.tiers[0]"),
        // Bad ids and names.
        (with("promotion_id", json!("")), "promotion_id"),
        (with("name", json!(" ")), "name"),
        (with("starts_at", json!("yesterday")), "starts_at"),
    ];
    for (n, (body, field)) in cases.iter().enumerate() {
        let answer = f
            .admin
            .post("/v1/orgs/acme/promotions", &format!("bad-{n}"), body)
            .await;
        assert_eq!(answer.status, 422, "{body}: {}", answer.text);
        assert_eq!(answer.error_field(), Some(*field), "{body}: {}", answer.text);
    }
    // A duplicate id is a conflict.
    let answer = f.admin.post("/v1/orgs/acme/promotions", "dup", &good).await;
    assert_error(&answer, 409, "promotion_exists", Some("promotion_id"));
    // Changing into a bad promotion is refused the same way.
    let mut bad = good.clone();
    bad["effect"] = json!({"multiplier": {"multiplier_bps": 5}});
    let answer = f
        .admin
        .put("/v1/orgs/acme/promotions/ok", "bad-change", &bad)
        .await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert_eq!(answer.error_field(), Some("effect.multiplier.multiplier_bps"));
    let answer = f
        .admin
        .post(
            "/v1/orgs/acme/promotions/ok/end",
            "bad-end",
            &json!({"ends_at": "soon"}),
        )
        .await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert_eq!(answer.error_field(), Some("ends_at"));

    // The whole program: the settings of §9 are checked the same way.
    let program = |settings: Value| {
        let mut body = json!({"currency": "EUR", "promotions": [good.clone()]});
        for (key, value) in settings.as_object().unwrap() {
            body[key] = value.clone();
        }
        body
    };
    #[rustfmt::skip]
    let cases: Vec<(Value, &str)> = vec![
        (program(json!({"time_zone": "Mars/Olympus"})), "time_zone"),
        (program(json!({"earn_cap": {"points": 0, "period": "day"}})), "earn_cap.points"),
        (program(json!({"earn_cap": {"points": 10, "period": "year"}})), "earn_cap.period"),
        (program(json!({"promotions": [good.clone(), good.clone()]})), "promotions[1].promotion_id"),
        (program(json!({"promotions": [with("conditions", json!({"tiers": ["Diamond"]}))]})), "promotions[0].conditions.tiers[0]"),
        (program(json!({"promotions": [with("colour", json!("red"))]})), "promotions[0].colour"),
    ];
    for (n, (body, field)) in cases.iter().enumerate() {
        let answer = f
            .admin
            .put("/v1/orgs/acme/program", &format!("bad-program-{n}"), body)
            .await;
        assert_eq!(answer.status, 422, "{body}: {}", answer.text);
        assert_eq!(answer.error_field(), Some(*field), "{body}: {}", answer.text);
    }
    assert_eq!(f.stored().await, before, "refused requests changed nothing");
    f.cleanup().await;
}

#[tokio::test]
async fn bad_basket_lines_are_refused_naming_the_field_and_change_nothing() {
    let f = Fixture::new(json!({
        "currency": "EUR",
        "promotions": [promotion("coffee", json!({"per_unit": {"points": 5}}))]
    }))
    .await;
    let member = f.enroll("enrol", "card-1").await;
    let now = Utc::now() - Duration::seconds(1);
    let good = {
        let mut body = purchase("T-1", 1_000, now);
        body["items"] = json!([
            {"sku": "COF-1", "category": "coffee", "quantity": 2, "amount_minor": 600},
            {"quantity": 1, "amount_minor": 400}
        ]);
        body
    };
    let with_items = |items: Value| {
        let mut body = good.clone();
        body["items"] = items;
        body
    };
    let line = |quantity: i64, amount_minor: i64| json!({"sku": "COF-1", "quantity": quantity, "amount_minor": amount_minor});
    let long = "x".repeat(129);
    #[rustfmt::skip]
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (with_items(json!([line(1, 600), line(1, 300)])), 422, "invalid_items", "items"),
        (with_items(json!([line(1, 600), line(1, 500)])), 422, "invalid_items", "items"),
        (with_items(json!([])), 422, "invalid_items", "items"),
        (with_items(json!([line(0, 1_000)])), 422, "invalid_items", "items"),
        (with_items(json!([line(1, 1_100), line(1, -100)])), 422, "invalid_items", "items"),
        (with_items(json!([{"sku": long, "quantity": 1, "amount_minor": 1_000}])), 422, "invalid_items", "items"),
        (with_items(json!([{"sku": "", "quantity": 1, "amount_minor": 1_000}])), 422, "invalid_items", "items"),
        (with_items(json!([{"sku": "COF-1", "quantity": 1, "amount_minor": 1_000, "colour": "red"}])), 400, "unknown_field", "items[0].colour"),
        (with_items(json!([{"sku": "COF-1", "quantity": -1, "amount_minor": 1_000}])), 400, "invalid_field", "items[0].quantity"),
        (with_items(json!([{"sku": "COF-1", "amount_minor": 1_000}])), 400, "missing_field", "items[0].quantity"),
        (with_items(json!((0..501).map(|_| line(1, 2)).collect::<Vec<_>>())), 422, "invalid_items", "items"),
    ];
    let before = f.stored().await;
    for (n, (body, status, code, field)) in cases.iter().enumerate() {
        for path in ["purchases", "purchase-quotes"] {
            let answer = f
                .pos
                .post(
                    &format!("/v1/orgs/acme/members/{member}/{path}"),
                    &format!("bad-{n}"),
                    body,
                )
                .await;
            assert_error(&answer, *status, code, Some(field));
        }
    }
    assert_eq!(f.stored().await, before, "refused baskets changed nothing");

    // The good basket is recorded, lines and all.
    let answer = f
        .pos
        .post(
            &format!("/v1/orgs/acme/members/{member}/purchases"),
            "good",
            &good,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(promotion_points(&answer, "coffee"), 5 * 3);
    assert_eq!(answer.body["events"][0]["payload"]["items"], good["items"]);
    f.cleanup().await;
}
