//! A terminal retrying after a crash is answered within seconds: the `Idempotency-Key`
//! reservation a dead request leaves behind lasts one short lease (3 s), not half a minute.
//!
//! Member commands reserve nothing (their answer is stored with their events), but a purchase
//! still meets reservations: those of the writes that do reserve (program, jobs) under the same
//! key, and rows left by an earlier version of the service. The crash is written into the
//! database as the dead request left it: its reservation, just renewed, and (second test) the
//! events its command had already appended. A live reservation never has more than one lease
//! (3 s) left, so a request that dies at any moment frees its key within 3 s (third test, on a
//! program write).

use std::time::{Duration, Instant};

use common::keys::Role;
use loyalty_tests::{create_api_key, spawn_command_service, ApiClient, ApiResponse, TestDb, TestNats};
use serde_json::{json, Value};
use uuid::Uuid;

/// What the issue promises a retrying terminal after a crash.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

struct Setup {
    db: TestDb,
    nats: TestNats,
    pos: ApiClient,
    admin: ApiClient,
    path: String,
    body: Value,
    service: loyalty_tests::TestCommandService,
}

async fn setup() -> Setup {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let service = spawn_command_service(&db, &nats).await;
    let admin = service.client(&create_api_key(&db, "acme", Role::Admin).await);
    let pos = service.client(&create_api_key(&db, "acme", Role::Pos).await);
    let program = admin
        .put("/v1/orgs/acme/program", "program", &json!({"currency": "EUR"}))
        .await;
    assert_eq!(program.status, 200, "{}", program.text);
    let location = admin
        .post(
            "/v1/orgs/acme/locations",
            "location",
            &json!({"location_id": "store-1", "name": "Store 1"}),
        )
        .await;
    assert!(location.is_success(), "{}", location.text);
    let enrolled = pos.post("/v1/orgs/acme/members", "enrol", &json!({})).await;
    assert_eq!(enrolled.status, 201, "{}", enrolled.text);
    let member = enrolled.body["member_id"].as_str().unwrap().to_owned();
    let body = json!({
        "transaction_id": "T-1",
        "location_id": "store-1",
        "amount_minor": 12_345,
        "currency": "EUR",
        "occurred_at": "2026-05-01T10:00:00Z",
    });
    Setup {
        path: format!("/v1/orgs/acme/members/{member}/purchases"),
        db,
        nats,
        pos,
        admin,
        body,
        service,
    }
}

impl Setup {
    /// The reservation of a request that renewed its lease and died at once: held for a full
    /// lease from now, by a lease id no live request has.
    async fn leave_reservation(&self, key: &str) {
        let key_id: Uuid =
            sqlx::query_scalar("SELECT key_id FROM api_keys WHERE org_id = 'acme' AND role = 'pos'")
                .fetch_one(self.db.pool())
                .await
                .unwrap();
        let hash = command_service::idempotency::request_hash("POST", &self.path, &self.body);
        sqlx::query(
            "INSERT INTO command_idempotency_keys \
                 (org_id, idempotency_key, request_hash, key_id, lease_id, locked_until) \
             VALUES ('acme', $1, $2, $3, $4, now() + interval '3 seconds') \
             ON CONFLICT (org_id, idempotency_key) DO UPDATE \
                 SET lease_id = EXCLUDED.lease_id, locked_until = EXCLUDED.locked_until, \
                     status_code = NULL, response_body = NULL, completed_at = NULL",
        )
        .bind(key)
        .bind(hash)
        .bind(key_id)
        .bind(Uuid::new_v4())
        .execute(self.db.pool())
        .await
        .unwrap();
    }

    /// Retries as a terminal does (each `Retry-After` apart, here shortened to 200 ms) until a
    /// definitive answer; returns it and how long the terminal waited.
    async fn retry_until_answered(&self, key: &str) -> (ApiResponse, Duration, usize) {
        let started = Instant::now();
        let mut in_progress = 0;
        loop {
            let answer = self.pos.post(&self.path, key, &self.body).await;
            if answer.status != 409 {
                return (answer, started.elapsed(), in_progress);
            }
            assert_eq!(
                answer.error_code(),
                Some("request_in_progress"),
                "{}",
                answer.text
            );
            assert_eq!(
                answer.headers.get("retry-after").map(|v| v.to_str().unwrap()),
                Some("1"),
                "a request in progress tells the terminal when to retry"
            );
            in_progress += 1;
            assert!(
                started.elapsed() < ANSWER_WITHIN * 3,
                "still in progress after {:?}",
                started.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn purchases(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'PurchaseRecorded'")
            .fetch_one(self.db.pool())
            .await
            .unwrap()
    }

    async fn cleanup(self) {
        self.service.stop().await.unwrap();
        self.nats.cleanup().await;
        self.db.cleanup().await;
    }
}

#[tokio::test]
async fn a_retry_takes_over_the_key_of_a_request_that_died_before_its_command_ran() {
    let s = setup().await;
    s.leave_reservation("till-7:1").await;

    let (answer, waited, in_progress) = s.retry_until_answered("till-7:1").await;
    println!(
        "answered {} after {waited:?} ({in_progress} × 409 request_in_progress)",
        answer.status
    );
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(
        in_progress > 0,
        "the dead request's reservation was in force at first"
    );
    assert!(waited <= ANSWER_WITHIN, "the terminal waited {waited:?}");
    assert_eq!(s.purchases().await, 1);
    let replay = s.pos.post(&s.path, "till-7:1", &s.body).await;
    assert_eq!((replay.status, replay.text.as_str()), (200, answer.text.as_str()));
    s.cleanup().await;
}

#[tokio::test]
async fn a_retry_after_a_crash_between_append_and_answer_gets_the_same_answer_and_nothing_twice() {
    let s = setup().await;
    let first = s.pos.post(&s.path, "till-7:2", &s.body).await;
    assert_eq!(first.status, 200, "{}", first.text);
    // The events are committed; the crash took the stored answer with it.
    s.leave_reservation("till-7:2").await;

    let (answer, waited, in_progress) = s.retry_until_answered("till-7:2").await;
    println!(
        "answered {} after {waited:?} ({in_progress} × 409 request_in_progress)",
        answer.status
    );
    assert!(waited <= ANSWER_WITHIN, "the terminal waited {waited:?}");
    assert_eq!(
        (answer.status, answer.text.as_str()),
        (200, first.text.as_str()),
        "the answer the crash lost"
    );
    assert_eq!(s.purchases().await, 1, "the purchase is recorded once");
    s.cleanup().await;
}

#[tokio::test]
async fn a_running_request_holds_its_key_for_one_short_lease_past_its_last_renewal() {
    let s = setup().await;
    // The command waits for this transaction's lock on the event store, as long as the test
    // wants: the request is alive, reserved, renewing.
    let mut blocker = s.db.pool().begin().await.unwrap();
    sqlx::query("LOCK TABLE events IN EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let running = tokio::spawn({
        let admin = s.admin.clone();
        async move {
            let program = json!({"currency": "EUR", "earn_rate": 2});
            admin.put("/v1/orgs/acme/program", "till-7:3", &program).await
        }
    });
    let mut longest_left = Duration::ZERO;
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_millis(3_500) {
        // clock_timestamp(), not now(): a renewal that commits after this statement began but
        // before its snapshot would otherwise look longer than a lease.
        let left: Option<f64> = sqlx::query_scalar(
            "SELECT extract(epoch FROM locked_until - clock_timestamp())::float8 \
             FROM command_idempotency_keys \
             WHERE org_id = 'acme' AND idempotency_key = 'till-7:3'",
        )
        .fetch_optional(s.db.pool())
        .await
        .unwrap()
        .flatten();
        if let Some(left) = left {
            // Were the request to die now, a retry would take its key over this much later.
            longest_left = longest_left.max(Duration::from_secs_f64(left.max(0.0)));
            assert!(
                left > 0.0,
                "a live request lost its key: its lease is renewed in time"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("longest a dead request would have kept its key: {longest_left:?}");
    assert!(longest_left > Duration::ZERO, "the request reserved its key");
    assert!(
        longest_left <= Duration::from_secs(3),
        "a dead request would keep its key {longest_left:?}"
    );

    blocker.rollback().await.unwrap();
    let answer = running.await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text);
    s.cleanup().await;
}
