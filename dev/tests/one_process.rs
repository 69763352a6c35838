//! The one-process platform end to end, on real Postgres and NATS: a purchase accepted by its
//! command API shows up in its GraphQL API (so the relay, the projector and the query service
//! all run), and shutdown stops all three.

use std::time::{Duration, Instant};

use common::keys::Role;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use uuid::Uuid;

async fn wait_ready(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(reply) = http.get(format!("{base}/readyz")).send().await {
            if reply.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{base}/readyz never answered 200");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A fresh `Idempotency-Key`.
fn key() -> String {
    Uuid::new_v4().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_reaches_graphql_and_shutdown_stops_all_three_services() {
    let db = loyalty_tests::TestDb::new().await;
    let nats = loyalty_tests::TestNats::new().await;
    let config = loyalty_dev::Config {
        db: db.db_args(),
        nats: nats.nats_args(),
        command_listen: "127.0.0.1:0".into(),
        projector_listen: "127.0.0.1:0".into(),
        query_listen: "127.0.0.1:0".into(),
    };
    let listeners = loyalty_dev::Listeners {
        command: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        projector: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        query: TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let command = format!("http://{}", listeners.command.local_addr().unwrap());
    let projector = format!("http://{}", listeners.projector.local_addr().unwrap());
    let query = format!("http://{}", listeners.query.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let platform = tokio::spawn(loyalty_dev::run(config, listeners, async {
        let _ = stopped.await;
    }));

    let http = reqwest::Client::new();
    for base in [&command, &projector, &query] {
        wait_ready(&http, base).await;
    }

    let org = "dev-one-process";
    let admin = common::keys::create_key(db.pool(), org, Role::Admin)
        .await
        .unwrap();
    let pos = common::keys::create_key(db.pool(), org, Role::Pos).await.unwrap();
    let storefront = common::keys::create_key(db.pool(), org, Role::Storefront)
        .await
        .unwrap();
    let client = loyalty_client::Client::with_http(http.clone(), &command);
    let (admin, pos) = (client.with_key(admin), client.with_key(pos));
    let program = loyalty_client::Program {
        earn_rate: Some(1),
        ..loyalty_client::Program::new("EUR")
    };
    admin
        .configure_program(org, &key(), &program)
        .await
        .expect("configuring the program");
    let location = loyalty_client::Location {
        location_id: "store-1".into(),
        name: "Store 1".into(),
    };
    admin
        .register_location(org, &key(), &location)
        .await
        .expect("registering a location");
    let enrolment = loyalty_client::Enrolment {
        external_id: Some("card-1".into()),
        display_name: Some("Ada".into()),
        ..Default::default()
    };
    let member = pos
        .enroll(org, &key(), &enrolment)
        .await
        .expect("enrolling")
        .member_id;
    let purchase = loyalty_client::Purchase {
        transaction_id: "t-1".into(),
        location_id: "store-1".into(),
        amount_minor: 1250,
        currency: "EUR".into(),
        occurred_at: chrono::Utc::now(),
        items: None,
    };
    let purchased = pos
        .record_purchase(org, loyalty_client::MemberRef::Id(member), &key(), &purchase)
        .await
        .expect("recording a purchase");
    // 12.50 EUR at 1 point per euro, Bronze 1.0x.
    assert_eq!(purchased.balance, 12, "{purchased:?}");

    let deadline = Instant::now() + Duration::from_secs(30);
    let shown = loop {
        let reply: Value = http
            .post(format!("{query}/graphql"))
            .bearer_auth(&storefront)
            .json(&json!({
                "query": "query($org: ID!, $id: ID!) { member(orgId: $org, memberId: $id) { balance { points } } }",
                "variables": {"org": org, "id": member},
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let points = reply.pointer("/data/member/balance/points").cloned();
        if points == Some(json!(12)) || Instant::now() >= deadline {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        shown.pointer("/data/member/balance/points"),
        Some(&json!(12)),
        "the purchase never reached the read model: {shown}"
    );

    stop.send(()).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(30), platform)
        .await
        .expect("the platform stops within 30 s")
        .expect("no panic");
    assert!(outcome.is_ok(), "clean shutdown: {outcome:?}");
    for base in [&command, &projector, &query] {
        assert!(
            http.get(format!("{base}/healthz")).send().await.is_err(),
            "{base} still answers after shutdown"
        );
    }

    nats.cleanup().await;
    db.cleanup().await;
}
