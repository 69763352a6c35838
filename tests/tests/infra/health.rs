use std::time::Duration;

use loyalty_tests::{TestDb, TestNats};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;

/// Serves `router` on a free port and returns its base URL.
async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

async fn get(url: String) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn health_readiness_and_metrics_report_a_working_service() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let base = serve(common::health::router(
        db.pool().clone(),
        Some(nats.client().clone()),
    ))
    .await;

    let (status, body) = get(format!("{base}/healthz")).await;
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()),
        (200, json!({"status": "ok"}))
    );

    let (status, body) = get(format!("{base}/readyz")).await;
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()),
        (
            200,
            json!({"status": "ready", "checks": {"postgres": "up", "nats": "up"}})
        )
    );

    metrics::counter!("health_test_probes_total").increment(2);
    let (status, body) = get(format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    assert!(body.contains("health_test_probes_total 2"), "{body}");

    nats.cleanup().await;
    db.cleanup().await;
}

#[tokio::test]
async fn readiness_names_what_is_down() {
    // A database that does not exist and a NATS client that never got a connection.
    let db = TestDb::new().await;
    let missing = db.url().replace(db.name(), &format!("{}_missing", db.name()));
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(1))
        .connect_lazy(&missing)
        .unwrap();
    let nats = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect("nats://127.0.0.1:1")
        .await
        .unwrap();

    let base = serve(common::health::router(pool.clone(), Some(nats))).await;
    let (status, body) = get(format!("{base}/readyz")).await;
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()),
        (
            503,
            json!({"status": "unavailable", "down": ["postgres", "nats"],
                   "checks": {"postgres": "down", "nats": "down"}})
        )
    );

    let base = serve(common::health::router(db.pool().clone(), None)).await;
    let (status, body) = get(format!("{base}/readyz")).await;
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()),
        (200, json!({"status": "ready", "checks": {"postgres": "up"}}))
    );

    // Liveness does not depend on the dependencies.
    let base = serve(common::health::router(pool, None)).await;
    assert_eq!(get(format!("{base}/healthz")).await.0, 200);
    db.cleanup().await;
}
