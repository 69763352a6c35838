//! The disaster-recovery drill of the README ("Disaster recovery"), step by step with the same
//! commands: a realistic workload through the real stack (command API → relay → NATS →
//! projector), a dump of the `events` table alone, a restore into a new empty database, every
//! read model rebuilt from it by the relay and the projector, and then every read-model table
//! (and the command side's indexes) equal to the live one, and `projector audit` clean.
//!
//! The service commands run in this process through their real command lines
//! (`command-service migrate|relay`, `projector run|rfm-recompute|audit`); the dump and restore
//! run `scripts/dr-events.sh`, i.e. pg_dump / pg_restore / psql.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use clap::Parser as _;
use common::keys::Role;
use loyalty_tests::{
    create_api_key, spawn_command_service, spawn_projector, spawn_query_service, wait_projected, TestDb,
    TestNats,
};
use sqlx::{Connection as _, PgPool};
use uuid::Uuid;

/// The "now" of the RFM scores on both sides, so that they can be compared.
const RFM_AT: &str = "2030-01-01T00:00:00Z";

/// Columns that say when something ran, not what the log holds (as in `projector audit`).
const NOT_COMPARED: &[(&str, &str)] = &[
    ("parked_events", "parked_at"),
    ("rfm_orgs", "scored_at"),
    ("rfm_orgs", "scored_version"),
    ("command_transaction_claims", "claimed_at"),
];
/// Tables that record when jobs ran.
const NOT_COMPARED_TABLES: &[&str] = &["rfm_segment_transitions"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace")
        .to_path_buf()
}

/// Runs `scripts/<script> <args>` and panics with its output if it fails.
fn script(script: &str, args: &[&str]) -> String {
    let output = Command::new(repo_root().join("scripts").join(script))
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("running {script}: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{script} {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The database the events are restored into: created empty here, dropped at the end.
struct RestoredDb {
    name: String,
    url: String,
    admin_url: String,
}

impl RestoredDb {
    async fn create() -> Self {
        let admin_url = std::env::var("TEST_DATABASE_ADMIN_URL")
            .unwrap_or_else(|_| loyalty_tests::DEFAULT_ADMIN_URL.to_owned());
        let name = format!("loyalty_restored_{}", Uuid::new_v4().simple());
        let mut url = url::Url::parse(&admin_url).expect("an admin URL");
        url.set_path(&name);
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("admin connection");
        sqlx::query(&format!(r#"CREATE DATABASE "{name}""#))
            .execute(&mut admin)
            .await
            .expect("creating the database to restore into");
        Self {
            name,
            url: url.to_string(),
            admin_url,
        }
    }
}

impl Drop for RestoredDb {
    fn drop(&mut self) {
        let outcome = Command::new("psql")
            .args(["-X", "-q", "--dbname", &self.admin_url, "-c"])
            .arg(format!(r#"DROP DATABASE IF EXISTS "{}" WITH (FORCE)"#, self.name))
            .status();
        if !outcome.is_ok_and(|status| status.success()) {
            eprintln!("warning: database {} not dropped", self.name);
        }
    }
}

async fn command_service(args: &[&str]) -> anyhow::Result<()> {
    let argv = std::iter::once("command-service").chain(args.iter().copied());
    command_service::Cli::try_parse_from(argv)?.execute().await
}

async fn projector_cli(args: &[&str]) -> anyhow::Result<ExitCode> {
    let argv = std::iter::once("projector").chain(args.iter().copied());
    projector::cli::execute(projector::cli::Cli::try_parse_from(argv)?).await
}

/// The workload: the load generator's mix (purchases, refunds, redemptions, adjustments,
/// retries) over two orgs, then both system jobs of each org.
async fn run_workload(db: &TestDb, command_url: &str, graphql_url: &str) {
    let loadgen::Command::Run(args) = loadgen::Cli::try_parse_from([
        "loadgen",
        "run",
        "--command-url",
        command_url,
        "--graphql-url",
        graphql_url,
        "--database-url",
        db.url(),
        "--no-progress",
        "--concurrency",
        "4",
        "--orgs",
        "2",
        "--members",
        "20",
        "--duration",
        "5",
        "--warmup",
        "1",
    ])
    .expect("loadgen arguments")
    .command
    else {
        panic!("not a run");
    };
    let report = loadgen::run_workload(args).await.expect("the workload runs");
    assert_eq!(report.errors_total, 0, "{}", report.render());

    let orgs: Vec<String> = sqlx::query_scalar("SELECT DISTINCT org_id FROM command_members ORDER BY 1")
        .fetch_all(db.pool())
        .await
        .expect("the workload's orgs");
    let http = reqwest::Client::new();
    for org in &orgs {
        let key = create_api_key(db, org, Role::Admin).await;
        for job in ["expire-points", "reevaluate-tiers"] {
            let answer = http
                .post(format!("{command_url}/v1/orgs/{org}/jobs/{job}"))
                .bearer_auth(&key)
                .header("Idempotency-Key", Uuid::new_v4().to_string())
                .json(&serde_json::json!({ "as_of": chrono::Utc::now() }))
                .send()
                .await
                .expect("a job request");
            assert!(
                answer.status().is_success(),
                "{job} of {org}: {}",
                answer.status()
            );
        }
    }
}

/// Every row of `schema.table` as sorted JSON text, without the columns not compared.
async fn table_rows(pool: &PgPool, schema: &str, table: &str) -> Vec<String> {
    let dropped: Vec<&str> = NOT_COMPARED
        .iter()
        .filter(|(t, _)| *t == table)
        .map(|(_, column)| *column)
        .collect();
    sqlx::query_scalar(&format!(
        "SELECT (to_jsonb(t) - $1::text[])::text AS row FROM {schema}.{table} t ORDER BY 1"
    ))
    .bind(&dropped)
    .fetch_all(pool)
    .await
    .unwrap_or_else(|error| panic!("reading {schema}.{table}: {error}"))
}

async fn read_model_tables(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'rm' ORDER BY 1")
        .fetch_all(pool)
        .await
        .expect("listing the read-model tables")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_models_are_rebuilt_from_a_dump_of_the_events_alone() {
    let started = Instant::now();
    // --- Live: the real stack under a workload.
    let live = TestDb::new().await;
    let nats = TestNats::new().await;
    let commands = spawn_command_service(&live, &nats).await;
    let projector = spawn_projector(&live, &nats, "live").await;
    let query = spawn_query_service(&live, &nats).await;
    run_workload(&live, &commands.base_url(), &query.url("/graphql")).await;
    let events = wait_projected(live.pool(), Duration::from_secs(120)).await;
    query.stop().await.expect("query service stops");
    projector.stop().await.expect("projector stops");
    commands.stop().await.expect("command service stops");
    let code = projector_cli(&["--database-url", live.url(), "rfm-recompute", "--at", RFM_AT])
        .await
        .expect("rfm-recompute on the live database");
    assert_eq!(code, ExitCode::SUCCESS);
    let workload_done = started.elapsed();
    println!("live: {events} events after {workload_done:.1?}");

    // --- Step 1: dump the events table.
    let dir = std::env::temp_dir().join(format!("loyalty-drill-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("a dump directory");
    let dump = dir.join("events.dump");
    let dump = dump.to_str().expect("a UTF-8 path");
    print!("{}", script("dr-events.sh", &["dump", live.url(), dump]));

    // --- Step 2: an empty database, migrated.
    let restored = RestoredDb::create().await;
    command_service(&["--database-url", &restored.url, "migrate"])
        .await
        .expect("command-service migrate");

    // --- Step 3: restore the events.
    print!("{}", script("dr-events.sh", &["restore", dump, &restored.url]));
    let pool = PgPool::connect(&restored.url)
        .await
        .expect("the restored database");
    let restored_events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(restored_events, events);
    let restore_done = started.elapsed();

    // --- Step 4: rebuild. The relay publishes the restored log to a new stream, a projector
    // with a new consumer builds the read models from it.
    let stream = TestNats::new().await;
    let nats_args = [
        "--database-url",
        restored.url.as_str(),
        "--nats-url",
        stream.url(),
        "--nats-stream",
        stream.stream(),
        "--nats-subject-prefix",
        stream.subject_prefix(),
    ];
    let relay_args: Vec<&str> = nats_args.iter().copied().chain(["relay"]).collect();
    let relay = tokio::spawn({
        let args: Vec<String> = relay_args.iter().map(|s| s.to_string()).collect();
        async move { command_service(&args.iter().map(String::as_str).collect::<Vec<_>>()).await }
    });
    let projector_args: Vec<String> = nats_args
        .iter()
        .copied()
        .chain(["--listen", "127.0.0.1:0", "--consumer", "restore", "run"])
        .map(str::to_owned)
        .collect();
    let rebuild = tokio::spawn(async move {
        projector_cli(&projector_args.iter().map(String::as_str).collect::<Vec<_>>()).await
    });
    let rebuilt = wait_projected(&pool, Duration::from_secs(180)).await;
    assert_eq!(rebuilt, events);
    assert!(
        !relay.is_finished() && !rebuild.is_finished(),
        "relay or projector stopped early"
    );
    relay.abort();
    rebuild.abort();
    let code = projector_cli(&["--database-url", &restored.url, "rfm-recompute", "--at", RFM_AT])
        .await
        .expect("rfm-recompute on the restored database");
    assert_eq!(code, ExitCode::SUCCESS);
    let rebuild_done = started.elapsed();

    // --- Step 5: the audit of the restored database is clean...
    let code = projector_cli(&["--database-url", &restored.url, "audit"])
        .await
        .expect("projector audit");
    assert_eq!(
        code,
        ExitCode::SUCCESS,
        "the audit of the restored database found differences"
    );

    // ...and every read model equals the live one, row for row.
    let tables = read_model_tables(live.pool()).await;
    assert_eq!(tables, read_model_tables(&pool).await);
    let mut compared = Vec::new();
    for table in tables
        .iter()
        .filter(|t| !NOT_COMPARED_TABLES.contains(&t.as_str()))
    {
        let live_rows = table_rows(live.pool(), "rm", table).await;
        let restored_rows = table_rows(&pool, "rm", table).await;
        assert!(
            live_rows == restored_rows,
            "rm.{table} differs: live {} rows, restored {} rows; first live-only: {:?}; first restored-only: {:?}",
            live_rows.len(),
            restored_rows.len(),
            live_rows.iter().find(|r| !restored_rows.contains(r)),
            restored_rows.iter().find(|r| !live_rows.contains(r)),
        );
        compared.push(format!("{table} {}", live_rows.len()));
    }
    // The command side's indexes, rebuilt by the insert trigger during the restore.
    for table in ["command_members", "command_transaction_claims"] {
        let live_rows = table_rows(live.pool(), "public", table).await;
        assert_eq!(
            live_rows,
            table_rows(&pool, "public", table).await,
            "{table} differs"
        );
        compared.push(format!("{table} {}", live_rows.len()));
    }
    println!("equal: {}", compared.join(", "));
    println!(
        "recovery drill: workload {workload_done:.1?}, dump+restore {:.1?}, rebuild of {events} events {:.1?}, total {:.1?}",
        restore_done - workload_done,
        rebuild_done - restore_done,
        started.elapsed()
    );

    pool.close().await;
    drop(restored);
    std::fs::remove_dir_all(&dir).ok();
    stream.cleanup().await;
    nats.cleanup().await;
    live.cleanup().await;
}
