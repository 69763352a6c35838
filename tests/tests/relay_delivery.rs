//! The relay from the event store to JetStream (SPEC §5): every committed event row appears in
//! the stream exactly once, with `Nats-Msg-Id = <aggregate_type>:<aggregate_id>:<sequence>`,
//! also when the relay dies in the middle of a batch and when transactions commit out of the
//! order of their global positions, and when the stream lost messages it had acknowledged; and
//! only one relay publishes at a time.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use chrono::Utc;
use command_service::relay::{Relay, RelayArgs, RelayConfig, RelayState};
use loyalty_tests::stream::Received;
use loyalty_tests::{spawn_command_service, OrgKeys, TestDb, TestNats};
use serde_json::json;
use sqlx::{Connection as _, PgConnection};
use tokio_util::sync::CancellationToken;

fn relay(db: &TestDb, nats: &TestNats, batch: u32, window: usize) -> Relay {
    let config = RelayConfig {
        database_url: db.url().to_owned(),
        nats: nats.nats_args(),
        args: RelayArgs {
            relay_batch_size: batch,
            relay_max_in_flight: window,
            relay_poll_interval_ms: 50,
            ..RelayArgs::default()
        },
    };
    Relay::new(config, nats.client().clone())
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stream_count(nats: &TestNats) -> u64 {
    match nats.jetstream().get_stream(nats.stream()).await {
        Ok(mut stream) => stream.info().await.map(|info| info.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

/// Every message of the stream, in stream order.
async fn read_stream(nats: &TestNats) -> Vec<Received> {
    loyalty_tests::stream::read_stream(nats.jetstream(), nats.stream()).await
}

/// `Nats-Msg-Id`s every row of the events table should have, in relay order.
async fn expected_msg_ids(db: &TestDb) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT aggregate_type || ':' || aggregate_id || ':' || sequence FROM events ORDER BY tx_id, global_position",
    )
    .fetch_all(db.pool())
    .await
    .unwrap()
}

/// Inserts `n` events of `n` members of org `acme` in one transaction, as a bulk writer would.
async fn insert_events(db: &TestDb, n: i64) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         SELECT 'member', 'acme/' || gen_random_uuid(), 1, 'RelayProbe', '1', \
                json_build_object('RelayProbe', json_build_object('n', g)), '{}'::json \
         FROM generate_series(1, $1) AS g",
    )
    .bind(n)
    .execute(db.pool())
    .await
    .unwrap();
}

async fn checkpoint(db: &TestDb, nats: &TestNats) -> Option<i64> {
    sqlx::query_scalar("SELECT global_position FROM relay_checkpoints WHERE stream = $1")
        .bind(nats.stream())
        .fetch_optional(db.pool())
        .await
        .unwrap()
}

fn assert_once_each(received: &[Received], expected: &[String]) {
    let ids: Vec<&str> = received.iter().map(|r| r.msg_id.as_str()).collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a message appears twice in the stream");
    assert_eq!(ids, expected.iter().map(String::as_str).collect::<Vec<_>>());
}

#[tokio::test]
async fn every_committed_event_is_published_once_with_its_msg_id() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let service = spawn_command_service(&db, &nats).await;
    let keys = OrgKeys::create(&db, "acme").await;
    let admin = service.client(&keys.admin);
    let program = json!({"currency": "EUR", "stamp_cards": [], "rewards": []});
    assert_eq!(
        admin.put("/v1/orgs/acme/program", "p", &program).await.status,
        200
    );
    let location = json!({"location_id": "store-1", "name": "Store"});
    assert_eq!(
        admin.post("/v1/orgs/acme/locations", "l", &location).await.status,
        201
    );
    for i in 0..3 {
        let answer = admin
            .post("/v1/orgs/acme/members", &format!("m{i}"), &json!({}))
            .await;
        let member = answer.body["member_id"].as_str().unwrap().to_owned();
        let purchase = json!({"transaction_id": format!("T{i}"), "location_id": "store-1",
            "amount_minor": 1_000, "currency": "EUR", "occurred_at": Utc::now()});
        let answer = admin
            .post(
                &format!("/v1/orgs/acme/members/{member}/purchases"),
                &format!("b{i}"),
                &purchase,
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text);
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(rows, 8);
    wait_until(
        "the relay to publish every event",
        Duration::from_secs(10),
        || async { stream_count(&nats).await == 8 },
    )
    .await;

    let received = read_stream(&nats).await;
    assert_once_each(&received, &expected_msg_ids(&db).await);
    let stored: Vec<(
        i64,
        uuid::Uuid,
        serde_json::Value,
        serde_json::Value,
        chrono::DateTime<Utc>,
    )> = sqlx::query_as(
        "SELECT global_position, event_id, payload, metadata, committed_at FROM events \
             ORDER BY tx_id, global_position",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    for (message, (position, event_id, payload, metadata, committed_at)) in received.iter().zip(stored) {
        let event = &message.event;
        assert_eq!(event.global_position, position);
        assert_eq!(event.event_id, event_id);
        assert_eq!(event.payload, payload);
        assert_eq!(event.metadata, metadata);
        assert_eq!(event.committed_at, committed_at);
        assert_eq!(message.msg_id, event.msg_id());
        assert_eq!(
            message.subject,
            format!("{}.acme.{}", nats.subject_prefix(), event.aggregate_type)
        );
    }

    let mut stream = nats.jetstream().get_stream(nats.stream()).await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.subjects, vec![format!("{}.>", nats.subject_prefix())]);
    assert_eq!(info.config.duplicate_window, Duration::from_secs(600));

    // Later commands arrive too, once.
    assert_eq!(
        admin.post("/v1/orgs/acme/members", "m9", &json!({})).await.status,
        201
    );
    wait_until("the new event", Duration::from_secs(10), || async {
        stream_count(&nats).await == 9
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stream_count(&nats).await, 9);

    service.stop().await.unwrap();
    nats.cleanup().await;
    db.cleanup().await;
}

#[tokio::test]
async fn a_relay_killed_in_the_middle_of_a_batch_is_restarted_without_loss_or_duplicates() {
    const ROWS: i64 = 5_000;
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    insert_events(&db, ROWS).await;

    // One batch of all rows, published 8 at a time: the checkpoint is only written at its end.
    let first = relay(&db, &nats, ROWS as u32, 8);
    let task = tokio::spawn(first.run(CancellationToken::new()));
    wait_until("the first messages", Duration::from_secs(20), || async {
        stream_count(&nats).await > 0
    })
    .await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let published_before_the_crash = stream_count(&nats).await;
    assert!(
        published_before_the_crash < ROWS as u64,
        "the relay finished before it could be killed; the test proves nothing"
    );
    assert_eq!(checkpoint(&db, &nats).await, None, "killed before its checkpoint");

    let second = relay(&db, &nats, 500, 64);
    let stop = CancellationToken::new();
    let task = tokio::spawn(second.run(stop.clone()));
    let last: i64 = sqlx::query_scalar("SELECT max(global_position) FROM events")
        .fetch_one(db.pool())
        .await
        .unwrap();
    wait_until(
        "the restarted relay to catch up",
        Duration::from_secs(30),
        || async { checkpoint(&db, &nats).await == Some(last) },
    )
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();

    assert_eq!(stream_count(&nats).await, ROWS as u64);
    let received = read_stream(&nats).await;
    assert_once_each(&received, &expected_msg_ids(&db).await);
    eprintln!("{published_before_the_crash} of {ROWS} published before the crash, then republished and deduplicated");

    nats.cleanup().await;
    db.cleanup().await;
}

#[tokio::test]
async fn a_transaction_that_commits_after_a_later_one_is_not_skipped() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let relay = relay(&db, &nats, 100, 16);
    let stop = CancellationToken::new();
    let task = tokio::spawn(relay.run(stop.clone()));

    let insert = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
                  VALUES ('member', $1, 1, 'RelayProbe', '1', '{\"RelayProbe\": {}}', '{}') RETURNING global_position";
    let early_member = format!("acme/{}", uuid::Uuid::new_v4());
    let late_member = format!("acme/{}", uuid::Uuid::new_v4());

    // The slow transaction takes its global position first...
    let mut slow = PgConnection::connect(db.url()).await.unwrap();
    sqlx::query("BEGIN").execute(&mut slow).await.unwrap();
    let early: i64 = sqlx::query_scalar(insert)
        .bind(&early_member)
        .fetch_one(&mut slow)
        .await
        .unwrap();
    // ...a fast one takes a later position and commits first.
    let late: i64 = sqlx::query_scalar(insert)
        .bind(&late_member)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert!(early < late);

    // A relay reading `position > checkpoint` would now publish `late`, move its checkpoint past
    // `early`, and never see `early`. This one waits for the slow transaction.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(stream_count(&nats).await, 0);
    assert_eq!(checkpoint(&db, &nats).await, None);

    sqlx::query("COMMIT").execute(&mut slow).await.unwrap();
    wait_until("both events", Duration::from_secs(10), || async {
        stream_count(&nats).await == 2
    })
    .await;
    let received = read_stream(&nats).await;
    assert_eq!(
        received.iter().map(|r| r.msg_id.clone()).collect::<Vec<_>>(),
        [
            format!("member:{early_member}:1"),
            format!("member:{late_member}:1")
        ]
    );
    wait_until("the checkpoint", Duration::from_secs(5), || async {
        checkpoint(&db, &nats).await == Some(late)
    })
    .await;

    stop.cancel();
    task.await.unwrap().unwrap();
    nats.cleanup().await;
    db.cleanup().await;
}

/// The relay waits for every running transaction that could still add an event before the
/// ones it publishes, but not for the projector's (migration 0016): a projector's batch does not
/// hold back the events it waits for, and a projector session cannot write events.
#[tokio::test]
async fn a_projector_transaction_does_not_hold_back_the_relay_and_may_not_write_events() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let relay = relay(&db, &nats, 100, 16);
    let stop = CancellationToken::new();
    let task = tokio::spawn(relay.run(stop.clone()));
    let (name, projector) = common::config::READ_SIDE;
    assert_eq!(name, "application_name");

    // A transaction holding an xid, as a projector's batch does once it writes.
    let url = db.url().to_owned();
    let open = |application: &'static str| {
        let url = url.clone();
        async move {
            let mut conn = PgConnection::connect(&url).await.unwrap();
            sqlx::query(&format!("SET application_name = '{application}'"))
                .execute(&mut conn)
                .await
                .unwrap();
            sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
            sqlx::query("SELECT pg_current_xact_id()")
                .execute(&mut conn)
                .await
                .unwrap();
            conn
        }
    };

    let mut batch = open(projector).await;
    insert_events(&db, 1).await;
    wait_until(
        "the event, while a projector's transaction runs",
        Duration::from_secs(10),
        || async { stream_count(&nats).await == 1 },
    )
    .await;
    let refused = sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('member', 'acme/' || gen_random_uuid(), 1, 'RelayProbe', '1', '{\"RelayProbe\": {}}', '{}')",
    )
    .execute(&mut batch)
    .await
    .unwrap_err();
    let refused = refused.as_database_error().expect("a database error");
    assert_eq!(refused.code().as_deref(), Some("42501"), "{refused}");
    assert!(refused.message().contains("may not write events"), "{refused}");
    sqlx::query("ROLLBACK").execute(&mut batch).await.unwrap();

    // Any other session's transaction still holds back what commits after it began.
    let mut other = open("some-writer").await;
    insert_events(&db, 1).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        stream_count(&nats).await,
        1,
        "published past a transaction that could still write"
    );
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    wait_until("the second event", Duration::from_secs(10), || async {
        stream_count(&nats).await == 2
    })
    .await;
    assert_once_each(&read_stream(&nats).await, &expected_msg_ids(&db).await);

    stop.cancel();
    task.await.unwrap().unwrap();
    nats.cleanup().await;
    db.cleanup().await;
}

#[tokio::test]
async fn only_one_relay_publishes_and_a_standby_takes_over() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let first = relay(&db, &nats, 100, 16);
    let mut first_state = first.state();
    let first_task = tokio::spawn(first.run(CancellationToken::new()));
    first_state
        .wait_for(|state| *state == RelayState::Leader)
        .await
        .unwrap();

    let second = relay(&db, &nats, 100, 16);
    let mut second_state = second.state();
    let stop = CancellationToken::new();
    let second_task = tokio::spawn(second.run(stop.clone()));
    second_state
        .wait_for(|state| *state == RelayState::Standby)
        .await
        .unwrap();

    insert_events(&db, 100).await;
    wait_until("the first batch", Duration::from_secs(10), || async {
        stream_count(&nats).await == 100
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(*second_state.borrow(), RelayState::Standby);

    // The leader dies; its session ends and the standby takes the lock.
    first_task.abort();
    let _ = first_task.await;
    tokio::time::timeout(
        Duration::from_secs(10),
        second_state.wait_for(|state| *state == RelayState::Leader),
    )
    .await
    .expect("the standby takes over")
    .unwrap();
    insert_events(&db, 100).await;
    wait_until("the second batch", Duration::from_secs(10), || async {
        stream_count(&nats).await == 200
    })
    .await;

    stop.cancel();
    second_task.await.unwrap().unwrap();
    assert_eq!(*second_state.borrow(), RelayState::Stopped);
    let received = read_stream(&nats).await;
    assert_once_each(&received, &expected_msg_ids(&db).await);
    nats.cleanup().await;
    db.cleanup().await;
}

/// Runs a relay until the returned token is cancelled.
fn start_relay(
    db: &TestDb,
    nats: &TestNats,
) -> (CancellationToken, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let stop = CancellationToken::new();
    let task = tokio::spawn(relay(db, nats, 50, 8).run(stop.clone()));
    (stop, task)
}

async fn last_global_position(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT max(global_position) FROM events")
        .fetch_one(db.pool())
        .await
        .unwrap()
}

/// Inserts `n` events and runs a relay until it has published them all; the relay goes on until
/// the returned token is cancelled.
async fn relay_events(
    db: &TestDb,
    nats: &TestNats,
    n: i64,
) -> (CancellationToken, tokio::task::JoinHandle<anyhow::Result<()>>) {
    insert_events(db, n).await;
    let relay = start_relay(db, nats);
    let last = last_global_position(db).await;
    wait_until(
        "the relay to publish everything",
        Duration::from_secs(20),
        || async { checkpoint(db, nats).await == Some(last) },
    )
    .await;
    relay
}

/// Every event of the store is in the stream exactly once (in whatever order a refill left).
fn assert_same_events(received: &[Received], expected: &[String]) {
    let ids: Vec<&str> = received.iter().map(|r| r.msg_id.as_str()).collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a message appears twice in the stream");
    assert_eq!(
        unique,
        expected.iter().map(String::as_str).collect::<BTreeSet<_>>()
    );
}

#[tokio::test]
async fn a_stream_that_lost_its_last_messages_is_refilled_from_the_last_one_it_holds() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let (stop, task) = relay_events(&db, &nats, 200).await;

    // What a NATS server that crashed before its last 80 acknowledged messages reached the disk
    // comes back with: the same stream holding only the first 120.
    let survivors: Vec<Received> = read_stream(&nats).await.into_iter().take(120).collect();
    let mut stream = nats.jetstream().get_stream(nats.stream()).await.unwrap();
    let config = stream.info().await.unwrap().config.clone();
    nats.jetstream().delete_stream(nats.stream()).await.unwrap();
    nats.jetstream().create_stream(config).await.unwrap();
    for message in &survivors {
        let payload = serde_json::to_vec(&message.event).unwrap();
        nats.jetstream()
            .send_publish(
                message.subject.clone(),
                PublishMessage::build()
                    .payload(payload.into())
                    .message_id(message.msg_id.as_str()),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    assert_eq!(stream_count(&nats).await, 120);

    // The next commit's ack gives away the loss.
    insert_events(&db, 10).await;
    wait_until("the stream to be refilled", Duration::from_secs(20), || async {
        stream_count(&nats).await == 210
    })
    .await;
    let last = last_global_position(&db).await;
    wait_until("the relay's checkpoint", Duration::from_secs(10), || async {
        checkpoint(&db, &nats).await == Some(last)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_same_events(&read_stream(&nats).await, &expected_msg_ids(&db).await);

    stop.cancel();
    task.await.unwrap().unwrap();
    nats.cleanup().await;
    db.cleanup().await;
}

#[tokio::test]
async fn a_relay_restarted_on_a_recreated_stream_publishes_everything_again() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let (stop, task) = relay_events(&db, &nats, 100).await;
    stop.cancel();
    task.await.unwrap().unwrap();

    // The stream is lost while no relay runs (an operator deleted it, NATS lost its disk).
    nats.jetstream().delete_stream(nats.stream()).await.unwrap();
    let (stop, task) = start_relay(&db, &nats);
    wait_until(
        "the new stream to hold every event",
        Duration::from_secs(20),
        || async { stream_count(&nats).await == 100 },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_once_each(&read_stream(&nats).await, &expected_msg_ids(&db).await);

    stop.cancel();
    task.await.unwrap().unwrap();
    nats.cleanup().await;
    db.cleanup().await;
}

#[tokio::test]
async fn a_backlog_across_a_power_of_ten_of_transaction_ids_is_relayed_in_order() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    // Transactions 8 to 11 (ids below the oldest running transaction, so finished ones),
    // inserted out of order: the relay must take them by number, not as text ("10" < "8").
    for tx_id in [11, 8, 10, 9] {
        sqlx::query(
            "INSERT INTO events (tx_id, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             VALUES ($1::text::xid8, 'member', 'acme/' || gen_random_uuid(), 1, 'RelayProbe', '1', \
                     json_build_object('RelayProbe', json_build_object('tx', $1::text)), '{}'::json)",
        )
        .bind(tx_id.to_string())
        .execute(db.pool())
        .await
        .unwrap();
    }
    // Two rows a batch: a text order would checkpoint past 11 after the first batch.
    let stop = CancellationToken::new();
    let task = tokio::spawn(relay(&db, &nats, 2, 2).run(stop.clone()));
    wait_until(
        "the relay to publish the backlog",
        Duration::from_secs(10),
        || async { stream_count(&nats).await == 4 },
    )
    .await;
    let published: Vec<String> = read_stream(&nats)
        .await
        .iter()
        .map(|message| {
            message.event.payload["RelayProbe"]["tx"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(published, ["8", "9", "10", "11"]);

    stop.cancel();
    task.await.unwrap().unwrap();
    nats.cleanup().await;
    db.cleanup().await;
}
