//! `loadgen run`: simulated POS terminals sending the mix, closed loop at a concurrency or
//! open loop at a rate; then throughput, latency, errors, projection lag, resources and the
//! consistency check.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use rand::Rng as _;
use uuid::Uuid;

use crate::api::Api;
use crate::check;
use crate::drive;
use crate::lag::{self, LagConfig, LagSource, LagTracker};
use crate::mix::{Mix, OpKind, DEFAULT_MIX};
use crate::report::RunReport;
use crate::resources;
use crate::setup;
use crate::state::OrgCtx;
use crate::stats::{self, rate, Recorder};
use crate::target::Target;
use crate::workload::{Window, Workload};
use crate::MAX_DURATION_SECS;

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
    /// Active promotions in each org's program (SPEC §9); with any, purchases carry basket
    /// lines. 0 keeps the plain `rate × tier` earn of purchases without lines.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=100))]
    pub promotions: u64,
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
        .orgs(
            &api,
            args.orgs as usize,
            setup::OrgShape {
                locations: args.locations as usize,
                promotions: args.promotions as usize,
            },
        )
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
    let workload = Arc::new(
        Workload::new(
            api.clone(),
            contexts,
            args.mix.clone(),
            window,
            lag.as_ref().map(LagTracker::sender),
        )
        .with_baskets(args.promotions > 0),
    );
    let seed = args.seed.unwrap_or_else(|| rand::rng().random());
    let mode = match args.rate {
        Some(rate) => format!("open loop at {rate}/s, mix {}", mix_text(&args)),
        None => format!(
            "closed loop, {} terminals, mix {}",
            args.concurrency,
            mix_text(&args)
        ),
    };
    let mode = if args.promotions > 0 {
        format!(
            "{mode}, {} active promotions, purchases with basket lines",
            args.promotions
        )
    } else {
        mode
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
                let ok = workload.ok.load(Ordering::Relaxed);
                let errors = workload.errors.load(Ordering::Relaxed);
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
        Some(rate) => drive::open_loop(workload.clone(), rate, args.max_in_flight as usize, seed).await,
        None => drive::closed_loop(workload.clone(), args.concurrency as usize, seed).await,
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
        shed_total: recorder.shed_count(),
        shed: recorder.shed.clone(),
        shed_latency: recorder.shed_latency.summary(),
        lag: lag_report,
        resources,
        consistency,
    };
    args.target.write_json(&report)?;
    Ok(report)
}

fn mix_text(args: &RunArgs) -> String {
    OpKind::ALL
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
