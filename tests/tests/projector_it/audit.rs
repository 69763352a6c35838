//! A random workload of more than 10,000 commands over several orgs: the live read models
//! equal a replay of the event store, and the ledger balances; a tampered read model is caught.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser as _;
use loyalty_tests::{applied_events, spawn_projector, wait_first_applied, TestDb, TestNats};

use crate::support::{random_workload, start_relay, wait_consumer_drained, wait_projected, Log, Rng};

async fn audit_cli(db: &TestDb) -> ExitCode {
    let cli =
        projector::cli::Cli::try_parse_from(["projector", "audit", "--database-url", db.url()]).unwrap();
    projector::cli::execute(cli).await.unwrap()
}

#[tokio::test]
async fn after_a_random_workload_the_audit_finds_no_difference_and_the_ledger_balances() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let pool = db.pool().clone();
    let relay = start_relay(&db, &nats).await;
    let mut log = Log::new(&pool);
    let mut rng = Rng::new(0xA0D1_7000);
    let started = Instant::now();
    random_workload(
        &mut log,
        &mut rng,
        &["yen-shop", "cafe", "books", "bikes"],
        150,
        10_000,
        1_000,
    )
    .await;
    let written = started.elapsed();
    assert!(log.commands >= 10_000);

    // Audited while the projector catches up and goes on writing: the live side is read as of
    // one instant (tables and checkpoints alike), so it equals the replay of what it had seen.
    let projector = spawn_projector(&db, &nats, "audited").await;
    wait_first_applied(&pool, Duration::from_secs(60)).await;
    let during = projector::audit::audit(&pool, "rm").await.unwrap();
    assert!(during.is_clean(), "{during}");
    assert!(
        during
            .notes
            .iter()
            .any(|note| note.contains("not yet applied by the live projector")),
        "{during}"
    );
    for summary in &during.tables {
        assert_eq!(summary.live_rows, summary.replay_rows, "{during}");
    }
    assert!(
        applied_events(&pool).await > during.events_replayed as i64,
        "the projector wrote nothing while audited: {during}"
    );
    wait_projected(&pool, Duration::from_secs(120)).await;
    let projected = started.elapsed();
    wait_consumer_drained(&nats, "audited", Duration::from_secs(30)).await;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    for org in ["yen-shop", "cafe", "books", "bikes"] {
        projector::rfm::recompute(&pool, "rm", org, chrono::Utc::now())
            .await
            .unwrap();
    }

    let started = Instant::now();
    let audit = projector::audit::audit(&pool, "rm").await.unwrap();
    let audited = started.elapsed();
    assert!(audit.is_clean(), "{audit}");
    assert_eq!(audit.events_replayed as i64, events);
    // Every table was compared and is not trivially empty.
    for table in [
        "member_balances",
        "journal_entries",
        "postings",
        "leaderboard_current",
        "rfm_scores",
        "tier_history",
        "stamp_cards",
    ] {
        let summary = audit.tables.iter().find(|t| t.table == table).unwrap();
        assert!(
            summary.live_rows > 0 && summary.live_rows == summary.replay_rows,
            "{summary:?}"
        );
    }
    eprintln!(
        "{} commands, {events} events: written in {written:?}, projected after {projected:?}, audited in {audited:?}",
        log.commands
    );

    // The ledger, checked directly: per org Σ balances = liability, every entry sums to 0.
    let unbalanced_orgs: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT l.org_id, l.points, coalesce(sum(b.balance), 0)::bigint FROM rm.org_liability l \
         LEFT JOIN rm.member_balances b USING (org_id) GROUP BY l.org_id, l.points \
         HAVING l.points <> coalesce(sum(b.balance), 0)",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(unbalanced_orgs, []);
    let orgs: i64 = sqlx::query_scalar("SELECT count(*) FROM rm.org_liability")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(orgs, 4);
    let unbalanced_entries: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM rm.journal_entries j JOIN rm.postings p USING (org_id, member_id, sequence) \
         GROUP BY j.org_id, j.member_id, j.sequence HAVING sum(p.delta) <> 0 OR count(*) <> 2) u",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(unbalanced_entries, 0);
    // And the read models agree with the domain's own fold of each member.
    let balances: Vec<(String, uuid::Uuid, i64, i64)> =
        sqlx::query_as("SELECT org_id, member_id, balance, lifetime_earned FROM rm.member_balances")
            .fetch_all(&pool)
            .await
            .unwrap();
    for (org, member, balance, lifetime) in &balances {
        let state = log.member_state(org, *member);
        assert_eq!(
            (*balance, *lifetime),
            (state.points.balance, state.points.lifetime_earned),
            "{org}/{member}"
        );
    }
    assert!(balances.iter().any(|b| b.2 < 0) || balances.len() > 100);
    assert_eq!(audit_cli(&db).await, ExitCode::SUCCESS);

    // A read model changed behind the projector's back is reported, with the ledger rules it
    // breaks, and the command fails.
    projector.stop().await.unwrap();
    sqlx::query(
        "UPDATE rm.member_balances SET balance = balance + 1 \
         WHERE member_id = (SELECT member_id FROM rm.member_balances ORDER BY member_id LIMIT 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let audit = projector::audit::audit(&pool, "rm").await.unwrap();
    assert!(!audit.is_clean());
    let mut tables: Vec<&str> = audit.differences.iter().map(|d| d.table.as_str()).collect();
    tables.sort();
    assert_eq!(
        tables,
        [
            "invariant: balance = member postings",
            "invariant: liability = sum of balances",
            "member_balances",
            "member_balances"
        ],
        "{audit}"
    );
    assert_eq!(audit_cli(&db).await, ExitCode::FAILURE);
    // The scratch schemas are gone.
    let scratch: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'audit_%'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(scratch, 0);

    // Values swapped between two rows leave each column's values and the row count as they
    // were, and break no ledger rule: still two rows only in live and two only in the replay.
    sqlx::query(
        "UPDATE rm.member_balances SET balance = balance - 1 \
         WHERE member_id = (SELECT member_id FROM rm.member_balances ORDER BY member_id LIMIT 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert!(projector::audit::audit(&pool, "rm").await.unwrap().is_clean());
    sqlx::query(
        "WITH pair AS (SELECT a.org_id AS a_org, a.member_id AS a_id, a.lifetime_earned AS a_earned, \
                              b.org_id AS b_org, b.member_id AS b_id, b.lifetime_earned AS b_earned \
                       FROM rm.member_balances a JOIN rm.member_balances b ON a.lifetime_earned < b.lifetime_earned \
                       ORDER BY a.member_id, b.member_id LIMIT 1) \
         UPDATE rm.member_balances m SET lifetime_earned = CASE WHEN m.member_id = pair.a_id THEN pair.b_earned \
                                                                 ELSE pair.a_earned END \
         FROM pair WHERE (m.org_id, m.member_id) IN ((pair.a_org, pair.a_id), (pair.b_org, pair.b_id))",
    )
    .execute(&pool)
    .await
    .unwrap();
    let audit = projector::audit::audit(&pool, "rm").await.unwrap();
    let sides: Vec<(&str, &str)> = audit
        .differences
        .iter()
        .map(|d| (d.table.as_str(), d.side.as_str()))
        .collect();
    assert_eq!(
        sides,
        [
            ("member_balances", "only in live"),
            ("member_balances", "only in live"),
            ("member_balances", "only in replay"),
            ("member_balances", "only in replay")
        ],
        "{audit}"
    );

    relay.stop().await;
    nats.cleanup().await;
    db.cleanup().await;
}
