//! RFM scores and segments against a brute-force computation written here from the raw
//! purchases the test generated (SPEC §6: `score = 1 + floor(5 × W / N)`, W = purchasing
//! members strictly worse).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Duration as Days, Utc};
use loyalty_tests::{projector_config, spawn_projector, spawn_projector_with, TestDb, TestNats};
use uuid::Uuid;

use crate::support::{program_config, start_relay, t, wait_projected, Log, Rng};

/// The (R, F) grid of SPEC §6, rows R = 5..1, columns F = 1..5.
const GRID: [[&str; 5]; 5] = [
    [
        "New Customers",
        "Potential Loyalists",
        "Potential Loyalists",
        "Champions",
        "Champions",
    ],
    [
        "Promising",
        "Potential Loyalists",
        "Potential Loyalists",
        "Loyal Customers",
        "Loyal Customers",
    ],
    [
        "About to Sleep",
        "About to Sleep",
        "Need Attention",
        "Loyal Customers",
        "Loyal Customers",
    ],
    [
        "Hibernating",
        "Hibernating",
        "At Risk",
        "At Risk",
        "Can't Lose Them",
    ],
    ["Lost", "Lost", "At Risk", "At Risk", "Can't Lose Them"],
];

#[derive(Debug, Clone)]
struct Purchase {
    occurred_at: DateTime<Utc>,
    amount: i64,
    refunded: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Score {
    recency_days: i64,
    frequency: i64,
    monetary: i64,
    r: i64,
    f: i64,
    m: i64,
    segment: String,
}

/// Scores of every purchasing member at `at`, by counting, for each member, the members with
/// a strictly worse value (quadratic on purpose: no ranking trick shared with the SQL).
fn brute_force(purchases: &HashMap<Uuid, Vec<Purchase>>, at: DateTime<Utc>) -> BTreeMap<Uuid, Score> {
    let raw: Vec<(Uuid, i64, i64, i64)> = purchases
        .iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|(id, ps)| {
            let last = ps.iter().map(|p| p.occurred_at).max().unwrap();
            let recency = (at - last).num_seconds().div_euclid(86_400).max(0);
            let in_window: Vec<&Purchase> = ps
                .iter()
                .filter(|p| p.occurred_at > at - Days::days(365) && p.occurred_at <= at)
                .collect();
            let frequency = in_window.len() as i64;
            let monetary = in_window.iter().map(|p| p.amount - p.refunded).sum();
            (*id, recency, frequency, monetary)
        })
        .collect();
    let n = raw.len() as i64;
    let score = |worse: usize| 1 + (5 * worse as i64) / n;
    raw.iter()
        .map(|&(id, recency, frequency, monetary)| {
            let r = score(raw.iter().filter(|o| o.1 > recency).count());
            let f = score(raw.iter().filter(|o| o.2 < frequency).count());
            let m = score(raw.iter().filter(|o| o.3 < monetary).count());
            let segment = GRID[(5 - r) as usize][(f - 1) as usize].to_owned();
            (
                id,
                Score {
                    recency_days: recency,
                    frequency,
                    monetary,
                    r,
                    f,
                    m,
                    segment,
                },
            )
        })
        .collect()
}

async fn stored_scores(pool: &sqlx::PgPool, org: &str, at: DateTime<Utc>) -> BTreeMap<Uuid, Score> {
    type Row = (Uuid, DateTime<Utc>, i32, i32, i64, i16, i16, i16, String);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT member_id, computed_at, recency_days, frequency, monetary_minor, r, f, m, segment \
         FROM rm.rfm_scores WHERE org_id = $1",
    )
    .bind(org)
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(
            |(id, computed_at, recency, frequency, monetary, r, f, m, segment)| {
                assert_eq!(computed_at, at);
                (
                    id,
                    Score {
                        recency_days: recency.into(),
                        frequency: frequency.into(),
                        monetary,
                        r: r.into(),
                        f: f.into(),
                        m: m.into(),
                        segment,
                    },
                )
            },
        )
        .collect()
}

fn assert_same(expected: &BTreeMap<Uuid, Score>, actual: &BTreeMap<Uuid, Score>) {
    assert_eq!(expected.len(), actual.len(), "members scored");
    let wrong: Vec<_> = expected
        .iter()
        .filter(|(id, score)| actual.get(*id) != Some(score))
        .map(|(id, score)| format!("{id}: expected {score:?}, got {:?}", actual.get(id)))
        .take(10)
        .collect();
    assert!(wrong.is_empty(), "scores differ:\n{}", wrong.join("\n"));
}

#[tokio::test]
async fn scores_and_segments_of_1000_members_match_a_brute_force_count() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let pool = db.pool().clone();
    let relay = start_relay(&db, &nats).await;
    let projector = spawn_projector(&db, &nats, "rfm").await;
    let mut log = Log::new(&pool);
    let org = "rfm";
    let at = t("2025-06-01T00:00:00Z");
    log.configure(org, program_config("EUR"), t("2023-01-01T00:00:00Z"))
        .await;
    log.location(org, "shop", t("2023-01-01T00:00:00Z")).await;

    // Few distinct days, hours and amounts: many ties in every dimension. Some purchases fall
    // outside the 365-day window, exactly on its edge, or (clock skew) after `at`.
    let days_ago = [0, 1, 3, 10, 40, 100, 200, 365, 366, 500];
    let amounts = [1_000, 2_500, 5_000];
    let mut rng = Rng::new(0x5EED_0001);
    let mut purchases: HashMap<Uuid, Vec<Purchase>> = HashMap::new();
    for i in 0..1_100 {
        let member = log.enroll(org, None, None, t("2023-01-01T00:00:00Z")).await;
        purchases.insert(member, Vec::new());
        if i >= 1_000 {
            continue; // enrolled, never purchased: not scored
        }
        for k in 0..=rng.below(3) {
            let hours = if rng.below(2) == 0 { 0 } else { 6 };
            let mut occurred_at = at - Days::days(*rng.pick(&days_ago)) - Days::hours(hours);
            if rng.below(100) == 0 {
                occurred_at = at + Days::minutes(2);
            }
            let amount = *rng.pick(&amounts);
            let txn = format!("{member}-{k}");
            log.purchase(org, member, &txn, "shop", amount, occurred_at).await;
            let mut refunded = 0;
            if rng.below(5) == 0 {
                refunded = if rng.below(2) == 0 { amount } else { amount / 2 };
                log.refund(
                    org,
                    member,
                    &format!("r-{txn}"),
                    &txn,
                    refunded,
                    occurred_at + Days::hours(1),
                )
                .await;
            }
            purchases.get_mut(&member).unwrap().push(Purchase {
                occurred_at,
                amount,
                refunded,
            });
        }
    }
    log.flush().await;
    wait_projected(&pool, Duration::from_secs(60)).await;

    let summary = projector::rfm::recompute(&pool, "rm", org, at).await.unwrap();
    assert_eq!((summary.members, summary.transitions), (1_000, 1_000));
    let expected = brute_force(&purchases, at);
    assert_same(&expected, &stored_scores(&pool, org, at).await);
    // Every score 1..5 is used, and ties are plentiful.
    for dimension in ["r", "f", "m"] {
        let distinct: i64 =
            sqlx::query_scalar(&format!("SELECT count(DISTINCT {dimension}) FROM rm.rfm_scores"))
                .fetch_one(&pool)
                .await
                .unwrap();
        assert!(distinct >= 3, "{dimension} uses only {distinct} scores");
    }
    let first: Vec<(Option<String>, String)> =
        sqlx::query_as("SELECT from_segment, to_segment FROM rm.rfm_segment_transitions WHERE at = $1")
            .bind(at)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(first.len(), 1_000);
    assert!(first.iter().all(|(from, _)| from.is_none()));

    // A day later, after a few more purchases: the scores move, and exactly the members whose
    // segment changed get a transition at the new time.
    let later = at + Days::days(1);
    let mut members: Vec<Uuid> = expected.keys().copied().collect();
    members.sort();
    for (k, member) in members.iter().enumerate().filter(|(k, _)| k % 9 == 0) {
        let occurred_at = at + Days::hours(12);
        log.purchase(org, *member, &format!("late-{k}"), "shop", 2_500, occurred_at)
            .await;
        purchases.get_mut(member).unwrap().push(Purchase {
            occurred_at,
            amount: 2_500,
            refunded: 0,
        });
    }
    log.flush().await;
    wait_projected(&pool, Duration::from_secs(60)).await;
    projector::rfm::recompute(&pool, "rm", org, later).await.unwrap();
    let expected_later = brute_force(&purchases, later);
    assert_same(&expected_later, &stored_scores(&pool, org, later).await);
    let mut changed: Vec<(Uuid, Option<String>, String)> = expected_later
        .iter()
        .filter(|(id, s)| expected[*id].segment != s.segment)
        .map(|(id, s)| (*id, Some(expected[id].segment.clone()), s.segment.clone()))
        .collect();
    changed.sort();
    assert!(!changed.is_empty());
    let recorded: Vec<(Uuid, Option<String>, String)> = sqlx::query_as(
        "SELECT member_id, from_segment, to_segment FROM rm.rfm_segment_transitions WHERE at = $1 ORDER BY member_id",
    )
    .bind(later)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(recorded, changed);

    projector.stop().await.unwrap();
    relay.stop().await;
    nats.cleanup().await;
    db.cleanup().await;
}

#[tokio::test]
async fn scores_are_recomputed_on_schedule_and_from_the_command_line() {
    use clap::Parser as _;

    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let pool = db.pool().clone();
    let relay = start_relay(&db, &nats).await;
    let mut config = projector_config(&db, &nats, "rfm-schedule");
    config.rfm_interval_secs = 1;
    let projector = spawn_projector_with(config).await;
    let mut log = Log::new(&pool);
    let org = "sched";
    log.configure(org, program_config("EUR"), t("2024-01-01T00:00:00Z"))
        .await;
    log.location(org, "shop", t("2024-01-01T00:00:00Z")).await;
    for k in 0..10 {
        let member = log.enroll(org, None, None, t("2024-01-01T00:00:00Z")).await;
        log.purchase(
            org,
            member,
            &format!("s{k}"),
            "shop",
            1_000 * (k + 1),
            t("2024-06-01T00:00:00Z"),
        )
        .await;
    }
    let started = Utc::now();
    log.flush().await;
    wait_projected(&pool, Duration::from_secs(30)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let scored: i64 = sqlx::query_scalar("SELECT count(*) FROM rm.rfm_scores WHERE computed_at >= $1")
            .bind(started)
            .fetch_one(&pool)
            .await
            .unwrap();
        if scored == 10 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no scheduled recomputation"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    projector.stop().await.unwrap();

    // On demand, for one org at a chosen time: monetary 10.00 … 100.00 gives m = 1,1,2,2,…,5,5.
    let cli = projector::cli::Cli::try_parse_from([
        "projector",
        "rfm-recompute",
        "--org",
        org,
        "--at",
        "2024-07-01T00:00:00Z",
        "--database-url",
        db.url(),
    ])
    .unwrap();
    assert_eq!(
        projector::cli::execute(cli).await.unwrap(),
        std::process::ExitCode::SUCCESS
    );
    let scores: Vec<(i64, i16, i16, i16, i32)> = sqlx::query_as(
        "SELECT s.monetary_minor, s.r, s.f, s.m, s.recency_days FROM rm.rfm_scores s \
         WHERE computed_at = '2024-07-01T00:00:00Z' ORDER BY monetary_minor",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let m: Vec<i16> = scores.iter().map(|s| s.3).collect();
    assert_eq!(m, [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
    assert!(scores.iter().all(|s| (s.1, s.2, s.4) == (1, 1, 30)), "{scores:?}");

    relay.stop().await;
    nats.cleanup().await;
    db.cleanup().await;
}

/// An RFM recomputation runs beside the projection: a batch with the org's purchases commits
/// while the recomputation is still running, and the recomputation records the raw version it
/// read (the purchases before that batch), so the scores say what they are behind by.
#[tokio::test]
async fn a_recomputation_holds_back_no_batch_and_records_the_version_it_scored() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let pool = db.pool().clone();
    let relay = start_relay(&db, &nats).await;
    let projector = spawn_projector(&db, &nats, "rfm-beside").await;
    let mut log = Log::new(&pool);
    let org = "beside";
    log.configure(org, program_config("EUR"), t("2024-01-01T00:00:00Z"))
        .await;
    log.location(org, "shop", t("2024-01-01T00:00:00Z")).await;
    let mut members = Vec::new();
    for k in 0..3 {
        let member = log.enroll(org, None, None, t("2024-01-01T00:00:00Z")).await;
        log.purchase(
            org,
            member,
            &format!("b{k}"),
            "shop",
            1_000,
            t("2024-06-01T00:00:00Z"),
        )
        .await;
        members.push(member);
    }
    log.flush().await;
    wait_projected(&pool, Duration::from_secs(30)).await;
    let at = t("2024-07-01T00:00:00Z");
    // Sessions of the read side, as the projector's: the relay does not wait for their
    // transactions (migration 0016).
    let read_side = common::config::connect_db_with(&db.db_args(), &[common::config::READ_SIDE])
        .await
        .unwrap();
    projector::rfm::recompute(&read_side, "rm", org, at)
        .await
        .unwrap();

    // Hold one member's score row: the next recomputation stops at it, mid-pass.
    let mut holder = read_side.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM rm.rfm_scores WHERE org_id = $1 AND member_id = $2 FOR UPDATE")
        .bind(org)
        .bind(members[0])
        .execute(&mut *holder)
        .await
        .unwrap();
    let running = tokio::spawn({
        let pool = read_side.clone();
        async move { projector::rfm::recompute(&pool, "rm", org, at).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query LIKE '%WITH raw AS (%'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if waiting == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the recomputation never reached the held row"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A purchase of the org is projected while the recomputation waits.
    log.purchase(
        org,
        members[1],
        "b-late",
        "shop",
        5_000,
        t("2024-06-15T00:00:00Z"),
    )
    .await;
    log.flush().await;
    wait_projected(&pool, Duration::from_secs(20)).await;
    assert!(!running.is_finished());

    holder.rollback().await.unwrap();
    let summary = running.await.unwrap().unwrap();
    assert_eq!(summary.members, 3);
    let (raw, scored): (i64, Option<i64>) =
        sqlx::query_as("SELECT raw_version, scored_version FROM rm.rfm_orgs WHERE org_id = $1")
            .bind(org)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (raw, scored),
        (4, Some(3)),
        "the late purchase is after the scored version"
    );
    let frequency: i32 =
        sqlx::query_scalar("SELECT frequency FROM rm.rfm_scores WHERE org_id = $1 AND member_id = $2")
            .bind(org)
            .bind(members[1])
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(frequency, 1, "the scores are those of the version recorded");

    read_side.close().await;
    projector.stop().await.unwrap();
    relay.stop().await;
    nats.cleanup().await;
    db.cleanup().await;
}

/// The segment grid the recomputation uses (`rm.rfm_segment` in the read-model migration) and
/// the domain's (`domain::rfm::segment`) agree on all 25 (R, F) cells.
#[tokio::test]
async fn the_sql_segment_grid_and_the_domains_agree_on_every_cell() {
    let db = TestDb::new().await;
    let cells: Vec<(i32, i32, Option<String>)> = sqlx::query_as(
        "SELECT r, f, rm.rfm_segment(r, f) FROM generate_series(1, 5) AS r, generate_series(1, 5) AS f \
         ORDER BY r, f",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(cells.len(), 25);
    for (r, f, sql) in cells {
        let rust = domain::rfm::segment(u8::try_from(r).unwrap(), u8::try_from(f).unwrap());
        assert_eq!(sql.as_deref(), Some(rust.name()), "cell R={r} F={f}");
    }
    db.cleanup().await;
}
