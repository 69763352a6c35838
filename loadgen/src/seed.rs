//! `loadgen seed`: fills the event store with a large, valid log fast, for the benchmarks that
//! need one (the audit replay of a million events).
//!
//! Through the command API a million purchases take as long as the platform's write rate
//! allows (tens of minutes here). The replay benchmark measures the auditor, not the write path,
//! so this writes the log directly, and still only what the platform itself would have written:
//! the orgs, programs and locations are set up through the command API, and every member event
//! is decided by the domain (`Member::execute`, the same code the command service runs) on the
//! program those calls produced, then appended with the columns and metadata postgres-es
//! writes. The store's own triggers still run on every row (append-only log, external id and
//! transaction id claims), and the relay publishes the rows to JetStream like any other, so the
//! live projector builds its read models from them as usual.
//!
//! Each member's events are appended in order by one connection, `--batch` rows per
//! transaction, so no aggregate ever has a gap at a commit.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{anyhow, Context as _};
use chrono::{DateTime, Duration, Utc};
use clap::Args;
use cqrs_es::{Aggregate as _, DomainEvent as _};
use domain::ids::{member_aggregate_id, program_aggregate_id};
use domain::member::{NewMember, Purchase, Receipt, Redemption, Refund};
use domain::{codec, Member, MemberCommand, Program, ProgramSnapshot};
use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::setup::{Org, CURRENCY};
use crate::Target;

#[derive(Debug, Clone, Args)]
pub struct SeedArgs {
    #[command(flatten)]
    pub target: Target,
    /// Member events to append (at least; a command's events are never split).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=20_000_000))]
    pub events: u64,
    /// Orgs to create.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub orgs: u64,
    /// Locations per org.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub locations: u64,
    /// Members per org; the events are spread evenly over them.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub members: u64,
    /// Rows per insert transaction.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..=50_000))]
    pub batch: u64,
    /// Connections appending in parallel (each owns a disjoint set of members).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=16))]
    pub connections: u64,
    /// Seed of the random workload.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SeedReport {
    pub orgs: Vec<String>,
    pub members: u64,
    pub commands: u64,
    pub events: u64,
    pub events_by_type: BTreeMap<String, u64>,
    pub seconds: f64,
    pub events_per_second: f64,
}

impl SeedReport {
    pub fn render(&self) -> String {
        let mut out = format!(
            "seeded {} events ({} commands, {} members in {} orgs) in {:.1} s => {:.0} events/s\n",
            self.events,
            self.commands,
            self.members,
            self.orgs.len(),
            self.seconds,
            self.events_per_second
        );
        for (kind, count) in &self.events_by_type {
            out.push_str(&format!("  {kind}: {count}\n"));
        }
        out
    }
}

/// One `events` row as postgres-es writes it.
struct Row {
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: String,
    metadata: String,
}

#[derive(Default)]
struct Totals {
    commands: u64,
    events: u64,
    by_type: BTreeMap<String, u64>,
}

pub async fn run_seed(args: SeedArgs) -> anyhow::Result<SeedReport> {
    let api = args.target.api()?;
    let orgs = args
        .target
        .orgs(
            &api,
            args.orgs as usize,
            crate::setup::OrgShape {
                locations: args.locations as usize,
                promotions: 0,
            },
        )
        .await?;
    crate::api::require_loopback("--database-url", &args.target.database_url)?;
    let mut db_args = common::config::DbArgs::new(&args.target.database_url);
    db_args.database_max_connections = u32::try_from(args.connections).unwrap_or(16);
    let pool = common::config::connect_db(&db_args).await?;
    let mut programs = Vec::with_capacity(orgs.len());
    for org in &orgs {
        programs.push(SeededOrg {
            org: org.clone(),
            program: program_snapshot(&pool, &org.id).await?,
            key_id: pos_key_id(&pool, &org.id).await?,
        });
    }

    let total_members = args.orgs * args.members;
    let per_member = args.events.div_ceil(total_members).max(1);
    let bar = args.target.progress(args.events);
    let started = Instant::now();
    // Member n of the whole run belongs to org n % orgs and to worker n % connections.
    let workers = (0..args.connections).map(|worker| {
        let pool = pool.clone();
        let programs = programs.clone();
        let bar = bar.clone();
        let args = args.clone();
        tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(args.seed.wrapping_add(worker));
            let mut totals = Totals::default();
            let mut rows = Vec::with_capacity(args.batch as usize + 64);
            let mut n = worker;
            while n < total_members {
                let org = &programs[(n % args.orgs) as usize];
                member_history(&mut rng, org, n, per_member, &mut rows, &mut totals).await?;
                if rows.len() as u64 >= args.batch {
                    bar.inc(rows.len() as u64);
                    append(&pool, std::mem::take(&mut rows)).await?;
                }
                n += args.connections;
            }
            bar.inc(rows.len() as u64);
            append(&pool, rows).await?;
            Ok::<_, anyhow::Error>(totals)
        })
    });
    let mut totals = Totals::default();
    for worker in futures::future::join_all(workers).await {
        let part = worker.context("a seeding worker panicked")??;
        totals.commands += part.commands;
        totals.events += part.events;
        for (kind, count) in part.by_type {
            *totals.by_type.entry(kind).or_default() += count;
        }
    }
    bar.finish_and_clear();
    pool.close().await;
    let seconds = started.elapsed().as_secs_f64();
    let report = SeedReport {
        orgs: orgs.iter().map(|o| o.id.clone()).collect(),
        members: total_members,
        commands: totals.commands,
        events: totals.events,
        events_by_type: totals.by_type,
        seconds: crate::stats::round1(seconds),
        events_per_second: crate::stats::round1(totals.events as f64 / seconds.max(1e-9)),
    };
    args.target.write_json(&report)?;
    Ok(report)
}

/// An org of the seed with what its members' commands need: the program in force and the
/// `pos` key recorded in the events' metadata.
#[derive(Clone)]
struct SeededOrg {
    org: Org,
    program: ProgramSnapshot,
    key_id: Uuid,
}

/// The org's program as the command service decides on it: its events folded by the domain.
async fn program_snapshot(pool: &PgPool, org_id: &str) -> anyhow::Result<ProgramSnapshot> {
    let rows: Vec<(String, String, Value)> = sqlx::query_as(
        "SELECT event_type, event_version, payload::jsonb FROM events \
         WHERE aggregate_type = 'program' AND aggregate_id = $1 ORDER BY sequence",
    )
    .bind(program_aggregate_id(org_id))
    .fetch_all(pool)
    .await
    .with_context(|| format!("loading the program of {org_id}"))?;
    let mut program = Program::default();
    for (event_type, event_version, payload) in rows {
        let event = codec::decode_program(&event_type, &event_version, payload)
            .with_context(|| format!("decoding a program event of {org_id}"))?;
        program.apply(event);
    }
    program
        .snapshot()
        .with_context(|| format!("org {org_id} has no program"))
}

async fn pos_key_id(pool: &PgPool, org_id: &str) -> anyhow::Result<Uuid> {
    let (key_id,): (Uuid,) =
        sqlx::query_as("SELECT key_id FROM api_keys WHERE org_id = $1 AND role = 'pos' LIMIT 1")
            .bind(org_id)
            .fetch_one(pool)
            .await
            .with_context(|| format!("finding the pos key of {org_id}"))?;
    Ok(key_id)
}

/// Decides `events` events for member number `n` (enrolment first, then mostly purchases, some
/// refunds and redemptions), one command at a time on the state the previous ones left.
async fn member_history(
    rng: &mut SmallRng,
    seeded: &SeededOrg,
    n: u64,
    events: u64,
    rows: &mut Vec<Row>,
    totals: &mut Totals,
) -> anyhow::Result<()> {
    let SeededOrg { org, program, key_id } = seeded;
    let member_id = Uuid::new_v4();
    let aggregate_id = member_aggregate_id(&org.id, member_id);
    let mut member = Member::default();
    // The history spreads over the last 300 days, one command every few minutes to hours.
    let now = Utc::now();
    let span_seconds = 300 * 86_400 / i64::try_from(events.max(1)).unwrap_or(1);
    let mut at = now - Duration::days(300);
    let mut written = 0;
    let mut purchases: Vec<(String, i64)> = Vec::new();
    let mut command = MemberCommand::Enroll(NewMember {
        org_id: org.id.clone(),
        member_id,
        external_id: Some(format!("card-{n:012}")),
        display_name: Some(format!("Member {n}")),
        program: program.clone(),
        at,
    });
    while written < events {
        let name = command.name();
        let decided = member
            .execute(command.clone())
            .map_err(|error| anyhow!("the domain refused a generated command: {error}"))?;
        totals.commands += 1;
        for event in decided {
            written += 1;
            totals.events += 1;
            *totals.by_type.entry(event.event_type()).or_default() += 1;
            rows.push(Row {
                aggregate_id: aggregate_id.clone(),
                sequence: i64::try_from(written).unwrap_or(i64::MAX),
                event_type: event.event_type(),
                event_version: event.event_version(),
                payload: serde_json::to_string(&event).context("serializing an event")?,
                metadata: json!({
                    "org_id": org.id,
                    "command": name,
                    "idempotency_key": Uuid::new_v4().to_string(),
                    "key_id": key_id.to_string(),
                    "request_id": "loadgen-seed",
                })
                .to_string(),
            });
        }
        at += Duration::seconds(rng.random_range(1..=span_seconds.max(2)));
        command = next_command(rng, org, program, &member, &mut purchases, at);
    }
    Ok(())
}

/// The next command of a member: 88% purchases, 6% partial refunds of an earlier purchase, 6%
/// redemptions of a reward the member can afford (a purchase when there is none).
fn next_command(
    rng: &mut SmallRng,
    org: &Org,
    program: &ProgramSnapshot,
    member: &Member,
    purchases: &mut Vec<(String, i64)>,
    at: DateTime<Utc>,
) -> MemberCommand {
    let roll = rng.random_range(0..100);
    if roll < 6 {
        let refundable: Vec<usize> = (0..purchases.len()).filter(|&i| purchases[i].1 > 0).collect();
        if !refundable.is_empty() {
            let i = refundable[rng.random_range(0..refundable.len())];
            let amount = rng.random_range(1..=purchases[i].1);
            purchases[i].1 -= amount;
            return MemberCommand::RefundPurchase(Refund {
                refund_id: format!("r-{}", Uuid::new_v4().simple()),
                transaction_id: purchases[i].0.clone(),
                amount_minor: amount,
                program: program.clone(),
                at,
            });
        }
    } else if roll < 12 {
        let affordable: Vec<_> = program
            .config
            .rewards
            .iter()
            .filter(|r| r.points_cost <= member.points.balance)
            .collect();
        if !affordable.is_empty() {
            let reward = affordable[rng.random_range(0..affordable.len())];
            return MemberCommand::RedeemReward(Redemption {
                redemption_id: format!("x-{}", Uuid::new_v4().simple()),
                reward_id: reward.reward_id.clone(),
                reward: Some(reward.clone()),
                at,
            });
        }
    }
    let transaction_id = format!("t-{}", Uuid::new_v4().simple());
    let amount_minor = crate::workload::purchase_amount(rng);
    purchases.push((transaction_id.clone(), amount_minor));
    MemberCommand::RecordPurchase(Purchase {
        receipt: Receipt {
            transaction_id,
            location_id: org.locations[rng.random_range(0..org.locations.len())].clone(),
            amount_minor,
            currency: CURRENCY.to_owned(),
            occurred_at: at,
            items: None,
        },
        program: program.clone(),
        recorded_at: at,
        budgets_left: Default::default(),
    })
}

/// Appends `rows` in one transaction, with the columns postgres-es names (the others keep
/// their defaults: global position, transaction id, event id, commit time).
async fn append(pool: &PgPool, rows: Vec<Row>) -> anyhow::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(rows.len());
    let mut sequences = Vec::with_capacity(rows.len());
    let mut types = Vec::with_capacity(rows.len());
    let mut versions = Vec::with_capacity(rows.len());
    let mut payloads = Vec::with_capacity(rows.len());
    let mut metadata = Vec::with_capacity(rows.len());
    for row in rows {
        ids.push(row.aggregate_id);
        sequences.push(row.sequence);
        types.push(row.event_type);
        versions.push(row.event_version);
        payloads.push(row.payload);
        metadata.push(row.metadata);
    }
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             payload, metadata) \
         SELECT 'member', id, seq, t, v, p::json, m::json \
         FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[]) \
              AS r(id, seq, t, v, p, m)",
    )
    .bind(&ids)
    .bind(&sequences)
    .bind(&types)
    .bind(&versions)
    .bind(&payloads)
    .bind(&metadata)
    .execute(pool)
    .await
    .context("appending seeded events")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::MemberEvent;

    fn org() -> Org {
        Org {
            id: "seed-test".to_owned(),
            pos_key: String::new(),
            admin_key: String::new(),
            storefront_key: String::new(),
            analyst_key: String::new(),
            locations: vec!["store-1".to_owned(), "store-2".to_owned()],
            rewards: Vec::new(),
        }
    }

    fn program() -> ProgramSnapshot {
        let body = serde_json::to_value(crate::setup::program()).expect("program");
        let config: domain::ProgramConfig = serde_json::from_value(body).expect("program body");
        ProgramSnapshot {
            version: 1,
            config: config.into(),
            locations: std::sync::Arc::new(["store-1".to_owned(), "store-2".to_owned()].into()),
        }
    }

    #[tokio::test]
    async fn a_seeded_history_is_what_the_domain_decides_in_order() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut rows = Vec::new();
        let mut totals = Totals::default();
        let seeded = SeededOrg {
            org: org(),
            program: program(),
            key_id: Uuid::nil(),
        };
        member_history(&mut rng, &seeded, 1, 500, &mut rows, &mut totals)
            .await
            .expect("every generated command is accepted");

        assert!(rows.len() >= 500);
        assert_eq!(rows[0].event_type, "MemberEnrolled");
        let sequences: Vec<i64> = rows.iter().map(|r| r.sequence).collect();
        assert_eq!(sequences, (1..=rows.len() as i64).collect::<Vec<_>>());
        // The rows decode back into the events, and replaying them gives a consistent account.
        let mut member = Member::default();
        for row in &rows {
            let event: MemberEvent = serde_json::from_str(&row.payload).expect("decodes");
            assert_eq!(event.event_type(), row.event_type);
            member.apply(event);
        }
        assert_eq!(
            member.points.balance,
            member.points.lifetime_earned + member.points.adjusted
                - member.points.redeemed
                - member.points.expired
                - member.points.clawed_back
        );
        for kind in ["PurchaseRecorded", "PurchaseRefunded", "RewardRedeemed"] {
            assert!(
                totals.by_type.get(kind).copied().unwrap_or(0) > 0,
                "no {kind} in {:?}",
                totals.by_type
            );
        }
    }
}
