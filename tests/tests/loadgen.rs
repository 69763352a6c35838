//! The load generator against the real stack (command service with its relay, projector, query
//! service, Postgres, JetStream): what `scripts/bench.sh` reports must come from runs that
//! really went through, and a seeded log must be one the platform accepts as its own.

use std::time::Duration;

use clap::Parser as _;
use loadgen::{Cli, Command};
use loyalty_tests::command_api::spawn_command_service;
use loyalty_tests::{spawn_projector, spawn_query_service, wait_projected, TestDb, TestNats};

fn parse(args: &[&str]) -> Command {
    Cli::try_parse_from(std::iter::once("loadgen").chain(args.iter().copied()))
        .expect("valid loadgen arguments")
        .command
}

#[tokio::test]
async fn a_mixed_run_measures_throughput_and_lag_and_checks_the_ledger() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let commands = spawn_command_service(&db, &nats).await;
    let projector = spawn_projector(&db, &nats, "loadgen-run").await;
    let query = spawn_query_service(&db, &nats).await;

    let graphql = query.url("/graphql");
    let base = commands.base_url();
    let Command::Run(args) = parse(&[
        "run",
        "--command-url",
        &base,
        "--graphql-url",
        &graphql,
        "--database-url",
        db.url(),
        "--no-progress",
        "--concurrency",
        "4",
        "--orgs",
        "2",
        "--members",
        "10",
        "--duration",
        "4",
        "--warmup",
        "1",
    ]) else {
        panic!("not a run");
    };
    let report = loadgen::run_workload(args).await.expect("the run completes");

    assert!(report.commands_ok > 20, "{}", report.render());
    assert_eq!(report.errors_total, 0, "{}", report.render());
    // The mix reached the platform: purchases and the retried requests at least.
    for kind in ["purchase", "retry"] {
        assert!(
            report.by_kind.get(kind).is_some_and(|k| k.count > 0),
            "no {kind} in {}",
            report.render()
        );
    }
    let lag = report.lag.as_ref().expect("lag is measured by default");
    assert!(lag.samples.count > 0, "{}", report.render());
    assert_eq!((lag.timeouts, lag.unresolved), (0, 0), "{}", report.render());
    let consistency = report.consistency.as_ref().expect("checked by default");
    assert!(consistency.ok, "{}", report.render());
    // Σ of the balances the API acknowledged is what the read models hold, per org.
    assert_eq!(consistency.orgs.len(), 2, "{}", report.render());

    query.stop().await.unwrap();
    projector.stop().await.unwrap();
    commands.stop().await.unwrap();
    nats.cleanup().await;
    db.cleanup().await;
}

#[tokio::test]
async fn a_run_with_promotions_earns_through_them_and_still_checks_the_ledger() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let commands = spawn_command_service(&db, &nats).await;
    let projector = spawn_projector(&db, &nats, "loadgen-promotions").await;
    let query = spawn_query_service(&db, &nats).await;

    let graphql = query.url("/graphql");
    let base = commands.base_url();
    let Command::Run(args) = parse(&[
        "run",
        "--command-url",
        &base,
        "--graphql-url",
        &graphql,
        "--database-url",
        db.url(),
        "--no-progress",
        "--concurrency",
        "4",
        "--orgs",
        "2",
        "--members",
        "10",
        "--promotions",
        "10",
        "--duration",
        "4",
        "--warmup",
        "1",
    ]) else {
        panic!("not a run");
    };
    let report = loadgen::run_workload(args).await.expect("the run completes");

    assert_eq!(report.errors_total, 0, "{}", report.render());
    assert!(
        report.by_kind.get("purchase").is_some_and(|k| k.count > 0),
        "{}",
        report.render()
    );
    let consistency = report.consistency.as_ref().expect("checked by default");
    assert!(consistency.ok, "{}", report.render());

    // The check waited for the projections: every org's program holds the ten promotions, and
    // the purchases earned through them (the always-on ones at least, and the budget drawn).
    let programs: Vec<(String, i64)> = sqlx::query_as(
        "SELECT org_id, count(*) FROM rm.program_promotions WHERE ends_at IS NULL GROUP BY org_id",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(programs.len(), 2, "{programs:?}");
    assert!(programs.iter().all(|(_, n)| *n == 10), "{programs:?}");
    let used: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT promotion_id, sum(uses)::bigint, sum(points)::bigint, sum(budget_drawn)::bigint
         FROM rm.promotion_stats GROUP BY promotion_id",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    for id in ["every-day-triple", "sponsored-extra", "daily-visit", "welcome"] {
        assert!(
            used.iter()
                .any(|(p, uses, points, _)| p == id && *uses > 0 && *points > 0),
            "{id} never earned: {used:?}"
        );
    }
    let (_, _, points, drawn) = used.iter().find(|(p, ..)| p == "sponsored-extra").unwrap();
    assert_eq!(
        drawn, points,
        "the budget drawn is what the budgeted promotion awarded"
    );

    query.stop().await.unwrap();
    projector.stop().await.unwrap();
    commands.stop().await.unwrap();
    nats.cleanup().await;
    db.cleanup().await;
}

#[tokio::test]
async fn a_seeded_log_is_relayed_projected_and_audits_clean() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let commands = spawn_command_service(&db, &nats).await;
    let projector = spawn_projector(&db, &nats, "loadgen-seed").await;

    let base = commands.base_url();
    let Command::Seed(args) = parse(&[
        "seed",
        "--command-url",
        &base,
        "--database-url",
        db.url(),
        "--no-progress",
        "--events",
        "3000",
        "--orgs",
        "2",
        "--members",
        "15",
        "--batch",
        "400",
    ]) else {
        panic!("not a seed");
    };
    let report = loadgen::seed::run_seed(args).await.expect("the seed completes");
    assert!(report.events >= 3_000, "{}", report.render());
    assert_eq!(report.members, 30);

    let member_events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'member'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(member_events, i64::try_from(report.events).unwrap());
    // The store's own triggers indexed the seeded members and purchases.
    let (members, claims): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM command_members), (SELECT count(*) FROM command_transaction_claims)",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(members, 30);
    assert_eq!(
        claims,
        i64::try_from(report.events_by_type["PurchaseRecorded"]).unwrap()
    );

    let total = wait_projected(db.pool(), Duration::from_secs(120)).await;
    let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM rm.parked_events")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(parked, 0);
    let audit = projector::audit::audit(db.pool(), "rm").await.unwrap();
    assert!(audit.is_clean(), "{audit}");
    assert_eq!(audit.events_replayed as i64, total);

    projector.stop().await.unwrap();
    commands.stop().await.unwrap();
    nats.cleanup().await;
    db.cleanup().await;
}
