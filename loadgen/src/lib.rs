//! POS load generator and benchmark driver for the loyalty platform.
//!
//! It talks to a running platform only through its public contracts (SPEC §8): the JSON
//! command API as POS terminals do, GraphQL as storefront widgets do. It sets up its own orgs,
//! programs, locations and API keys (keys through `common::keys`, the library behind
//! `command-service keys create`, so it needs the database URL), so one command runs it:
//!
//! ```text
//! loadgen run --concurrency 32 --duration 30          # closed loop, mixed POS traffic
//! loadgen run --rate 1000 --duration 60 --mix purchase=1   # open loop, purchases only
//! loadgen history --events 10000 --samples 300          # long-history member vs new member
//! loadgen graphql --query member --connections 32       # storefront query throughput
//! ```
//!
//! Subcommands:
//! - [`run`](run_workload): a realistic mix (enrolments, purchases, refunds, redemptions,
//!   retries with the same `Idempotency-Key`), closed-loop at a concurrency or open-loop at a
//!   rate, then commands/s, latency p50/p99/p99.9, errors by kind, projection lag and a
//!   consistency check ([`check`]).
//! - [`history`](run_history): command latency on a member with a long history vs a new one.
//! - [`graphql`](run_graphql): QPS and latency of a GraphQL query at a number of connections.
//! - [`seed`](seed::run_seed): a large log written straight into the event store, for the audit
//!   replay benchmark.
//!
//! Only loopback targets are accepted, and every run is bounded in time and requests.

// Rates, means and milliseconds in the reports are statistics, never money or points: floats
// are the right tool here.
#![allow(clippy::float_arithmetic)]

pub mod api;
pub mod check;
pub mod lag;
pub mod resources;
pub mod seed;
pub mod setup;
pub mod stats;
pub mod workload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::api::{graphql_error_kind, transport_error_kind, Api};
use crate::lag::{LagConfig, LagSource, LagTracker};
use crate::setup::{Org, CURRENCY};
use crate::stats::{rate, Latencies, LatencySummary, Recorder, RunReport};
use crate::workload::{Mix, OrgCtx, Window, Workload, DEFAULT_MIX};

/// Longest run the load generator accepts, in seconds.
pub const MAX_DURATION_SECS: u64 = 3_600;

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "POS load generator for the loyalty platform"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Simulated POS terminals sending a mix of commands; reports throughput, latency, errors,
    /// projection lag and a consistency check.
    Run(RunArgs),
    /// Command latency on a member with a long history compared with a new member.
    History(HistoryArgs),
    /// Throughput and latency of a GraphQL query.
    Graphql(GraphqlArgs),
    /// Fills the event store with a large valid log directly (domain-decided events appended
    /// in bulk), for the audit replay benchmark.
    Seed(seed::SeedArgs),
}

/// Where the platform is and how to report.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// Base URL of the command service (loopback only).
    #[arg(long, env = "LOADGEN_COMMAND_URL", default_value = "http://127.0.0.1:8080")]
    pub command_url: String,
    /// URL of the GraphQL endpoint of the query service (loopback only).
    #[arg(
        long,
        env = "LOADGEN_GRAPHQL_URL",
        default_value = "http://127.0.0.1:8082/graphql"
    )]
    pub graphql_url: String,
    /// The platform's database, where the API keys of the generated orgs are created
    /// (loopback only).
    #[arg(long, env = "DATABASE_URL", default_value = common::config::DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// Generated orgs are named `<prefix>-<random run id>-<n>`.
    #[arg(long, default_value = "lg")]
    pub org_prefix: String,
    /// Per-request timeout, seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=120))]
    pub request_timeout: u64,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

impl Target {
    fn api(&self) -> anyhow::Result<Api> {
        Api::new(
            &self.command_url,
            &self.graphql_url,
            Duration::from_secs(self.request_timeout),
        )
    }

    fn progress(&self, len: u64) -> ProgressBar {
        let target = if self.no_progress {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(Some(len), target);
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {percent:>3}% {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar
    }

    fn write_json(&self, report: &impl Serialize) -> anyhow::Result<()> {
        if let Some(path) = &self.json {
            let text = serde_json::to_string_pretty(report)?;
            std::fs::write(path, text + "\n")
                .with_context(|| format!("writing the JSON report to {}", path.display()))?;
        }
        Ok(())
    }

    async fn orgs(&self, api: &Api, count: usize, locations: usize) -> anyhow::Result<Vec<Org>> {
        let keys_db = setup::connect_platform_db(&self.database_url).await?;
        let prefix = format!("{}-{}", self.org_prefix, setup::run_id());
        let orgs = setup::create_orgs(api, &keys_db, &prefix, count, locations).await;
        keys_db.close().await;
        orgs
    }
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub target: Target,
    /// Number of orgs to create.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub orgs: u64,
    /// Locations per org.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub locations: u64,
    /// Members enrolled per org before the measured run.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=200_000))]
    pub members: u64,
    /// Closed loop: this many terminals, each waiting for its answer before the next request.
    #[arg(long, default_value_t = 16, conflicts_with = "rate",
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub concurrency: u64,
    /// Open loop: start this many requests per second on schedule, whatever the latency.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub rate: Option<u64>,
    /// Open loop: requests outstanding at most; more are counted as client errors.
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub max_in_flight: u64,
    /// Length of the run in seconds, warm-up included.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=MAX_DURATION_SECS))]
    pub duration: u64,
    /// Seconds at the start whose requests are sent but not measured.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub warmup: u64,
    /// Stop after this many requests (warm-up included) even if time is left.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub max_requests: Option<u64>,
    /// Relative weights of enrol, purchase, refund, redeem and retry.
    #[arg(long, default_value = DEFAULT_MIX)]
    pub mix: Mix,
    /// Do not measure projection lag.
    #[arg(long)]
    pub no_lag: bool,
    /// Where projection lag is observed: the read-model tables (`db`, cheap) or the query
    /// service (`graphql`, adds its round trip and CPU to every sample).
    #[arg(long, value_enum, default_value = "db")]
    pub lag_source: LagSourceKind,
    /// How often pending acknowledgements are looked up, milliseconds.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub lag_poll_ms: u64,
    /// Start measuring right after the set-up, without waiting for it to be projected (for a
    /// run with the projector stopped).
    #[arg(long)]
    pub no_settle: bool,
    /// Skip the consistency check at the end.
    #[arg(long)]
    pub no_check: bool,
    /// Postgres schema of the read models, for the journal check.
    #[arg(long, default_value = "rm")]
    pub read_model_schema: String,
    /// Command run at the end to audit the read models, e.g. `target/release/projector audit`;
    /// a non-zero exit fails the check.
    #[arg(long)]
    pub audit_cmd: Option<String>,
    /// Seed of the random choices (random when absent).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Account the CPU time of this process (and its children) over the measured window, as
    /// `<name>=<pid>`; repeatable (e.g. `postgres=<postmaster pid>`, `command-service=<pid>`).
    /// The database's transactions, rows and WAL per command are reported with it.
    #[arg(long = "watch", value_name = "NAME=PID")]
    pub watch: Vec<resources::Watched>,
}

/// Where `loadgen run` observes the read model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LagSourceKind {
    Db,
    Graphql,
}

/// `loadgen run`: sets up orgs and members, drives the mix, reports.
pub async fn run_workload(args: RunArgs) -> anyhow::Result<RunReport> {
    if args.warmup >= args.duration {
        bail!(
            "--warmup ({} s) must be shorter than --duration ({} s)",
            args.warmup,
            args.duration
        );
    }
    let api = args.target.api()?;
    let orgs = args
        .target
        .orgs(&api, args.orgs as usize, args.locations as usize)
        .await?;
    eprintln!(
        "loadgen: {} orgs ({}), enrolling {} members each",
        orgs.len(),
        orgs.iter().map(|o| o.id.as_str()).collect::<Vec<_>>().join(", "),
        args.members
    );
    let mut contexts = Vec::with_capacity(orgs.len());
    for org in orgs {
        let members = setup::enrol_members(&api, &org, 1, args.members, 32).await?;
        contexts.push(OrgCtx::new(org, members));
    }
    let members_at_start = contexts.iter().map(OrgCtx::member_count).sum();
    let org_ids: Vec<String> = contexts.iter().map(|c| c.org.id.clone()).collect();
    let source = match args.lag_source {
        LagSourceKind::Db => LagSource::Db {
            pool: setup::connect_platform_db(&args.target.database_url).await?,
            schema: args.read_model_schema.clone(),
        },
        LagSourceKind::Graphql => LagSource::Graphql {
            api: api.clone(),
            keys: contexts.iter().map(|c| c.org.storefront_key.clone()).collect(),
        },
    };
    // Start measuring on a settled platform: the projection of the set-up must not be counted
    // against the measured run.
    let newest: Vec<((usize, Uuid), i64)> = contexts
        .iter()
        .enumerate()
        .flat_map(|(i, c)| {
            let members = c.snapshot();
            let newest = members.len().saturating_sub(5);
            members[newest..]
                .iter()
                .map(|(member, balance)| ((i, *member), *balance))
                .collect::<Vec<_>>()
        })
        .collect();
    if !args.no_settle {
        let settled = lag::wait_until_shown(
            &source,
            &org_ids,
            &newest,
            Duration::from_secs(120),
            Duration::from_millis(50),
        )
        .await
        .context("waiting for the set-up to be projected")?;
        eprintln!(
            "loadgen: set-up projected {:.1} s after the last enrolment",
            settled.as_secs_f64()
        );
    }

    let lag = (!args.no_lag).then(|| {
        LagTracker::spawn(
            source.clone(),
            org_ids.clone(),
            LagConfig {
                poll_interval: Duration::from_millis(args.lag_poll_ms),
                batch: 25,
                timeout: Duration::from_secs(30),
            },
        )
    });

    let start = Instant::now();
    let window = Window {
        measure_from: start + Duration::from_secs(args.warmup),
        end: start + Duration::from_secs(args.duration),
        max_requests: args.max_requests,
    };
    let workload = Arc::new(Workload::new(
        api.clone(),
        contexts,
        args.mix.clone(),
        window,
        lag.as_ref().map(LagTracker::sender),
    ));
    let seed = args.seed.unwrap_or_else(|| rand::rng().random());
    let mode = match args.rate {
        Some(rate) => format!("open loop at {rate}/s, mix {}", mix_text(&args)),
        None => format!(
            "closed loop, {} terminals, mix {}",
            args.concurrency,
            mix_text(&args)
        ),
    };
    eprintln!("loadgen: {mode}, {} s ({} s warm-up)", args.duration, args.warmup);

    let stats_pool = if args.watch.is_empty() {
        None
    } else {
        Some(setup::connect_platform_db(&args.target.database_url).await?)
    };
    let resources_start = {
        let (watch, pool) = (args.watch.clone(), stats_pool.clone());
        tokio::spawn(async move {
            tokio::time::sleep_until(window.measure_from.into()).await;
            resources::start(&watch, pool.as_ref()).await
        })
    };

    let bar = args.target.progress(args.duration * 1000);
    let ticker = {
        let workload = workload.clone();
        let bar = bar.clone();
        let pending = lag.as_ref().map(|l| l.pending_handle());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let elapsed = start.elapsed();
                let measured = Instant::now().saturating_duration_since(window.measure_from);
                let ok = workload.ok.load(std::sync::atomic::Ordering::Relaxed);
                let errors = workload.errors.load(std::sync::atomic::Ordering::Relaxed);
                bar.set_position(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
                bar.set_message(format!(
                    "{ok} ok ({}/s) {errors} errors{}",
                    rate(ok, measured),
                    pending
                        .as_ref()
                        .map(|p| format!(", lag pending {}", p()))
                        .unwrap_or_default()
                ));
            }
        })
    };
    match args.rate {
        Some(rate) => workload::open_loop(workload.clone(), rate, args.max_in_flight as usize, seed).await,
        None => workload::closed_loop(workload.clone(), args.concurrency as usize, seed).await,
    }
    let finished = Instant::now();
    let recorder: Recorder = workload.recorder();
    let resources = if args.watch.is_empty() {
        None
    } else {
        let start = resources_start.await?;
        Some(resources::finish(start, &args.watch, stats_pool.as_ref(), recorder.all.count()).await)
    };
    ticker.abort();
    bar.finish_and_clear();
    let measured = finished
        .min(window.end)
        .saturating_duration_since(window.measure_from);

    let lag_report = match lag {
        Some(lag) => {
            eprintln!("loadgen: waiting for the projections to catch up");
            Some(lag.finish(Duration::from_secs(30)).await?)
        }
        None => None,
    };
    let consistency = if args.no_check {
        None
    } else {
        // The lag tracker only drained what it tracked; let the last writes settle too.
        eprintln!("loadgen: checking consistency");
        Some(
            consistency(
                &api,
                &workload.orgs,
                &args.target.database_url,
                &args.read_model_schema,
                args.audit_cmd.as_deref(),
            )
            .await,
        )
    };

    let report = RunReport {
        mode,
        orgs: workload.orgs.len(),
        members_at_start,
        measured_seconds: stats::round1(measured.as_secs_f64()),
        commands_ok: recorder.all.count(),
        commands_per_second: rate(recorder.all.count(), measured),
        errors_total: recorder.error_count(),
        latency: recorder.all.summary(),
        by_kind: recorder
            .by_kind
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.summary()))
            .collect(),
        errors: recorder.errors.clone(),
        lag: lag_report,
        resources,
        consistency,
    };
    args.target.write_json(&report)?;
    Ok(report)
}

fn mix_text(args: &RunArgs) -> String {
    workload::OpKind::ALL
        .into_iter()
        .filter(|k| args.mix.weight(*k) > 0)
        .map(|k| format!("{}={}", k.name(), args.mix.weight(k)))
        .collect::<Vec<_>>()
        .join(",")
}

async fn consistency(
    api: &Api,
    orgs: &[OrgCtx],
    database_url: &str,
    read_model_schema: &str,
    audit_cmd: Option<&str>,
) -> check::ConsistencyReport {
    let mut checks = Vec::new();
    let mut ok = true;
    for ctx in orgs {
        let members = ctx.snapshot();
        // Wait (bounded) for the read model to show the last acknowledgements.
        let deadline = Instant::now() + Duration::from_secs(30);
        let result = loop {
            let result = check::check_org(api, &ctx.org, &members).await;
            match &result {
                Ok(c) if c.ok() => break result,
                _ if Instant::now() >= deadline => break result,
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        match result {
            Ok(c) => {
                ok &= c.ok();
                checks.push(c);
            }
            Err(error) => {
                ok = false;
                eprintln!("loadgen: cannot check {}: {error:#}", ctx.org.id);
            }
        }
    }
    let org_ids: Vec<String> = orgs.iter().map(|c| c.org.id.clone()).collect();
    let journal = async {
        let pool = setup::connect_platform_db(database_url).await?;
        let journal = check::check_journal(&pool, read_model_schema, &org_ids).await;
        pool.close().await;
        journal
    }
    .await;
    ok &= matches!(&journal, Ok(j) if j.ok());
    let audit = match audit_cmd {
        Some(cmd) => {
            let result = check::run_audit(cmd, Duration::from_secs(1800)).await;
            ok &= matches!(&result, Ok(a) if a.exit_code == Some(0));
            Some(result.map_err(|e| format!("{e:#}")))
        }
        None => None,
    };
    check::ConsistencyReport {
        orgs: checks,
        journal: Some(journal.map_err(|e| format!("{e:#}"))),
        audit,
        ok,
    }
}

#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub target: Target,
    /// Events the long-history member has before measuring.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub events: u64,
    /// Purchases measured on each of the two members' kinds.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub samples: u64,
    /// Postgres schema of the read models (projection lag is read there).
    #[arg(long, default_value = "rm")]
    pub read_model_schema: String,
    /// Terminals preloading the long history in parallel (they conflict on the one member, so
    /// more than a few only adds retries).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub preload_concurrency: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HistoryReport {
    pub long_history_events: i64,
    pub preload_seconds: f64,
    /// How long after the last preload purchase the read model showed the member's balance.
    pub preload_projected_after_seconds: f64,
    /// Command latency of a purchase.
    pub long_history: LatencySummary,
    pub new_member: LatencySummary,
    pub p50_ratio: f64,
    /// Projection lag of that purchase (ack until the read model shows the balance), measured
    /// one purchase at a time.
    pub long_history_lag: LatencySummary,
    pub new_member_lag: LatencySummary,
    pub errors: std::collections::BTreeMap<String, u64>,
}

impl HistoryReport {
    pub fn render(&self) -> String {
        format!(
            "== loadgen history ==\n\
             member with {} events (preloaded in {:.1} s, projected {:.1} s after the last one)\n\
             command latency, long-history member: {}\n\
             command latency, new member:          {}\n\
             p50 ratio long/new: {:.2}\n\
             projection lag, long-history member:  {}\n\
             projection lag, new member:           {}\n\
             errors: {:?}\n",
            self.long_history_events,
            self.preload_seconds,
            self.preload_projected_after_seconds,
            self.long_history.line(),
            self.new_member.line(),
            self.p50_ratio,
            self.long_history_lag.line(),
            self.new_member_lag.line(),
            self.errors
        )
    }
}

fn purchase_body(org: &Org, amount_minor: i64) -> Value {
    json!({
        "transaction_id": format!("tx-{}", Uuid::new_v4()),
        "location_id": org.locations[0],
        "amount_minor": amount_minor,
        "currency": CURRENCY,
        "occurred_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

/// The highest `sequence` among the events of a write reply.
fn last_sequence(body: &Value) -> Option<i64> {
    body.get("events")?
        .as_array()?
        .iter()
        .filter_map(|e| e.get("sequence").and_then(Value::as_i64))
        .max()
}

/// One purchase; returns the member's balance after it.
async fn purchase_balance(api: &Api, org: &Org, member: Uuid, amount_minor: i64) -> Result<i64, String> {
    let reply = api
        .post(
            &format!("/v1/orgs/{}/members/{member}/purchases", org.id),
            &org.pos_key,
            &Uuid::new_v4().to_string(),
            &purchase_body(org, amount_minor),
        )
        .await
        .map_err(|e| transport_error_kind(&e))?;
    if !reply.is_success() {
        return Err(reply.error_kind());
    }
    reply
        .balance()
        .ok_or_else(|| "contract: reply without balance".to_owned())
}

/// One purchase on `member`: its command latency, then how long until the read model showed
/// the acknowledged balance.
async fn timed_purchase(
    api: &Api,
    org: &Org,
    source: &LagSource,
    org_ids: &[String],
    member: Uuid,
) -> Result<(Duration, Duration), String> {
    let t = Instant::now();
    let balance = purchase_balance(api, org, member, 1_000).await?;
    let latency = t.elapsed();
    let acked = Instant::now();
    lag::wait_until_shown(
        source,
        org_ids,
        &[((0, member), balance)],
        Duration::from_secs(60),
        Duration::from_millis(1),
    )
    .await
    .map_err(|e| format!("lag: {e:#}"))?;
    Ok((latency, acked.elapsed()))
}

/// The member's balance as the command API knows it (`GET .../members/{id}`).
async fn balance_of(api: &Api, org: &Org, member: Uuid) -> anyhow::Result<i64> {
    let reply = api
        .send(
            reqwest::Method::GET,
            &format!("/v1/orgs/{}/members/{member}", org.id),
            &org.pos_key,
            None,
            None,
        )
        .await?;
    anyhow::ensure!(
        reply.is_success(),
        "GET member {member}: {}: {}",
        reply.status,
        reply.body
    );
    reply
        .balance()
        .with_context(|| format!("GET member {member} has no balance: {}", reply.body))
}

/// One purchase; returns the last event sequence of the member after it.
async fn purchase(api: &Api, org: &Org, member: Uuid, amount_minor: i64) -> Result<i64, String> {
    let reply = api
        .post(
            &format!("/v1/orgs/{}/members/{member}/purchases", org.id),
            &org.pos_key,
            &Uuid::new_v4().to_string(),
            &purchase_body(org, amount_minor),
        )
        .await
        .map_err(|e| transport_error_kind(&e))?;
    if !reply.is_success() {
        return Err(reply.error_kind());
    }
    last_sequence(&reply.body).ok_or_else(|| "contract: reply without event sequences".to_owned())
}

/// `loadgen history`: latency of a purchase on a member with `--events` events vs on a member
/// enrolled just before.
pub async fn run_history(args: HistoryArgs) -> anyhow::Result<HistoryReport> {
    let api = args.target.api()?;
    let org = args.target.orgs(&api, 1, 1).await?.remove(0);
    let hot = setup::enrol_members(&api, &org, 1, 1, 1).await?[0];
    eprintln!(
        "loadgen: preloading member {hot} of {} with {} events",
        org.id, args.events
    );
    let bar = args.target.progress(args.events);
    let preload_start = Instant::now();
    let reached = std::sync::atomic::AtomicI64::new(1);
    let mut errors = std::collections::BTreeMap::<String, u64>::new();
    let preload = futures::future::join_all((0..args.preload_concurrency).map(|_| async {
        let mut failures = Vec::new();
        while reached.load(std::sync::atomic::Ordering::Relaxed) < args.events as i64 {
            match purchase(&api, &org, hot, 100).await {
                Ok(sequence) => {
                    reached.fetch_max(sequence, std::sync::atomic::Ordering::Relaxed);
                    bar.set_position(u64::try_from(sequence).unwrap_or(0));
                }
                Err(error) => {
                    failures.push(error);
                    if failures.len() > 100 {
                        break;
                    }
                }
            }
        }
        failures
    }))
    .await;
    bar.finish_and_clear();
    for error in preload.into_iter().flatten() {
        *errors.entry(format!("preload: {error}")).or_default() += 1;
    }
    let events = reached.load(std::sync::atomic::Ordering::Relaxed);
    if events < args.events as i64 {
        bail!("preloading stopped at {events} events: {errors:?}");
    }
    let preload_seconds = stats::round1(preload_start.elapsed().as_secs_f64());

    // The projector has to work through the preload before lag samples mean anything.
    let source = LagSource::Db {
        pool: setup::connect_platform_db(&args.target.database_url).await?,
        schema: args.read_model_schema.clone(),
    };
    let org_ids = vec![org.id.clone()];
    let hot_balance = balance_of(&api, &org, hot).await?;
    let catch_up = lag::wait_until_shown(
        &source,
        &org_ids,
        &[((0, hot), hot_balance)],
        Duration::from_secs(600),
        Duration::from_millis(20),
    )
    .await
    .context("waiting for the projector to catch up with the preload")?;

    let (mut long, mut new) = (Latencies::default(), Latencies::default());
    let (mut long_lag, mut new_lag) = (Latencies::default(), Latencies::default());
    let fresh = setup::enrol_members(&api, &org, 2, args.samples, 8).await?;
    let mut sample_errors = Vec::new();
    for fresh in fresh {
        // Alternate, so both kinds see the same conditions.
        for (member, latencies, lags, what) in [
            (hot, &mut long, &mut long_lag, "long history"),
            (fresh, &mut new, &mut new_lag, "new member"),
        ] {
            match timed_purchase(&api, &org, &source, &org_ids, member).await {
                Ok((latency, lag)) => {
                    latencies.record(latency);
                    lags.record(lag);
                }
                Err(e) => sample_errors.push(format!("{what}: {e}")),
            }
        }
    }
    for error in sample_errors {
        *errors.entry(error).or_default() += 1;
    }
    let (long, new) = (long.summary(), new.summary());
    let report = HistoryReport {
        long_history_events: events,
        preload_seconds,
        preload_projected_after_seconds: stats::round1(catch_up.as_secs_f64()),
        p50_ratio: if new.p50_ms > 0.0 {
            stats::round1(long.p50_ms / new.p50_ms * 10.0) / 10.0
        } else {
            0.0
        },
        long_history: long,
        new_member: new,
        long_history_lag: long_lag.summary(),
        new_member_lag: new_lag.summary(),
        errors,
    };
    args.target.write_json(&report)?;
    Ok(report)
}

/// The GraphQL queries `loadgen graphql` can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueryKind {
    /// The storefront widget's member query: balance, tier progress, RFM, stamp cards.
    Member,
    /// The member query without `leaderboardRanks`, to tell the cost of the ranks apart.
    MemberWithoutRanks,
    /// `{ __typename }`: the cost of the HTTP + GraphQL stack alone.
    Typename,
}

impl QueryKind {
    fn asks_for_a_member(self) -> bool {
        matches!(self, QueryKind::Member | QueryKind::MemberWithoutRanks)
    }

    /// The query text and its name in reports.
    fn query(self) -> (String, &'static str) {
        match self {
            QueryKind::Member => (MEMBER_QUERY.to_owned(), "storefront member query"),
            QueryKind::MemberWithoutRanks => (
                MEMBER_QUERY.replace("    leaderboardRanks { period rank points }\n", ""),
                "storefront member query without leaderboardRanks",
            ),
            QueryKind::Typename => (TYPENAME_QUERY.to_owned(), "{ __typename }"),
        }
    }
}

/// What a storefront widget asks for a member (SPEC §7): balance, tier progress, stamp cards,
/// rewards they can afford, recent history, leaderboard ranks.
pub const MEMBER_QUERY: &str = "query StorefrontMember($orgId: ID!, $memberId: ID!) {
  member(orgId: $orgId, memberId: $memberId) {
    memberId externalId displayName
    balance { points lifetimeEarned redeemed expired clawedBack }
    tier { name multiplierBps qualifyingPoints nextTier pointsToNext }
    rfm { recencyDays frequency monetaryMinor r f m segment }
    stampCards { cardId name stamps stampsRequired cardsCompleted rewardsIssued }
    affordableRewards { rewardId name pointsCost }
    history(first: 5) { nodes { eventType occurredAt pointsDelta balanceAfter } }
    leaderboardRanks { period rank points }
  }
}";

pub const TYPENAME_QUERY: &str = "{ __typename }";

#[derive(Debug, Clone, Args)]
pub struct GraphqlArgs {
    #[command(flatten)]
    pub target: Target,
    #[arg(long, value_enum, default_value = "member")]
    pub query: QueryKind,
    /// Concurrent connections, each sending its next query when the previous is answered.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub connections: u64,
    /// Seconds, warm-up included.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=MAX_DURATION_SECS))]
    pub duration: u64,
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub warmup: u64,
    /// Members (each with a few purchases) the member query picks from.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub members: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GraphqlReport {
    pub query: String,
    pub connections: u64,
    pub measured_seconds: f64,
    pub queries_ok: u64,
    pub queries_per_second: f64,
    pub latency: LatencySummary,
    pub errors: std::collections::BTreeMap<String, u64>,
}

impl GraphqlReport {
    pub fn render(&self) -> String {
        format!(
            "== loadgen graphql: {} at {} connections ==\n{} ok in {:.1} s: {:.1} queries/s\nlatency: {}\nerrors: {:?}\n",
            self.query,
            self.connections,
            self.queries_ok,
            self.measured_seconds,
            self.queries_per_second,
            self.latency.line(),
            self.errors
        )
    }
}

/// `loadgen graphql`: closed-loop GraphQL queries at `--connections`.
pub async fn run_graphql(args: GraphqlArgs) -> anyhow::Result<GraphqlReport> {
    if args.warmup >= args.duration {
        bail!("--warmup must be shorter than --duration");
    }
    let api = args.target.api()?;
    let org = args.target.orgs(&api, 1, 2).await?.remove(0);
    let members = setup::enrol_members(&api, &org, 1, args.members, 16).await?;
    if args.query.asks_for_a_member() {
        eprintln!("loadgen: giving {} members some history", members.len());
        futures::future::try_join_all(members.chunks(16).map(|chunk| {
            let (api, org) = (&api, &org);
            async move {
                for member in chunk {
                    for amount in [1_250, 4_990, 780] {
                        purchase(api, org, *member, amount)
                            .await
                            .map_err(|e| anyhow::anyhow!("purchase for {member}: {e}"))?;
                    }
                }
                Ok::<_, anyhow::Error>(())
            }
        }))
        .await?;
        // Wait until the read model knows the last member, so no query hits a missing member.
        let last = *members.last().context("no members")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let data = api
                .graphql(
                    &org.storefront_key,
                    "query($orgId: ID!, $memberId: ID!) { member(orgId: $orgId, memberId: $memberId) { memberId } }",
                    &json!({"orgId": org.id, "memberId": last}),
                )
                .await?;
            if !data["member"].is_null() {
                break;
            }
            if Instant::now() >= deadline {
                bail!("member {last} did not appear in the read model within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let (query, name) = args.query.query();
    let query = Arc::new(query);
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(args.warmup);
    let end = start + Duration::from_secs(args.duration);
    let bar = args.target.progress(args.duration * 1000);
    let members = Arc::new(members);
    let workers = (0..args.connections).map(|i| {
        let (api, org, members, bar) = (api.clone(), org.clone(), members.clone(), bar.clone());
        let query = query.clone();
        tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(i);
            let mut recorder = Recorder::default();
            while Instant::now() < end {
                let member = members[rng.random_range(0..members.len())];
                let variables = match args.query {
                    QueryKind::Member | QueryKind::MemberWithoutRanks => {
                        json!({"orgId": org.id, "memberId": member})
                    }
                    QueryKind::Typename => Value::Null,
                };
                let t = Instant::now();
                let outcome = match api.graphql_raw(&org.storefront_key, &query, &variables).await {
                    Ok(reply) => match graphql_error_kind(&reply) {
                        None if args.query.asks_for_a_member()
                            && reply.body.pointer("/data/member").is_none_or(Value::is_null) =>
                        {
                            Err("member not found".to_owned())
                        }
                        None => Ok(()),
                        Some(kind) => Err(kind),
                    },
                    Err(error) => Err(transport_error_kind(&error)),
                };
                if t >= measure_from {
                    match outcome {
                        Ok(()) => recorder.ok("query", t.elapsed()),
                        Err(error) => recorder.error("query", error),
                    }
                }
                if i == 0 {
                    bar.set_position(u64::try_from(start.elapsed().as_millis()).unwrap_or(0));
                }
            }
            recorder
        })
    });
    let mut total = Recorder::default();
    for worker in futures::future::join_all(workers).await {
        let recorder = worker.context("a GraphQL worker panicked")?;
        total.all.merge(&recorder.all);
        for (kind, count) in recorder.errors {
            *total.errors.entry(kind).or_default() += count;
        }
    }
    bar.finish_and_clear();
    let measured = Instant::now().min(end).saturating_duration_since(measure_from);
    let report = GraphqlReport {
        query: name.to_owned(),
        connections: args.connections,
        measured_seconds: stats::round1(measured.as_secs_f64()),
        queries_ok: total.all.count(),
        queries_per_second: rate(total.all.count(), measured),
        latency: total.all.summary(),
        errors: total.errors,
    };
    args.target.write_json(&report)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_parses_and_bounds_its_arguments() {
        let cli = Cli::try_parse_from(["loadgen", "run", "--rate", "1000", "--mix", "purchase=1"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert_eq!(args.rate, Some(1000));
        assert_eq!(args.duration, 30);
        assert!(Cli::try_parse_from(["loadgen", "run", "--duration", "100000"]).is_err());
        assert!(Cli::try_parse_from(["loadgen", "run", "--rate", "10", "--concurrency", "4"]).is_err());
        assert!(Cli::try_parse_from(["loadgen", "run", "--mix", "dance=1"]).is_err());
        assert!(Cli::try_parse_from(["loadgen", "graphql", "--query", "typename"]).is_ok());
    }

    #[test]
    fn the_member_query_without_ranks_differs_only_by_the_ranks() {
        let (with, _) = QueryKind::Member.query();
        let (without, _) = QueryKind::MemberWithoutRanks.query();
        assert!(with.contains("leaderboardRanks"));
        assert!(!without.contains("leaderboardRanks"));
        assert_eq!(with.lines().count(), without.lines().count() + 1);
    }

    #[test]
    fn last_sequence_reads_the_write_reply() {
        let body = json!({"member_id": "x", "balance": 5,
            "events": [{"type": "PurchaseRecorded", "sequence": 7}, {"type": "StampCollected", "sequence": 8}]});
        assert_eq!(last_sequence(&body), Some(8));
        assert_eq!(last_sequence(&json!({"balance": 5})), None);
    }
}
