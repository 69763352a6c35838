//! A projector restarted after a crash catches up at once: the messages its predecessor
//! received but never acknowledged are delivered again at start-up, not after the consumer's
//! 30 s ack wait.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use loyalty_tests::{projector_config, spawn_projector_with, TestDb, TestNats};
use projector::consumer::ConsumerSettings;

use crate::support::{all_events, create_stream, program_config, publish, t, wait_projected, Log};

/// The ack wait of the projector in production: far longer than the test waits.
const ACK_WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_restarted_projector_does_not_wait_for_its_predecessors_unacked_messages() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let pool = db.pool().clone();
    let org = "crashed";
    let mut log = Log::new(&pool);
    log.configure(org, program_config("EUR"), t("2024-01-01T00:00:00Z"))
        .await;
    log.location(org, "shop", t("2024-01-01T00:00:00Z")).await;
    for m in 0..10 {
        let member = log
            .enroll(org, Some(&format!("M {m}")), None, t("2024-01-02T00:00:00Z"))
            .await;
        for p in 0..3 {
            let at = t("2024-02-01T10:00:00Z") + chrono::Duration::days(p);
            log.purchase(org, member, &format!("{m}-{p}"), "shop", 2_500 * (p + 1), at)
                .await;
        }
    }
    log.flush().await;
    let events = all_events(&pool).await;
    create_stream(&nats).await;
    publish(&nats, &events, true).await;

    // A projector that died between delivery and ack: its durable consumer, as the projector
    // creates it, has delivered every message and got no ack.
    let mut config = projector_config(&db, &nats, "crashed");
    config.ack_wait_secs = ACK_WAIT.as_secs();
    let settings = ConsumerSettings {
        nats: nats.nats_args(),
        name: config.consumer.clone(),
        batch_size: usize::from(config.batch_size),
        linger: Duration::from_millis(config.batch_linger_ms),
        ack_wait: ACK_WAIT,
    };
    let consumer = projector::consumer::consumer(nats.client(), &settings)
        .await
        .expect("the projector's consumer");
    let mut delivered = consumer
        .fetch()
        .max_messages(events.len())
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .expect("fetching");
    let mut unacked = 0;
    while let Some(message) = delivered.next().await {
        message.expect("a delivered message");
        unacked += 1;
    }
    assert_eq!(unacked, events.len(), "every message delivered, none acked");

    let restarted = Instant::now();
    let projector = spawn_projector_with(config).await;
    // Well within the ack wait: the restarted projector asked for them again.
    let projected = wait_projected(&pool, Duration::from_secs(5)).await;
    println!(
        "{projected} events projected {:.1} s after the restart (ack wait {} s)",
        restarted.elapsed().as_secs_f64(),
        ACK_WAIT.as_secs()
    );
    assert_eq!(projected, events.len() as i64);
    let balances: i64 = sqlx::query_scalar("SELECT count(*) FROM rm.member_balances")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(balances, 10, "every member's balance is projected");

    projector.stop().await.expect("projector");
    nats.cleanup().await;
    db.cleanup().await;
}
