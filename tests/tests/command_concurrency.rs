//! Concurrent commands on one member: in one process they queue on the member; across processes
//! the optimistic lock and the retry make every purchase count exactly once.

use chrono::Utc;
use futures::future::join_all;
use loyalty_tests::{
    command_config, spawn_command_service_with, spawn_two_command_services, ApiClient, OrgKeys, TestDb,
    TestNats,
};
use serde_json::json;
use uuid::Uuid;

const PURCHASES: usize = 50;

fn amount(i: usize) -> i64 {
    1_000 + 37 * i as i64
}

/// Sends the purchases `indexes` through `client`, all at once.
async fn purchase_all(client: &ApiClient, member: Uuid, indexes: Vec<usize>) {
    let path = format!("/v1/orgs/acme/members/{member}/purchases");
    let now = Utc::now();
    let answers = join_all(indexes.into_iter().map(|i| {
        let path = path.clone();
        async move {
            let body = json!({
                "transaction_id": format!("T-{i}"),
                "location_id": "store-1",
                "amount_minor": amount(i),
                "currency": "EUR",
                "occurred_at": now,
            });
            client.post(&path, &format!("buy-{i}"), &body).await
        }
    }))
    .await;
    for answer in answers {
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(answer.event_types(), ["PurchaseRecorded"]);
    }
}

/// Every purchase is one event, sequences have no gap, each `balance_after` is the running sum
/// and the final balance is the sum of all points.
async fn assert_every_purchase_counted(db: &TestDb, client: &ApiClient, member: Uuid) {
    let rows: Vec<(i64, serde_json::Value)> = sqlx::query_as(
        "SELECT sequence, payload FROM events WHERE aggregate_id = $1 AND event_type = 'PurchaseRecorded' \
         ORDER BY sequence",
    )
    .bind(format!("acme/{member}"))
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(rows.len(), PURCHASES);
    let sequences: Vec<i64> = rows.iter().map(|(sequence, _)| *sequence).collect();
    assert_eq!(sequences, (2..2 + PURCHASES as i64).collect::<Vec<_>>());
    let mut running = 0;
    for (_, payload) in &rows {
        let purchase = &payload["PurchaseRecorded"];
        running += purchase["points_earned"].as_i64().unwrap();
        assert_eq!(purchase["balance_after"].as_i64().unwrap(), running);
    }
    let expected: i64 = (0..PURCHASES).map(|i| amount(i) / 100).sum();
    assert_eq!(running, expected);
    let view = client.get(&format!("/v1/orgs/acme/members/{member}")).await;
    assert_eq!(view.body["balance"].as_i64(), Some(expected), "{}", view.text);
}

#[tokio::test]
async fn fifty_concurrent_purchases_on_one_member_all_count() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    // Fifty at once is beyond the default bound on requests in flight: this test is about
    // every one of them counting, not about shedding (tests/tests/overload.rs).
    let mut config = command_config(&db, &nats);
    config.max_in_flight = PURCHASES;
    let service = spawn_command_service_with(config).await;
    let keys = OrgKeys::create(&db, "acme").await;
    let member = service.client(&keys.admin).acme_with_one_member().await;
    let pos = service.client(&keys.pos);

    purchase_all(&pos, member, (0..PURCHASES).collect()).await;
    assert_every_purchase_counted(&db, &pos, member).await;

    service.stop().await.unwrap();
    nats.cleanup().await;
    db.cleanup().await;
}

#[tokio::test]
async fn two_processes_purchasing_for_one_member_lose_no_update() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let (first, second) = spawn_two_command_services(&db, &nats).await;
    let keys = OrgKeys::create(&db, "acme").await;
    let member = first.client(&keys.admin).acme_with_one_member().await;
    let (a, b) = (first.client(&keys.pos), second.client(&keys.pos));
    // Both load the member first, so that each process decides on its own cached copy.
    for client in [&a, &b] {
        assert_eq!(
            client
                .get(&format!("/v1/orgs/acme/members/{member}"))
                .await
                .status,
            200
        );
    }

    tokio::join!(
        purchase_all(&a, member, (0..PURCHASES).step_by(2).collect()),
        purchase_all(&b, member, (1..PURCHASES).step_by(2).collect()),
    );
    assert_every_purchase_counted(&db, &a, member).await;
    assert_every_purchase_counted(&db, &b, member).await;
    // How often the processes collided (retried, not failed); informative, not asserted.
    let metrics = reqwest::get(first.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("command_optimistic_lock"))
    {
        eprintln!("{line}");
    }

    second.stop().await.unwrap();
    first.stop().await.unwrap();
    nats.cleanup().await;
    db.cleanup().await;
}

/// Buys 10.00 at `store-1` through `client` and returns the points earned.
async fn points_of_a_purchase(client: &ApiClient, member: Uuid, transaction: &str) -> i64 {
    let body = json!({
        "transaction_id": transaction,
        "location_id": "store-1",
        "amount_minor": 1_000,
        "currency": "EUR",
        "occurred_at": Utc::now(),
    });
    let answer = client
        .post(
            &format!("/v1/orgs/acme/members/{member}/purchases"),
            transaction,
            &body,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.body["events"][0]["payload"]["points_earned"]
        .as_i64()
        .unwrap()
}

/// Purchases through `client` until one earns `expected` points; panics if none does within a
/// second of `changed_at`.
async fn earns_within_a_second(
    client: &ApiClient,
    member: Uuid,
    expected: i64,
    changed_at: std::time::Instant,
    tag: &str,
) {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let points = points_of_a_purchase(client, member, &format!("{tag}-{attempt}")).await;
        if points == expected {
            return;
        }
        assert!(
            changed_at.elapsed() < std::time::Duration::from_secs(1),
            "{:?} after the program changed, purchases still earn {points} points, not {expected}",
            changed_at.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Each process keeps the programs in memory (a purchase does not read its program from the
/// store); a change made through another process reaches it by notification, within a second,
/// also after its listening connection was lost.
#[tokio::test]
async fn a_program_changed_by_another_process_applies_to_purchases_within_a_second() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let (first, second) = spawn_two_command_services(&db, &nats).await;
    let keys = OrgKeys::create(&db, "acme").await;
    let member = first.client(&keys.admin).acme_with_one_member().await;
    let pos = first.client(&keys.pos);
    let program = |earn_rate: i64| {
        json!({
            "currency": "EUR",
            "earn_rate": earn_rate,
            "tiers": [{"name": "Member", "threshold_points": 0, "multiplier_bps": 10000}]
        })
    };
    // The first process has the program in memory.
    assert_eq!(points_of_a_purchase(&pos, member, "before").await, 10);
    assert_eq!(points_of_a_purchase(&pos, member, "cached").await, 10);

    let answer = second
        .client(&keys.admin)
        .put("/v1/orgs/acme/program", "rate-3", &program(3))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    earns_within_a_second(&pos, member, 30, std::time::Instant::now(), "after").await;

    // Lose every listening connection of the program channel, then change the program again:
    // the first process must not keep deciding with what it held.
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%loyalty_program_changed%'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert!(killed >= 1, "no connection listened for program changes");
    let answer = second
        .client(&keys.admin)
        .put("/v1/orgs/acme/program", "rate-5", &program(5))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    earns_within_a_second(&pos, member, 50, std::time::Instant::now(), "relisten").await;

    // Purchases were decided with the program in memory.
    let cached = first
        .metric_sum(
            "command_aggregate_loads_total",
            &["aggregate=\"program\"", "source=\"cache\""],
        )
        .await;
    assert!(cached > 0.0, "no program was loaded from the cache");

    second.stop().await.unwrap();
    first.stop().await.unwrap();
    nats.cleanup().await;
    db.cleanup().await;
}
