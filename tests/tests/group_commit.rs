//! Group commit (issue 14): concurrent commands on different members are appended by one
//! statement, and each still gets its own outcome; a crash after such a statement committed
//! loses nothing and doubles nothing when the terminals retry.
//!
//! The tests make batches deterministic with one append worker and a key row the test inserts
//! in a transaction of its own and keeps open: the statement that completes that key waits for
//! the test's transaction, so the commands sent meanwhile queue behind it and are taken together
//! by the worker's next statement.

#[allow(dead_code)]
#[path = "chaos/servers.rs"]
mod servers;

use std::process::Command;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::keys::Role;
use loyalty_tests::{
    command_config, create_api_key, spawn_command_service_with, ApiClient, ApiResponse, OrgKeys,
    TestCommandService, TestDb, TestNats,
};
use serde_json::{json, Value};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::servers::{Process, Scratch};

const PATIENCE: Duration = Duration::from_secs(30);

fn program() -> Value {
    json!({
        "currency": "EUR",
        "earn_rate": 1,
        "rewards": [{"reward_id": "coffee", "name": "Coffee", "points_cost": 50}]
    })
}

fn purchase(transaction_id: &str, amount_minor: i64) -> Value {
    json!({
        "transaction_id": transaction_id,
        "location_id": "store-1",
        "amount_minor": amount_minor,
        "currency": "EUR",
        "occurred_at": Utc::now(),
    })
}

/// 1 point per euro, and 5 bonus points from a 1,000-point budget on purchases of at least
/// `min_amount_minor` (every purchase: `None`).
fn budgeted_program(min_amount_minor: Option<i64>) -> Value {
    let promotion = loyalty_client::Promotion {
        budget_points: Some(1_000),
        conditions: loyalty_client::Conditions {
            min_amount_minor,
            ..Default::default()
        },
        ..loyalty_client::Promotion::new(
            "bonus",
            "5 bonus points",
            Utc::now() - chrono::Duration::hours(1),
            loyalty_client::Effect::Bonus { points: 5 },
        )
    };
    let program = loyalty_client::Program {
        earn_rate: Some(1),
        promotions: vec![promotion],
        ..loyalty_client::Program::new("EUR")
    };
    serde_json::to_value(&program).unwrap()
}

fn purchases(member: Uuid) -> String {
    format!("/v1/orgs/acme/members/{member}/purchases")
}

/// Keeps key `key` of `acme` taken by an open transaction of the test: the statement that
/// completes it waits until the transaction ends (rolled back: the key is free again).
async fn hold_key(pool: &PgPool, key: &str) -> Transaction<'static, Postgres> {
    let mut held = pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO command_idempotency_keys (org_id, idempotency_key, request_hash, key_id) \
         VALUES ('acme', $1, 'held by the test', gen_random_uuid())",
    )
    .bind(key)
    .execute(&mut *held)
    .await
    .unwrap();
    held
}

/// Waits until an append statement waits for a lock the test holds.
async fn wait_for_blocked_append(pool: &PgPool) {
    let started = Instant::now();
    loop {
        let blocked: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock' \
               AND query LIKE 'WITH answers%'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if blocked > 0 {
            return;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "no append waited for the test's lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The transaction ids (xmin) of the `PurchaseRecorded` events of `transaction_ids`, distinct.
async fn writing_transactions(pool: &PgPool, transaction_ids: &[&str]) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT DISTINCT xmin::text FROM events WHERE event_type = 'PurchaseRecorded' \
           AND payload -> 'PurchaseRecorded' ->> 'transaction_id' = ANY($1)",
    )
    .bind(transaction_ids)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

struct Setup {
    db: TestDb,
    nats: TestNats,
    services: Vec<TestCommandService>,
    pos: ApiClient,
    members: Vec<Uuid>,
}

/// A service with one append worker (and `extra` more services with the defaults on the same
/// database), org `acme` with its program, location `store-1` and `members` members.
async fn setup(members: usize, extra: usize) -> Setup {
    setup_with(program(), members, extra).await
}

/// As `setup`, with `program`.
async fn setup_with(program: Value, members: usize, extra: usize) -> Setup {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let mut config = command_config(&db, &nats);
    config.append_workers = 1;
    let mut services = vec![spawn_command_service_with(config).await];
    for _ in 0..extra {
        services.push(spawn_command_service_with(command_config(&db, &nats)).await);
    }
    let keys = OrgKeys::create(&db, "acme").await;
    let admin = services[0].client(&keys.admin);
    let pos = services[0].client(&keys.pos);
    let answer = admin.put("/v1/orgs/acme/program", "program", &program).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let location = json!({"location_id": "store-1", "name": "Store 1"});
    let answer = admin.post("/v1/orgs/acme/locations", "location", &location).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let mut enrolled = Vec::new();
    for i in 0..members {
        let answer = pos
            .post("/v1/orgs/acme/members", &format!("enrol-{i}"), &json!({}))
            .await;
        assert_eq!(answer.status, 201, "{}", answer.text);
        enrolled.push(answer.body["member_id"].as_str().unwrap().parse().unwrap());
    }
    Setup {
        db,
        nats,
        services,
        pos,
        members: enrolled,
    }
}

/// The one append worker kept busy by the test: a purchase of the first member under key
/// `first`, which the test holds, its statement waiting.
struct Occupied {
    held: Transaction<'static, Postgres>,
    first: tokio::task::JoinHandle<ApiResponse>,
}

impl Occupied {
    /// Frees the worker once the purchases sent meanwhile have reached its queue; its own
    /// purchase then commits (and is answered 200), and the queue is the next batch.
    async fn release(self) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.held.rollback().await.unwrap();
        let first = self.first.await.unwrap();
        assert_eq!(first.status, 200, "{}", first.text);
    }
}

impl Setup {
    async fn occupy_the_worker(&self) -> Occupied {
        let held = hold_key(self.db.pool(), "first").await;
        let first = self.post(purchases(self.members[0]), "first", purchase("T-0", 1_000));
        wait_for_blocked_append(self.db.pool()).await;
        Occupied { held, first }
    }

    fn post(&self, path: String, key: &str, body: Value) -> tokio::task::JoinHandle<ApiResponse> {
        let (pos, key) = (self.pos.clone(), key.to_owned());
        tokio::spawn(async move { pos.post(&path, &key, &body).await })
    }

    async fn cleanup(self) {
        for service in self.services {
            service.stop().await.unwrap();
        }
        self.nats.cleanup().await;
        self.db.cleanup().await;
    }
}

#[tokio::test]
async fn purchases_of_different_members_waiting_together_commit_in_one_transaction() {
    let s = setup(4, 0).await;
    let occupied = s.occupy_the_worker().await;
    let waiting: Vec<_> = (1..4)
        .map(|i| {
            s.post(
                purchases(s.members[i]),
                &format!("p-{i}"),
                purchase(&format!("T-{i}"), 1_000),
            )
        })
        .collect();
    occupied.release().await;

    for answer in waiting {
        let answer = answer.await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(answer.body["balance"], 10);
    }
    let batch = writing_transactions(s.db.pool(), &["T-1", "T-2", "T-3"]).await;
    assert_eq!(
        batch.len(),
        1,
        "the three waiting purchases share one transaction"
    );
    assert_ne!(writing_transactions(s.db.pool(), &["T-0"]).await, batch);
    // Each answer was stored by that same transaction.
    let answers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM command_idempotency_keys \
         WHERE idempotency_key LIKE 'p-%' AND xmin::text = $1",
    )
    .bind(&batch[0])
    .fetch_one(s.db.pool())
    .await
    .unwrap();
    assert_eq!(answers, 3);
    s.cleanup().await;
}

#[tokio::test]
async fn a_purchase_drawing_on_a_budget_is_appended_by_a_statement_of_its_own() {
    // 5 bonus points on purchases from 50.00, from a budget: a row every such purchase writes.
    let s = setup_with(budgeted_program(Some(5_000)), 5, 0).await;
    let occupied = s.occupy_the_worker().await;
    let waiting = [
        s.post(purchases(s.members[1]), "big", purchase("T-BIG", 5_000)),
        s.post(purchases(s.members[2]), "p-2", purchase("T-2", 1_000)),
        s.post(purchases(s.members[3]), "p-3", purchase("T-3", 1_000)),
    ];
    occupied.release().await;

    let mut balances = Vec::new();
    for answer in waiting {
        let answer = answer.await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text);
        balances.push(answer.body["balance"].as_i64().unwrap());
    }
    assert_eq!(balances, [55, 10, 10], "the big basket got its bonus");
    let plain = writing_transactions(s.db.pool(), &["T-2", "T-3"]).await;
    assert_eq!(plain.len(), 1, "the plain purchases share one transaction");
    let big = writing_transactions(s.db.pool(), &["T-BIG"]).await;
    assert_ne!(big, plain, "the budget's draw went alone");
    let spent: i64 = sqlx::query_scalar("SELECT spent FROM command_promotion_budgets")
        .fetch_one(s.db.pool())
        .await
        .unwrap();
    assert_eq!(spent, 5);
    s.cleanup().await;
}

#[tokio::test]
async fn purchases_drawing_on_one_budget_take_turns_and_none_loses_its_draw() {
    // 5 bonus points on every purchase, from a budget.
    let s = setup_with(budgeted_program(None), 21, 0).await;
    let first = s
        .pos
        .post(&purchases(s.members[0]), "first", &purchase("T-0", 1_000))
        .await;
    assert_eq!(first.status, 200, "{}", first.text);
    let conflicts = || s.services[0].metric_sum("command_budget_conflicts_total", &[]);
    let before = conflicts().await;

    // The org's purchases draw on the budget: twenty at once take turns, each decided with
    // what the previous one left, so none is refused by the budget's trigger.
    let answers = futures::future::join_all((1..=20).map(|i| {
        s.post(
            purchases(s.members[i]),
            &format!("p-{i}"),
            purchase(&format!("T-{i}"), 1_000),
        )
    }))
    .await;
    for answer in answers {
        let answer = answer.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(answer.body["balance"], 15, "{}", answer.text);
    }
    assert_eq!(conflicts().await - before, 0.0);
    let spent: i64 = sqlx::query_scalar("SELECT spent FROM command_promotion_budgets")
        .fetch_one(s.db.pool())
        .await
        .unwrap();
    assert_eq!(spent, 21 * 5);
    s.cleanup().await;
}

#[tokio::test]
async fn a_batch_with_a_conflict_and_a_claimed_transaction_commits_the_others_and_answers_each() {
    // Service 0 appends with one worker; service 1 writes behind its back.
    let s = setup(6, 1).await;
    let keys = OrgKeys::create(&s.db, "acme").await;
    let other_pos = s.services[1].client(&keys.pos);
    let m = &s.members;
    // T-CLAIM is m4's; m2 is cached by service 0, then changed by service 1.
    let answer = s
        .pos
        .post(&purchases(m[4]), "claim", &purchase("T-CLAIM", 1_000))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let answer = s
        .pos
        .post(&purchases(m[2]), "warm", &purchase("T-WARM", 1_000))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let answer = other_pos
        .post(&purchases(m[2]), "behind", &purchase("T-BEHIND", 2_000))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);

    let occupied = s.occupy_the_worker().await;
    let good = s.post(purchases(m[1]), "good", purchase("T-GOOD", 1_000));
    let stale = s.post(purchases(m[2]), "stale", purchase("T-STALE", 4_000));
    let claimed = s.post(purchases(m[5]), "claimed", purchase("T-CLAIM", 1_000));
    let refused = s.post(
        format!("/v1/orgs/acme/members/{}/redemptions", m[3]),
        "refused",
        json!({"redemption_id": "R-1", "reward_id": "coffee"}),
    );
    occupied.release().await;

    let good = good.await.unwrap();
    assert_eq!(
        (good.status, &good.body["balance"]),
        (200, &json!(10)),
        "{}",
        good.text
    );
    // Decided again on the member as service 1 left it: 10 + 20 + 40 points.
    let stale = stale.await.unwrap();
    assert_eq!(
        (stale.status, &stale.body["balance"]),
        (200, &json!(70)),
        "{}",
        stale.text
    );
    let claimed = claimed.await.unwrap();
    assert_eq!(claimed.status, 409, "{}", claimed.text);
    assert_eq!(claimed.body["error"]["code"], "transaction_claimed");
    let refused = refused.await.unwrap();
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert_eq!(refused.body["error"]["code"], "insufficient_points");

    let pool = s.db.pool();
    let recorded = |transaction_id: &str| {
        format!(
            "SELECT count(*) FROM events WHERE event_type = 'PurchaseRecorded' \
             AND payload -> 'PurchaseRecorded' ->> 'transaction_id' = '{transaction_id}'"
        )
    };
    for (transaction_id, times) in [("T-GOOD", 1), ("T-STALE", 1), ("T-CLAIM", 1), ("T-0", 1)] {
        assert_eq!(
            count(pool, &recorded(transaction_id)).await,
            times,
            "{transaction_id}"
        );
    }
    let m5_events = count(
        pool,
        &format!("SELECT count(*) FROM events WHERE aggregate_id LIKE '%{}'", m[5]),
    )
    .await;
    assert_eq!(
        m5_events, 1,
        "the claimed purchase appended nothing (the enrolment only)"
    );
    // The refused and the claimed requests stored no answer: their retries are evaluated again.
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM command_idempotency_keys WHERE idempotency_key IN ('claimed', 'refused')"
        )
        .await,
        0
    );
    // The batch's statement was refused and its commands appended one by one.
    let splits = s.services[0]
        .metric_sum("command_append_batch_splits_total", &[])
        .await;
    assert!(splits >= 1.0, "no batch was split");
    s.cleanup().await;
}

#[tokio::test]
async fn a_crash_after_a_batch_committed_loses_no_answer_and_doubles_no_purchase() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let scratch = Scratch::new();
    let binary = servers::binary("command-service", "command-service");
    let port = servers::free_port();
    let env = vec![
        ("DATABASE_URL", db.url().to_owned()),
        ("NATS_URL", nats.url().to_owned()),
        ("NATS_STREAM", nats.stream().to_owned()),
        ("NATS_SUBJECT_PREFIX", nats.subject_prefix().to_owned()),
        ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
        ("SECRETS_PEPPER", loyalty_tests::TEST_PEPPER.to_owned()),
        ("APPEND_WORKERS", "1".to_owned()),
        ("SHED_LATENCY_TARGET_MS", "0".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    let mut service = Process::new("command-service", &scratch.0, move || {
        let mut command = Command::new(&binary);
        command.envs(env.iter().cloned());
        command
    });
    service.start();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    servers::wait_ok(&http, &format!("{base}/readyz"), PATIENCE).await;
    let client = loyalty_client::Client::with_http(http.clone(), &base);
    let admin = client.with_key(create_api_key(&db, "acme", Role::Admin).await);
    let pos = client.with_key(create_api_key(&db, "acme", Role::Pos).await);
    let post = |client: &loyalty_client::Client, path: String, key: &str, body: Value| {
        let (client, key) = (client.clone(), key.to_owned());
        async move {
            client
                .send(reqwest::Method::POST, &path, Some(&key), Some(&body))
                .await
        }
    };
    let answer = admin
        .send(
            reqwest::Method::PUT,
            "/v1/orgs/acme/program",
            Some("program"),
            Some(&program()),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text);
    let location = json!({"location_id": "store-1", "name": "Store 1"});
    let answer = post(&admin, "/v1/orgs/acme/locations".into(), "location", location)
        .await
        .unwrap();
    assert_eq!(answer.status, 201, "{}", answer.text);
    let mut members = Vec::new();
    for i in 0..4 {
        let answer = post(
            &pos,
            "/v1/orgs/acme/members".into(),
            &format!("enrol-{i}"),
            json!({}),
        )
        .await
        .unwrap();
        assert_eq!(answer.status, 201, "{}", answer.text);
        members.push(
            answer.body["member_id"]
                .as_str()
                .unwrap()
                .parse::<Uuid>()
                .unwrap(),
        );
    }

    // The worker's first statement waits for key "first"; the batch after it, for key "p-1".
    let held_first = hold_key(db.pool(), "first").await;
    let held_batch = hold_key(db.pool(), "p-1").await;
    let first = tokio::spawn(post(&pos, purchases(members[0]), "first", purchase("T-0", 1_000)));
    wait_for_blocked_append(db.pool()).await;
    let requests: Vec<(String, String, Value)> = (1..4)
        .map(|i| {
            (
                purchases(members[i]),
                format!("p-{i}"),
                purchase(&format!("T-{i}"), 1_000),
            )
        })
        .collect();
    let batch: Vec<_> = requests
        .iter()
        .map(|(path, key, body)| tokio::spawn(post(&pos, path.clone(), key, body.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    held_first.rollback().await.unwrap();
    assert_eq!(first.await.unwrap().unwrap().status, 200);
    // The three waiting purchases are now one statement, waiting for "p-1": kill -9.
    wait_for_blocked_append(db.pool()).await;
    service.kill();
    for request in batch {
        assert!(request.await.unwrap().is_err(), "no answer from a killed service");
    }
    // The statement was sent before the crash: it commits once the test lets it.
    held_batch.rollback().await.unwrap();
    let started = Instant::now();
    let committed = loop {
        let committed = writing_transactions(db.pool(), &["T-1", "T-2", "T-3"]).await;
        if !committed.is_empty() || started.elapsed() > PATIENCE {
            break committed;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        committed.len(),
        1,
        "the batch committed after the crash, as one transaction"
    );

    // The terminals retry against the restarted service: each gets its answer, once.
    service.start();
    servers::wait_ok(&http, &format!("{base}/readyz"), PATIENCE).await;
    for (i, (path, key, body)) in requests.iter().enumerate() {
        let answer = post(&pos, path.clone(), key, body.clone()).await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(answer.headers["idempotent-replayed"], "true", "{key}");
        assert_eq!(answer.body["events"][0]["type"], "PurchaseRecorded");
        assert_eq!(
            answer.body["events"][0]["payload"]["transaction_id"],
            format!("T-{}", i + 1)
        );
        assert_eq!(answer.body["balance"], 10);
    }
    assert_eq!(
        count(
            db.pool(),
            "SELECT count(*) FROM events WHERE event_type = 'PurchaseRecorded'"
        )
        .await,
        4
    );
    service.kill();
    nats.cleanup().await;
    db.cleanup().await;
}
