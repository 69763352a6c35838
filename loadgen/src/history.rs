//! `loadgen history`: command latency and projection lag of a purchase on a member with a long
//! history, compared with a member enrolled just before.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use loyalty_client::MemberRef;
use serde::Serialize;
use uuid::Uuid;

use crate::api::Api;
use crate::lag::{self, LagSource};
use crate::setup::{self, Org};
use crate::stats::{self, Latencies, LatencySummary};
use crate::target::Target;

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
    pub errors: BTreeMap<String, u64>,
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

/// One purchase on `member`: its command latency, then how long until the read model showed
/// the acknowledged balance.
async fn timed_purchase(
    api: &Api,
    org: &Org,
    source: &LagSource,
    org_ids: &[String],
    member: Uuid,
) -> Result<(Duration, Duration), String> {
    // Measured: sent once, never retried after a refusal.
    let purchase = setup::purchase_of(org, 1_000);
    let key = Uuid::new_v4().to_string();
    let t = Instant::now();
    let balance = api
        .commands(&org.pos_key)
        .record_purchase(&org.id, MemberRef::Id(member), &key, &purchase)
        .await
        .map_err(|e| e.kind())?
        .balance;
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
    let view = api
        .commands(&org.pos_key)
        .member(&org.id, MemberRef::Id(member))
        .await
        .with_context(|| format!("GET member {member}"))?;
    Ok(view.balance)
}

/// One purchase; returns the last event sequence of the member after it.
async fn purchase_sequence(api: &Api, org: &Org, member: Uuid, amount_minor: i64) -> Result<i64, String> {
    setup::purchase(api, org, member, amount_minor)
        .await?
        .last_sequence()
        .and_then(|sequence| i64::try_from(sequence).ok())
        .ok_or_else(|| "contract: reply without event sequences".to_owned())
}

/// `loadgen history`: latency of a purchase on a member with `--events` events vs on a member
/// enrolled just before.
pub async fn run_history(args: HistoryArgs) -> anyhow::Result<HistoryReport> {
    let api = args.target.api()?;
    let org = args
        .target
        .orgs(
            &api,
            1,
            crate::setup::OrgShape {
                locations: 1,
                promotions: 0,
            },
        )
        .await?
        .remove(0);
    let hot = setup::enrol_members(&api, &org, 1, 1, 1).await?[0];
    eprintln!(
        "loadgen: preloading member {hot} of {} with {} events",
        org.id, args.events
    );
    let bar = args.target.progress(args.events);
    let preload_start = Instant::now();
    let reached = AtomicI64::new(1);
    let mut errors = BTreeMap::<String, u64>::new();
    let preload = futures::future::join_all((0..args.preload_concurrency).map(|_| async {
        let mut failures = Vec::new();
        while reached.load(Ordering::Relaxed) < args.events as i64 {
            match purchase_sequence(&api, &org, hot, 100).await {
                Ok(sequence) => {
                    reached.fetch_max(sequence, Ordering::Relaxed);
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
    let events = reached.load(Ordering::Relaxed);
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
