//! At-least-once delivery, gaps, poison events and crashes: the read models stay exactly what
//! the event store says.

use std::time::Duration;

use chrono::Utc;
use loyalty_tests::{
    projector_config, spawn_projector, spawn_projector_with, wait_first_applied, TestDb, TestNats,
};
use sqlx::{Connection as _, PgConnection};

use crate::support::{
    all_events, consumer_backlog, create_stream, program_config, publish, random_workload, snapshot,
    start_relay, t, wait_consumer_drained, wait_projected, Log, Rng,
};

async fn small_history(log: &mut Log, org: &str, members: usize) -> Vec<uuid::Uuid> {
    log.configure(org, program_config("EUR"), t("2024-01-01T00:00:00Z"))
        .await;
    log.location(org, "shop", t("2024-01-01T00:00:00Z")).await;
    let mut ids = Vec::new();
    for m in 0..members {
        let id = log
            .enroll(org, Some(&format!("M {m}")), None, t("2024-01-02T00:00:00Z"))
            .await;
        for p in 0..3 {
            let at = t("2024-02-01T10:00:00Z") + chrono::Duration::days(p);
            log.purchase(org, id, &format!("{m}-{p}"), "shop", 12_345 * (p + 1), at)
                .await;
        }
        log.refund(
            org,
            id,
            &format!("{m}-r"),
            &format!("{m}-0"),
            5_000,
            t("2024-03-01T00:00:00Z"),
        )
        .await;
        ids.push(id);
    }
    log.flush().await;
    ids
}

/// Waits until every event of the store is applied or parked (each aggregate's events numbered
/// from 1, so the checkpoints' sum counts the applied ones).
async fn every_event_applied_or_parked(pool: &sqlx::PgPool) {
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (applied, parked): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT coalesce(sum(last_sequence), 0)::bigint FROM rm.projection_checkpoints), \
                    (SELECT count(*) FROM rm.parked_events)",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if applied + parked == total {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{applied} applied, {parked} parked of {total}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn gaps_are_filled_from_the_store_and_redeliveries_change_nothing() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let pool = db.pool().clone();
    let mut log = Log::new(&pool);
    small_history(&mut log, "gappy", 20).await;
    let events = all_events(&pool).await;
    // The stream loses some events: the 2nd, 3rd and 5th of one member, the last of another.
    let member_a = events
        .iter()
        .find(|e| e.aggregate_type == "member")
        .unwrap()
        .aggregate_id
        .clone();
    let member_b = events
        .iter()
        .rev()
        .find(|e| e.aggregate_type == "member")
        .unwrap()
        .aggregate_id
        .clone();
    let lost = |e: &domain::wire::StoredEvent| {
        (e.aggregate_id == member_a && [2, 3, 5].contains(&e.sequence))
            || (e.aggregate_id == member_b && e.sequence >= 4)
    };
    let delivered: Vec<_> = events.iter().filter(|e| !lost(e)).cloned().collect();
    assert!(delivered.len() < events.len());
    create_stream(&nats).await;
    publish(&nats, &delivered, true).await;

    let projector = spawn_projector(&db, &nats, "gappy").await;
    // member_b's lost tail is only noticed when something of member_b arrives after it.
    let tail: Vec<_> = events
        .iter()
        .filter(|e| e.aggregate_id == member_b && e.sequence >= 4)
        .cloned()
        .collect();
    publish(&nats, &tail[tail.len() - 1..], true).await;
    wait_projected(&pool, Duration::from_secs(30)).await;
    wait_consumer_drained(&nats, "gappy", Duration::from_secs(30)).await;
    let before = snapshot(&pool).await;
    let audit = projector::audit::audit(&pool, "rm").await.unwrap();
    assert!(audit.is_clean(), "{audit}");
    assert_eq!(audit.events_replayed, events.len());

    // Everything again, without message ids (the stream cannot drop them as duplicates)...
    publish(&nats, &events, false).await;
    wait_consumer_drained(&nats, "gappy", Duration::from_secs(30)).await;
    projector.stop().await.unwrap();
    assert_eq!(
        snapshot(&pool).await,
        before,
        "a redelivery changed the read models"
    );
    // ... and the whole stream once more to a consumer that starts over from the beginning.
    nats.jetstream()
        .get_stream(nats.stream())
        .await
        .unwrap()
        .delete_consumer("gappy")
        .await
        .unwrap();
    let projector = spawn_projector(&db, &nats, "gappy").await;
    wait_consumer_drained(&nats, "gappy", Duration::from_secs(30)).await;
    projector.stop().await.unwrap();
    assert_eq!(
        snapshot(&pool).await,
        before,
        "a redelivery changed the read models"
    );

    nats.cleanup().await;
    db.cleanup().await;
}

#[tokio::test]
async fn poison_events_are_parked_and_hold_back_only_their_member() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let pool = db.pool().clone();
    let mut log = Log::new(&pool);
    let org = "poison";
    log.configure(org, program_config("EUR"), t("2024-01-01T00:00:00Z"))
        .await;
    log.location(org, "shop", t("2024-01-01T00:00:00Z")).await;
    let alice = log
        .enroll(org, Some("Alice"), None, t("2024-01-02T00:00:00Z"))
        .await;
    let bob = log
        .enroll(org, Some("Bob"), None, t("2024-01-02T00:00:00Z"))
        .await;
    log.purchase(org, alice, "a1", "shop", 10_000, t("2024-01-03T00:00:00Z"))
        .await;
    log.flush().await;
    // A bad row in the log (a bug of some writer): Alice's 4th event has an unreadable payload.
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('member', $1, 4, 'RewardRedeemed', '1', '{\"RewardRedeemed\": {\"points\": \"lots\"}}', '{}')",
    )
    .bind(format!("{org}/{alice}"))
    .execute(&pool)
    .await
    .unwrap();
    log.skip_sequence(&format!("{org}/{alice}"));
    log.purchase(org, alice, "a2", "shop", 20_000, t("2024-01-04T00:00:00Z"))
        .await;
    log.purchase(org, bob, "b1", "shop", 30_000, t("2024-01-04T00:00:00Z"))
        .await;
    log.flush().await;
    // Bob's purchase was parked by a projector bug that has been fixed since.
    sqlx::query(
        "INSERT INTO rm.parked_events (aggregate_type, aggregate_id, sequence, payload, error) \
         VALUES ('member', $1, 2, '{}', 'simulated: a projector bug, fixed since')",
    )
    .bind(format!("{org}/{bob}"))
    .execute(&pool)
    .await
    .unwrap();

    let relay = start_relay(&db, &nats).await;
    let projector = spawn_projector(&db, &nats, "poison").await;
    // Something that is not an event at all.
    create_stream(&nats).await;
    nats.jetstream()
        .publish(
            format!("{}.{org}.member", nats.subject_prefix()),
            "not json".into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM rm.parked_events")
            .fetch_one(&pool)
            .await
            .unwrap();
        if parked == 6 {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            let rows: Vec<(String, String, i64, Option<i64>, String)> = sqlx::query_as(
                "SELECT aggregate_type, aggregate_id, sequence, blocked_by, error FROM rm.parked_events",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            panic!("parked {parked}: {rows:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_consumer_drained(&nats, "poison", Duration::from_secs(30)).await;

    type Parked = (String, i64, Option<i64>, String);
    let parked: Vec<Parked> = sqlx::query_as(
        "SELECT aggregate_type, sequence, blocked_by, error FROM rm.parked_events \
         WHERE aggregate_id NOT LIKE $1 ORDER BY aggregate_type, sequence",
    )
    .bind(format!("%{bob}"))
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(parked.len(), 4, "{parked:?}");
    assert_eq!(
        parked[0].0, "",
        "the unreadable message is parked under its stream sequence"
    );
    assert!(parked[0].3.starts_with("unreadable message"), "{parked:?}");
    assert_eq!((parked[1].1, parked[1].2), (4, None));
    assert!(
        parked[1].3.contains("payload is not a member event"),
        "{}",
        parked[1].3
    );
    // Alice's later purchase (event 5 and its stamp, 6) waits behind event 4.
    assert_eq!(
        parked[2..].iter().map(|p| (p.1, p.2)).collect::<Vec<_>>(),
        [(5, Some(4)), (6, Some(4))]
    );
    let balances: Vec<(String, i64)> = sqlx::query_as(
        "SELECT d.display_name, b.balance FROM rm.member_balances b JOIN rm.member_directory d USING (org_id, member_id) \
         ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(balances, [("Alice".to_owned(), 100), ("Bob".to_owned(), 0)]);
    let checkpoint: i64 =
        sqlx::query_scalar("SELECT last_sequence FROM rm.projection_checkpoints WHERE aggregate_id = $1")
            .bind(format!("{org}/{alice}"))
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(checkpoint, 3);

    // Parking is visible to operators.
    let metrics = reqwest::get(projector.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let parked_total: f64 = metrics
        .lines()
        .find(|l| l.starts_with("projector_events_parked_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no parked counter in:\n{metrics}"));
    assert!(parked_total >= 4.0, "{parked_total}");
    for metric in [
        "projector_events_applied_total{read_model=\"balance\"}",
        "projector_batch_size",
        "projector_event_lag_seconds",
    ] {
        assert!(metrics.contains(metric), "{metric} missing:\n{metrics}");
    }
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            reqwest::get(projector.url(path)).await.unwrap().status(),
            200,
            "{path}"
        );
    }

    // After the fix, a retry applies Bob's purchase and stamp; Alice's event is still bad and
    // stays parked with everything behind it.
    let retry = projector::Projector::new(pool.clone(), "rm")
        .unwrap()
        .retry_parked()
        .await
        .unwrap();
    assert_eq!(retry.unblocked, [("member".to_owned(), format!("{org}/{bob}"))]);
    assert_eq!(
        retry.still_parked,
        [("member".to_owned(), format!("{org}/{alice}"))]
    );
    assert_eq!(retry.applied, 2);
    let balances: Vec<i64> = sqlx::query_scalar("SELECT balance FROM rm.member_balances ORDER BY balance")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(balances, [100, 300]);
    let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM rm.parked_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(parked, 4);
    // The replay parks exactly the same events.
    let audit = projector::audit::audit(&pool, "rm").await.unwrap();
    assert!(audit.is_clean(), "{audit}");

    projector.stop().await.unwrap();
    relay.stop().await;
    nats.cleanup().await;
    db.cleanup().await;
}

#[tokio::test]
async fn an_event_postgres_refuses_is_parked_alone_and_the_rest_of_its_batch_applies() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let pool = db.pool().clone();
    let mut log = Log::new(&pool);
    let org = "nul";
    let members = small_history(&mut log, org, 10).await;
    // A buggy writer stored a stamp of a card id with a NUL character: valid JSON, valid for
    // the projector's rules, but Postgres text cannot hold it, so the whole batch is refused.
    log.purchase(org, members[3], "bad", "shop", 1_000, t("2024-04-01T00:00:00Z"))
        .await;
    let mut stamp = log.take_last();
    stamp.payload["StampCollected"]["card_id"] = "co\u{0}ffee".into();
    log.flush().await;
    // Stored as JSON text (the `json` column keeps `\u0000`; a jsonb parameter would not).
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('member', $1, $2, $3, '1', $4::text::json, '{}')",
    )
    .bind(&stamp.aggregate_id)
    .bind(stamp.sequence as i64)
    .bind(&stamp.event_type)
    .bind(stamp.payload.to_string())
    .execute(&pool)
    .await
    .unwrap();
    log.purchase(org, members[3], "after", "shop", 1_000, t("2024-04-02T00:00:00Z"))
        .await;
    log.purchase(org, members[4], "fine", "shop", 1_000, t("2024-04-01T00:00:00Z"))
        .await;
    log.flush().await;
    let relay = start_relay(&db, &nats).await;
    let projector = spawn_projector(&db, &nats, "nul").await;
    every_event_applied_or_parked(&pool).await;
    let parked: Vec<(String, Option<i64>, String)> =
        sqlx::query_as("SELECT event_type, blocked_by, error FROM rm.parked_events ORDER BY sequence")
            .fetch_all(&pool)
            .await
            .unwrap();
    // The culprit (the stamp, sequence 12 of the member; its purchase, 11, is applied), then
    // the later purchase and its stamp, waiting behind it.
    assert_eq!(parked.len(), 3, "{parked:?}");
    assert_eq!((parked[0].0.as_str(), parked[0].1), ("StampCollected", None));
    assert!(parked[0].2.contains("0x00"), "{}", parked[0].2);
    assert!(parked[1..].iter().all(|p| p.1 == Some(12)), "{parked:?}");
    let bad: i64 = sqlx::query_scalar("SELECT count(*) FROM rm.purchases WHERE transaction_id = 'bad'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(bad, 1);
    let fine: i64 = sqlx::query_scalar("SELECT count(*) FROM rm.purchases WHERE transaction_id = 'fine'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(fine, 1);
    let audit = projector::audit::audit(&pool, "rm").await.unwrap();
    assert!(audit.is_clean(), "{audit}");

    projector.stop().await.unwrap();
    relay.stop().await;
    nats.cleanup().await;
    db.cleanup().await;
}

#[tokio::test]
async fn a_duplicate_key_is_parked_alone_and_the_audit_replays_it_through_the_batch_path() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let pool = db.pool().clone();
    let mut log = Log::new(&pool);
    let org = "dup";
    let members = small_history(&mut log, org, 6).await;
    // A buggy writer stored a member's card completion twice: the projector's rules accept it
    // (the event says how many cards are completed), but Postgres refuses the second reward
    // issued for the same completion. The audit's fold writes it where no key is checked.
    let aggregate = format!("{org}/{}", members[2]);
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         SELECT aggregate_type, aggregate_id, (SELECT max(sequence) + 1 FROM events WHERE aggregate_id = $1), \
                event_type, event_version, payload, metadata \
         FROM events WHERE aggregate_id = $1 AND event_type = 'StampCardCompleted'",
    )
    .bind(&aggregate)
    .execute(&pool)
    .await
    .unwrap();
    log.skip_sequence(&aggregate);
    log.purchase(org, members[2], "after", "shop", 1_000, t("2024-04-02T00:00:00Z"))
        .await;
    log.purchase(org, members[4], "fine", "shop", 1_000, t("2024-04-02T00:00:00Z"))
        .await;
    log.flush().await;
    let relay = start_relay(&db, &nats).await;
    let projector = spawn_projector(&db, &nats, "dup").await;
    every_event_applied_or_parked(&pool).await;
    // The duplicate, then the later purchase and its stamp behind it.
    let parked: Vec<(String, String, Option<i64>, String)> = sqlx::query_as(
        "SELECT aggregate_id, event_type, blocked_by, error FROM rm.parked_events ORDER BY sequence",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(parked.len(), 3, "{parked:?}");
    assert!(parked.iter().all(|p| p.0 == aggregate), "{parked:?}");
    assert_eq!((parked[0].1.as_str(), parked[0].2), ("StampCardCompleted", None));
    assert!(parked[0].3.contains("stamp_rewards_issued"), "{}", parked[0].3);
    let fine: i64 = sqlx::query_scalar("SELECT count(*) FROM rm.purchases WHERE transaction_id = 'fine'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(fine, 1);

    // The fold's rows differ from the live ones, its duplicate key is found, and the replay
    // through the batch path parks the same events.
    let audit = projector::audit::audit(&pool, "rm").await.unwrap();
    assert!(audit.is_clean(), "{audit}");
    assert!(
        audit
            .notes
            .iter()
            .any(|n| n.contains("duplicate key in stamp_rewards_issued")
                && n.contains("replayed through the live batch path")),
        "{audit}"
    );
    let parked_rows = audit.tables.iter().find(|t| t.table == "parked_events").unwrap();
    assert_eq!((parked_rows.live_rows, parked_rows.replay_rows), (3, 3));

    projector.stop().await.unwrap();
    relay.stop().await;
    nats.cleanup().await;
    db.cleanup().await;
}

/// Locks `rm.projection_checkpoints` in a transaction of its own, so that a batch blocks on its
/// last write (uncommitted, its rows written); the caller rolls it back.
async fn hold_checkpoints(db: &TestDb) -> PgConnection {
    let mut blocker = PgConnection::connect(db.url()).await.unwrap();
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query("LOCK TABLE rm.projection_checkpoints IN EXCLUSIVE MODE")
        .execute(&mut blocker)
        .await
        .unwrap();
    blocker
}

/// The backends of the batch (its parts) blocked by [`hold_checkpoints`], once there is one.
async fn batches_blocked_on_checkpoints(pool: &sqlx::PgPool) -> Vec<i32> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let pids: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' \
             AND query LIKE '%INSERT INTO projection_checkpoints%'",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        if !pids.is_empty() {
            return pids;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the projector never reached its checkpoint write"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_projector_killed_in_the_middle_of_a_batch_resumes_to_the_replayed_state() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let pool = db.pool().clone();
    let mut log = Log::new(&pool);
    let mut rng = Rng::new(0xC0FFEE);
    random_workload(&mut log, &mut rng, &["k1", "k2"], 80, 2_500, 2_000).await;
    let relay = start_relay(&db, &nats).await;

    // Hold the checkpoint table so that the first batch blocks on its last write.
    let mut blocker = hold_checkpoints(&db).await;
    let projector = spawn_projector(&db, &nats, "crashy").await;
    let stuck = batches_blocked_on_checkpoints(&pool).await[0];
    // The batch has written its rows (uncommitted) and waits: kill the projector there, as a
    // crash of the process would (its connection goes away with it).
    projector.kill().await;
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(stuck)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM rm.projection_checkpoints")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(applied, 0, "nothing of the killed batch may be visible");

    // Restart, and kill once more at an arbitrary point while catching up.
    let projector = spawn_projector(&db, &nats, "crashy").await;
    wait_first_applied(&pool, Duration::from_secs(30)).await;
    projector.kill().await;
    let mut config = projector_config(&db, &nats, "crashy");
    config.batch_size = 200;
    let projector = spawn_projector_with(config).await;
    wait_projected(&pool, Duration::from_secs(90)).await;
    wait_consumer_drained(&nats, "crashy", Duration::from_secs(30)).await;
    assert_eq!(consumer_backlog(&nats, "crashy").await, Some((0, 0)));

    let audit = projector::audit::audit(&pool, "rm").await.unwrap();
    assert!(audit.is_clean(), "{audit}");
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(audit.events_replayed as i64, total);
    let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM rm.parked_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(parked, 0);
    tracing::info!(at = %Utc::now(), "crash test done");

    projector.stop().await.unwrap();
    relay.stop().await;
    nats.cleanup().await;
    db.cleanup().await;
}

/// A batch that fails while the projector runs on (its connection cut) is delivered again, and
/// no ack of a later batch covers it first (acks are cumulative): one event per member, so no
/// later event of a member could bring a lost one back through the gap filling.
#[tokio::test]
async fn a_failed_batch_is_delivered_again_before_a_later_ack_covers_it() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let pool = db.pool().clone();
    let mut log = Log::new(&pool);
    let clock = t("2023-01-01T00:00:00Z");
    log.configure("k1", program_config("EUR"), clock).await;
    for i in 0..300 {
        log.enroll("k1", None, Some(&format!("ext-{i}")), clock).await;
    }
    log.flush().await;
    let relay = start_relay(&db, &nats).await;

    let mut blocker = hold_checkpoints(&db).await;
    let mut config = projector_config(&db, &nats, "fails-once");
    config.batch_size = 20;
    let projector = spawn_projector_with(config).await;
    let stuck = batches_blocked_on_checkpoints(&pool).await;
    // The batch fails; the projector goes on, with the next batches' messages already sent to it.
    for pid in stuck {
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(&pool)
            .await
            .unwrap();
    }
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();

    wait_projected(&pool, Duration::from_secs(60)).await;
    wait_consumer_drained(&nats, "fails-once", Duration::from_secs(30)).await;
    let members: i64 = sqlx::query_scalar("SELECT count(*) FROM rm.member_directory WHERE org_id = 'k1'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(members, 300, "every enrolment is in the read models");
    let audit = projector::audit::audit(&pool, "rm").await.unwrap();
    assert!(audit.is_clean(), "{audit}");
    assert_eq!(audit.events_replayed, all_events(&pool).await.len());

    projector.stop().await.unwrap();
    relay.stop().await;
    nats.cleanup().await;
    db.cleanup().await;
}
