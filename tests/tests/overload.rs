//! Overload is shed, not queued (issue 15, SPEC §7): a process that already works on as many
//! requests as it takes answers the next one at once with 503 `overloaded` and `Retry-After`,
//! stores nothing for it, and stays healthy; a key over its rate gets 429 `rate_limited`; the
//! query service sheds queries the same way. Work is held in flight by locking the tables the
//! requests need, so nothing here depends on timing.

use std::time::Duration;

use common::keys::Role;
use futures::future::join_all;
use loyalty_tests::{
    command_config, query_config, spawn_command_service_with, spawn_query_service_config, ApiClient,
    ApiResponse, OrgKeys, TestCommandService, TestDb, TestNats,
};
use serde_json::json;
use sqlx::{Connection as _, PgConnection};
use uuid::Uuid;

/// The services' gauges (`*_requests_in_flight_bound`, the shed counters) live in this test
/// process's one metrics recorder, shared by every service the tests start: tests that read
/// them run one at a time, or a service of another test overwrites the gauge being read.
static METRICS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits until `n` statements of `db` wait for a lock (the requests held in flight).
async fn wait_for_lock_waiters(db: &TestDb, n: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
        )
        .bind(db.name())
        .fetch_one(db.pool())
        .await
        .unwrap();
        if waiting >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{waiting} of {n} requests got in flight"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Holds every statement on `table` until the returned connection rolls back or closes.
async fn hold_lock(db: &TestDb, table: &str) -> PgConnection {
    let mut lock = PgConnection::connect(db.url()).await.unwrap();
    sqlx::query("BEGIN").execute(&mut lock).await.unwrap();
    sqlx::query(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        .execute(&mut lock)
        .await
        .unwrap();
    lock
}

/// A command service configured by `configure`, on its own database and stream, with acme's
/// admin and POS clients.
struct Acme {
    db: TestDb,
    nats: TestNats,
    service: TestCommandService,
    keys: OrgKeys,
    admin: ApiClient,
    pos: ApiClient,
}

impl Acme {
    async fn start(configure: impl FnOnce(&mut command_service::Config)) -> Self {
        let db = TestDb::new().await;
        let nats = TestNats::new().await;
        let mut config = command_config(&db, &nats);
        configure(&mut config);
        let service = spawn_command_service_with(config).await;
        let keys = OrgKeys::create(&db, "acme").await;
        let (admin, pos) = (service.client(&keys.admin), service.client(&keys.pos));
        Self {
            db,
            nats,
            service,
            keys,
            admin,
            pos,
        }
    }

    async fn stop(self) {
        self.service.stop().await.unwrap();
        self.nats.cleanup().await;
        self.db.cleanup().await;
    }
}

async fn enroll(admin: &ApiClient, key: &str) -> Uuid {
    let answer = admin.post("/v1/orgs/acme/members", key, &json!({})).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    answer.body["member_id"].as_str().unwrap().parse().unwrap()
}

fn purchase(n: usize) -> serde_json::Value {
    json!({
        "transaction_id": format!("T-{n}"),
        "location_id": "store-1",
        "amount_minor": 1_000,
        "currency": "EUR",
        "occurred_at": chrono::Utc::now(),
    })
}

async fn purchases_in_store(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'PurchaseRecorded'")
        .fetch_one(db.pool())
        .await
        .unwrap()
}

/// The value of a Prometheus sample line starting with `prefix`, if present.
fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

fn retry_after(answer: &ApiResponse) -> u64 {
    answer
        .headers
        .get("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After on {} {}", answer.status, answer.text))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn requests_beyond_the_bound_are_shed_at_once_and_change_nothing() {
    let _metrics = METRICS.lock().await;
    let acme = Acme::start(|config| config.max_in_flight = 2).await;
    let (db, service, admin, pos) = (&acme.db, &acme.service, &acme.admin, &acme.pos);
    let member = admin.acme_with_one_member().await;
    let other = enroll(admin, "m2").await;
    let path = format!("/v1/orgs/acme/members/{member}/purchases");

    // Two purchases (of two members: one member's commands queue in the process) that cannot
    // finish while the event store is locked.
    let mut lock = hold_lock(db, "events").await;
    let held: Vec<_> = [member, other]
        .into_iter()
        .enumerate()
        .map(|(n, id)| {
            let pos = pos.clone();
            let path = format!("/v1/orgs/acme/members/{id}/purchases");
            tokio::spawn(async move { pos.post(&path, &format!("held-{n}"), &purchase(n)).await })
        })
        .collect();
    let anonymous = service.anonymous();
    wait_for_lock_waiters(db, 2).await;

    // A third is refused while the two are still held: it did not wait in a queue.
    let shed = pos.post(&path, "third", &purchase(3)).await;
    assert_eq!(shed.status, 503, "{}", shed.text);
    assert_eq!(shed.body["error"]["code"], "overloaded");
    assert!(shed.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("capacity"));
    assert_eq!(retry_after(&shed), 1);
    assert!(
        held.iter().all(|task| !task.is_finished()),
        "the held requests are still running"
    );
    // Health and metrics stay answered.
    assert_eq!(anonymous.get("/healthz").await.status, 200);
    let metrics = anonymous.get("/metrics").await.text;
    assert!(
        sample(&metrics, "command_requests_shed_total{reason=\"in_flight\"}").unwrap_or(0.0) >= 1.0,
        "{metrics}"
    );

    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    for task in held {
        let answer = task.await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text);
    }
    assert_eq!(
        purchases_in_store(db).await,
        2,
        "the shed purchase stored nothing"
    );
    // Retried with its key, it is simply evaluated now.
    let retried = pos.post(&path, "third", &purchase(3)).await;
    assert_eq!(retried.status, 200, "{}", retried.text);
    assert_eq!(purchases_in_store(db).await, 3);

    acme.stop().await;
}

#[tokio::test]
async fn after_answers_slower_than_the_target_the_service_takes_fewer_requests_at_once() {
    let _metrics = METRICS.lock().await;
    // Set up through a process with a fixed bound: on a busy machine a set-up request slower
    // than the 50 ms target would already have cut the bound of the measured one.
    let acme = Acme::start(|_| {}).await;
    let (db, admin) = (&acme.db, &acme.admin);
    let mut members = vec![admin.acme_with_one_member().await];
    for n in 1..8 {
        members.push(enroll(admin, &format!("m{n}")).await);
    }
    let mut config = command_config(db, &acme.nats);
    config.relay_enabled = false;
    config.max_in_flight = 8;
    config.shed_latency_target_ms = 50;
    let measured = spawn_command_service_with(config).await;
    let pos = &measured.client(&acme.keys.pos);
    let bound = |metrics: &str| sample(metrics, "command_requests_in_flight_bound");
    let anonymous = measured.anonymous();
    assert_eq!(bound(&anonymous.get("/metrics").await.text), Some(8.0));
    let buy = |n: usize| {
        let pos = pos.clone();
        let path = format!("/v1/orgs/acme/members/{}/purchases", members[n % 8]);
        tokio::spawn(async move { pos.post(&path, &format!("buy-{n}"), &purchase(n)).await })
    };

    // One purchase answered well past the 50 ms target: the process was too busy for 8.
    let lock = hold_lock(db, "events").await;
    let slow = buy(0);
    wait_for_lock_waiters(db, 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    lock.close().await.unwrap();
    assert_eq!(slow.await.unwrap().status, 200);
    assert_eq!(bound(&anonymous.get("/metrics").await.text), Some(6.0));

    // Eight at once now: six are taken, two are shed at once.
    let lock = hold_lock(db, "events").await;
    let burst: Vec<_> = (1..=8).map(buy).collect();
    let answered = || burst.iter().filter(|task| task.is_finished()).count();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while answered() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        answered(),
        2,
        "two of eight answered (refused) while six are held"
    );
    lock.close().await.unwrap();
    let statuses: Vec<u16> = join_all(burst)
        .await
        .into_iter()
        .map(|answer| answer.unwrap().status)
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 6, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 503).count(), 2, "{statuses:?}");
    assert_eq!(purchases_in_store(db).await, 7, "the shed ones stored nothing");

    measured.stop().await.unwrap();
    acme.stop().await;
}

#[tokio::test]
async fn a_key_over_its_rate_gets_429_and_other_keys_do_not_notice() {
    let _metrics = METRICS.lock().await;
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let keys = OrgKeys::create(&db, "acme").await;
    // Set up through a process without a rate; measure through one with one request per
    // second and key.
    let open = spawn_command_service_with(command_config(&db, &nats)).await;
    let member = open.client(&keys.admin).acme_with_one_member().await;
    let mut config = command_config(&db, &nats);
    config.relay_enabled = false;
    config.rate_limit_per_key = 1;
    let service = spawn_command_service_with(config).await;
    let pos = service.client(&keys.pos);
    let member_path = format!("/v1/orgs/acme/members/{member}");

    let answers = join_all((0..12).map(|_| pos.get(&member_path))).await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "{statuses:?}");
    let limited: Vec<&ApiResponse> = answers.iter().filter(|a| a.status == 429).collect();
    assert!(limited.len() >= 10, "a burst of one request passes: {statuses:?}");
    for answer in &limited {
        assert_eq!(answer.body["error"]["code"], "rate_limited");
        assert!(retry_after(answer) >= 1);
    }
    // A write over the rate stores nothing.
    let path = format!("/v1/orgs/acme/members/{member}/purchases");
    let refused = pos.post(&path, "buy", &purchase(1)).await;
    assert_eq!(refused.status, 429, "{}", refused.text);
    assert_eq!(purchases_in_store(&db).await, 0);
    // Another key is not affected.
    assert_eq!(service.client(&keys.admin).get(&member_path).await.status, 200);
    // After the wait it asked for, the same request goes through.
    tokio::time::sleep(Duration::from_secs(retry_after(&refused))).await;
    let accepted = pos.post(&path, "buy", &purchase(1)).await;
    assert_eq!(accepted.status, 200, "{}", accepted.text);
    assert_eq!(purchases_in_store(&db).await, 1);

    service.stop().await.unwrap();
    open.stop().await.unwrap();
    nats.cleanup().await;
    db.cleanup().await;
}

#[tokio::test]
async fn the_query_service_sheds_queries_beyond_its_bound() {
    let _metrics = METRICS.lock().await;
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let mut config = query_config(&db, &nats);
    config.max_in_flight = 1;
    let service = spawn_query_service_config(config).await;
    let analyst = common::keys::create_key(db.pool(), "acme", Role::Analyst)
        .await
        .unwrap();
    let query = json!({
        "query": "query($org: ID!) { members(orgId: $org, first: 5) { edges { node { memberId } } } }",
        "variables": {"org": "acme"},
    });
    let http = reqwest::Client::new();
    let ask = || {
        http.post(service.url("/graphql"))
            .bearer_auth(&analyst)
            .json(&query)
            .send()
    };
    // Answered while nothing is held.
    assert_eq!(ask().await.unwrap().status(), 200);

    let mut lock = hold_lock(&db, "rm.member_directory").await;
    let held = tokio::spawn(ask());
    wait_for_lock_waiters(&db, 1).await;
    let shed = ask().await.unwrap();
    assert_eq!(shed.status(), 503);
    assert_eq!(shed.headers()["retry-after"], "1");
    let body: serde_json::Value = shed.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "OVERLOADED", "{body}");
    assert!(!held.is_finished());
    assert_eq!(
        http.get(service.url("/healthz")).send().await.unwrap().status(),
        200
    );

    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    assert_eq!(held.await.unwrap().unwrap().status(), 200);
    assert_eq!(ask().await.unwrap().status(), 200);

    service.stop().await.unwrap();
    nats.cleanup().await;
    db.cleanup().await;
}
