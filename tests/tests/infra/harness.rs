use async_nats::jetstream::stream;
use loyalty_tests::{TestDb, TestNats};
use sqlx::{Connection as _, PgConnection};

async fn database_exists(name: &str) -> bool {
    let url = std::env::var("TEST_DATABASE_ADMIN_URL")
        .unwrap_or_else(|_| loyalty_tests::DEFAULT_ADMIN_URL.to_owned());
    let mut admin = PgConnection::connect(&url).await.unwrap();
    sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&mut admin)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_test_database_is_migrated_and_dropped_by_cleanup() {
    let db = TestDb::new().await;
    let name = db.name().to_owned();
    assert!(database_exists(&name).await);
    assert!(db.url().ends_with(&format!("/{name}")), "{}", db.url());
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('events', 'api_keys')",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(tables, 2, "migrations were not applied");

    db.cleanup().await;
    assert!(!database_exists(&name).await, "{name} still exists after cleanup");
}

#[tokio::test]
async fn a_test_database_is_dropped_when_the_harness_is_dropped_with_open_connections() {
    let db = TestDb::new().await;
    let name = db.name().to_owned();
    // A connection held elsewhere must not keep the database alive (DROP ... WITH (FORCE)).
    let mut other = PgConnection::connect(db.url()).await.unwrap();
    sqlx::query("SELECT 1").execute(&mut other).await.unwrap();

    drop(db);
    assert!(!database_exists(&name).await, "{name} still exists after drop");
}

#[tokio::test]
async fn databases_of_two_tests_are_distinct() {
    let (a, b) = (TestDb::new().await, TestDb::new().await);
    assert_ne!(a.name(), b.name());
    sqlx::query("INSERT INTO api_keys (key_id, org_id, role, key_hash, key_prefix) VALUES (gen_random_uuid(), 'a', 'pos', repeat('0', 64), 'x')")
        .execute(a.pool())
        .await
        .unwrap();
    let in_b: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys")
        .fetch_one(b.pool())
        .await
        .unwrap();
    assert_eq!(in_b, 0);
    a.cleanup().await;
    b.cleanup().await;
}

async fn create_stream(nats: &TestNats) {
    nats.jetstream()
        .create_stream(stream::Config {
            name: nats.stream().to_owned(),
            subjects: vec![format!("{}.>", nats.subject_prefix())],
            storage: stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_test_stream_is_deleted_by_cleanup_and_by_drop() {
    let nats = TestNats::new().await;
    let stream_name = nats.stream().to_owned();
    assert!(stream_name.starts_with("T_"));
    assert!(nats.subject_prefix().ends_with(".events"));
    assert_eq!(nats.nats_args().nats_stream, stream_name);
    create_stream(&nats).await;
    nats.jetstream()
        .publish(format!("{}.acme.member", nats.subject_prefix()), "x".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(nats.stream_exists().await);
    let observer = TestNats::new().await;
    nats.cleanup().await;
    assert!(
        observer.jetstream().get_stream(&stream_name).await.is_err(),
        "{stream_name} still exists after cleanup"
    );

    let dropped = TestNats::new().await;
    let stream_name = dropped.stream().to_owned();
    create_stream(&dropped).await;
    drop(dropped);
    assert!(
        observer.jetstream().get_stream(&stream_name).await.is_err(),
        "{stream_name} still exists after drop"
    );

    // Cleaning up a stream that was never created is not an error.
    observer.cleanup().await;
}
