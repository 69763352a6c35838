//! The event store schema as postgres-es uses it: the additive columns are filled, the log is
//! append-only, migrations are idempotent.

use std::fmt;

use cqrs_es::persist::{PersistedEventRepository as _, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateContext as _, DomainEvent, EventStore as _};
use loyalty_tests::TestDb;
use postgres_es::{postgres_cqrs, PostgresEventRepository};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

/// A tiny aggregate: a counter that each command adds one or more amounts to.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Counter {
    total: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum CounterEvent {
    Added { by: i64 },
}

impl DomainEvent for CounterEvent {
    fn event_type(&self) -> String {
        "Added".to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Debug)]
struct CounterError;

impl fmt::Display for CounterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("counter error")
    }
}

impl std::error::Error for CounterError {}

impl Aggregate for Counter {
    const TYPE: &'static str = "TestCounter";
    type Command = Vec<i64>;
    type Event = CounterEvent;
    type Error = CounterError;
    type Services = ();

    async fn handle(
        &mut self,
        amounts: Self::Command,
        _services: &Self::Services,
        sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for by in amounts {
            sink.write(CounterEvent::Added { by }, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, CounterEvent::Added { by }: Self::Event) {
        self.total += by;
    }
}

#[derive(Debug, sqlx::FromRow)]
struct Row {
    aggregate_id: String,
    sequence: i64,
    global_position: i64,
    tx_id: String,
    event_id: Uuid,
    age_seconds: f64,
}

async fn rows(pool: &PgPool) -> Vec<Row> {
    sqlx::query_as(
        "SELECT aggregate_id, sequence, global_position, tx_id::text AS tx_id, event_id, \
                extract(epoch FROM now() - committed_at)::float8 AS age_seconds \
           FROM events ORDER BY global_position",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn postgres_es_appends_and_loads_events_and_the_new_columns_are_filled() {
    let db = TestDb::new().await;
    let cqrs = postgres_cqrs::<Counter>(db.pool().clone(), vec![], ());
    cqrs.execute("c-1", vec![5, 3]).await.unwrap();
    cqrs.execute("c-2", vec![7]).await.unwrap();
    cqrs.execute("c-1", vec![-2]).await.unwrap();

    let store =
        PersistedEventStore::<_, Counter>::new_event_store(PostgresEventRepository::new(db.pool().clone()));
    assert_eq!(store.load_aggregate("c-1").await.unwrap().aggregate().total, 6);
    assert_eq!(store.load_aggregate("c-2").await.unwrap().aggregate().total, 7);
    let loaded = PostgresEventRepository::new(db.pool().clone())
        .get_events::<Counter>("c-1")
        .await
        .unwrap();
    assert_eq!(loaded.iter().map(|e| e.sequence).collect::<Vec<_>>(), [1, 2, 3]);

    let rows = rows(db.pool()).await;
    let order: Vec<_> = rows
        .iter()
        .map(|r| (r.aggregate_id.as_str(), r.sequence))
        .collect();
    assert_eq!(order, [("c-1", 1), ("c-1", 2), ("c-2", 1), ("c-1", 3)]);
    assert!(
        rows.windows(2)
            .all(|w| w[0].global_position < w[1].global_position),
        "{rows:?}"
    );
    // Both events of the first command share its transaction; each command has its own.
    let tx: Vec<u64> = rows.iter().map(|r| r.tx_id.parse().unwrap()).collect();
    assert_eq!(tx[0], tx[1], "{rows:?}");
    assert!(tx[1] < tx[2] && tx[2] < tx[3], "{rows:?}");
    let mut event_ids: Vec<Uuid> = rows.iter().map(|r| r.event_id).collect();
    event_ids.sort();
    event_ids.dedup();
    assert_eq!(event_ids.len(), 4);
    assert!(event_ids.iter().all(|id| !id.is_nil()));
    assert!(
        rows.iter().all(|r| (0.0..60.0).contains(&r.age_seconds)),
        "{rows:?}"
    );
    db.cleanup().await;
}

#[tokio::test]
async fn events_cannot_be_updated_deleted_or_truncated() {
    let db = TestDb::new().await;
    let cqrs = postgres_cqrs::<Counter>(db.pool().clone(), vec![], ());
    cqrs.execute("c-1", vec![1, 2]).await.unwrap();

    for (statement, operation) in [
        ("UPDATE events SET payload = '{}'", "UPDATE"),
        ("UPDATE events SET payload = '{}' WHERE false", "UPDATE"),
        ("DELETE FROM events", "DELETE"),
        (
            "DELETE FROM events WHERE aggregate_id = 'c-1' AND sequence = 2",
            "DELETE",
        ),
        ("TRUNCATE events", "TRUNCATE"),
    ] {
        let error = sqlx::query(statement)
            .execute(db.pool())
            .await
            .expect_err(statement);
        let db_error = error.as_database_error().expect("a database error");
        assert_eq!(db_error.code().as_deref(), Some("23001"), "{statement}");
        assert_eq!(
            db_error.message(),
            format!("events are append-only: {operation} on table events is not allowed"),
        );
    }

    let payloads: Vec<serde_json::Value> =
        sqlx::query_scalar("SELECT payload::jsonb FROM events ORDER BY sequence")
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert_eq!(
        payloads,
        [
            serde_json::json!({"Added": {"by": 1}}),
            serde_json::json!({"Added": {"by": 2}})
        ]
    );
    db.cleanup().await;
}

#[tokio::test]
async fn migrating_an_up_to_date_database_again_changes_nothing() {
    let db = TestDb::new().await;
    let applied = || async {
        sqlx::query_as::<_, (i64, Vec<u8>)>(
            "SELECT version, checksum FROM _sqlx_migrations WHERE success ORDER BY version",
        )
        .fetch_all(db.pool())
        .await
        .unwrap()
    };
    let before = applied().await;
    let expected: Vec<i64> = schema::MIGRATOR.iter().map(|m| m.version).collect();
    assert_eq!(before.iter().map(|(v, _)| *v).collect::<Vec<_>>(), expected);
    assert!(expected.starts_with(&[1, 2]), "{expected:?}");

    schema::migrate(db.pool()).await.unwrap();
    schema::migrate(db.pool()).await.unwrap();
    assert_eq!(applied().await, before);
    db.cleanup().await;
}

/// Leaderboard scores as analysts read them, in one order.
async fn scores(pool: &PgPool, relation: &str) -> Vec<serde_json::Value> {
    sqlx::query_scalar(&format!(
        "SELECT to_jsonb(s) - 'rank' FROM rm.{relation} s \
         ORDER BY org_id, location_id, period, period_key, member_id"
    ))
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn the_leaderboard_migration_keeps_every_score_and_rank() {
    let db = TestDb::unmigrated().await;
    let pool = db.pool().clone();
    let apply = |versions: std::ops::Range<i64>| {
        let pool = pool.clone();
        async move {
            for migration in schema::MIGRATOR.iter().filter(|m| versions.contains(&m.version)) {
                sqlx::raw_sql(&migration.sql).execute(&pool).await.unwrap();
            }
        }
    };
    apply(0..17).await;
    // Two members scoring in two weeks and two months of 2024, at a store and org-wide; the
    // second's January is only a closed period, the first's late March is its latest.
    let (alice, bob) = (Uuid::from_u128(1), Uuid::from_u128(2));
    sqlx::query(
        "INSERT INTO rm.leaderboard_scores \
         SELECT 'o', l, p, k, m, pts, '2024-01-01'::timestamptz + make_interval(days => d), d \
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::int[]) AS r(m, p, k, pts, d), \
              unnest(ARRAY['', 'shop']) AS l",
    )
    .bind(vec![alice, alice, alice, alice, alice, bob, bob, bob, bob])
    .bind(vec![
        "week", "week", "month", "month", "all", "week", "week", "month", "all",
    ])
    .bind(vec![
        "2024-W02", "2024-W13", "2024-01", "2024-03", "all", "2024-W02", "2024-W05", "2024-01", "all",
    ])
    .bind(vec![10_i64, 7, 10, 7, 17, 12, 3, 15, 15])
    .bind(vec![9, 88, 9, 88, 88, 10, 31, 31, 31])
    .execute(db.pool())
    .await
    .unwrap();
    let (before, ranked_before) = (
        scores(db.pool(), "leaderboard_scores").await,
        scores(db.pool(), "leaderboard").await,
    );
    assert_eq!(before.len(), 18);

    apply(17..i64::MAX).await;
    assert_eq!(scores(db.pool(), "leaderboard_scores").await, before);
    assert_eq!(scores(db.pool(), "leaderboard").await, ranked_before);
    // Each member's latest week and month are current, the earlier ones closed.
    let current: Vec<(Uuid, String, String, String, i64)> = sqlx::query_as(
        "SELECT member_id, location_id, week_key, month_key, all_points FROM rm.leaderboard_current \
         ORDER BY member_id, location_id",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    let row = |m, l: &str, w: &str, mo: &str, all| (m, l.to_owned(), w.to_owned(), mo.to_owned(), all);
    assert_eq!(
        current,
        vec![
            row(alice, "", "2024-W13", "2024-03", 17),
            row(alice, "shop", "2024-W13", "2024-03", 17),
            row(bob, "", "2024-W05", "2024-01", 15),
            row(bob, "shop", "2024-W05", "2024-01", 15),
        ]
    );
    let closed: i64 = sqlx::query_scalar("SELECT count(*) FROM rm.leaderboard_closed")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(closed, 6, "alice's W02 and January, bob's W02, at both locations");
    db.cleanup().await;
}
