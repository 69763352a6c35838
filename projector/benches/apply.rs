//! Throughput of the projector's apply path, the audit replay and the RFM recomputation, on a
//! real Postgres (`cargo bench -p projector --bench apply`).
//!
//! Creates a scratch database (`BENCH_ADMIN_URL`, default the local server's `postgres`
//! database), writes a generated history through the domain aggregates, then measures:
//! - the live path without NATS: events read from the store in batches of `BENCH_BATCH`
//!   (default 500) and applied by `Projector::process`, one transaction per batch;
//! - `audit::audit` (replay into a scratch schema and compare);
//! - `rfm::recompute` of each org.
//!
//! `BENCH_MEMBERS` (per org, default 1000) sizes the history. The database is dropped at the end
//! unless `BENCH_KEEP` is set (to look at it with `psql`).

use std::time::Instant;

use anyhow::Context as _;
use chrono::{DateTime, Duration, Utc};
use domain::member::{Expiry, NewMember, Purchase, Receipt, Redemption, Refund};
use domain::program::{Configuration, NewLocation, ProgramConfig, RewardDef};
use domain::{Member, MemberCommand, Program, ProgramCommand};
use projector::event::Incoming;
use sqlx::{Connection as _, PgConnection, PgPool};
use uuid::Uuid;

const ORGS: [&str; 2] = ["bench-a", "bench-b"];

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

struct Rows {
    aggregate_type: Vec<String>,
    aggregate_id: Vec<String>,
    sequence: Vec<i64>,
    event_type: Vec<String>,
    payload: Vec<serde_json::Value>,
}

impl Rows {
    fn new() -> Self {
        Rows {
            aggregate_type: Vec::new(),
            aggregate_id: Vec::new(),
            sequence: Vec::new(),
            event_type: Vec::new(),
            payload: Vec::new(),
        }
    }

    fn push<E: cqrs_es::DomainEvent>(&mut self, kind: &str, id: &str, sequence: i64, event: &E) {
        self.aggregate_type.push(kind.to_owned());
        self.aggregate_id.push(id.to_owned());
        self.sequence.push(sequence);
        self.event_type.push(event.event_type());
        self.payload
            .push(serde_json::to_value(event).expect("serializable event"));
    }

    async fn insert(&mut self, pool: &PgPool) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             SELECT t, i, s, e, '1', p::json, '{}' FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::jsonb[]) \
             AS x(t, i, s, e, p)",
        )
        .bind(&self.aggregate_type)
        .bind(&self.aggregate_id)
        .bind(&self.sequence)
        .bind(&self.event_type)
        .bind(&self.payload)
        .execute(pool)
        .await
        .context("inserting events")?;
        *self = Rows::new();
        Ok(())
    }
}

async fn generate(pool: &PgPool, members_per_org: usize) -> anyhow::Result<usize> {
    let start: DateTime<Utc> = "2024-01-01T00:00:00Z".parse()?;
    let mut rows = Rows::new();
    let mut total = 0;
    for org in ORGS {
        let mut program = Program::default();
        let mut config = ProgramConfig::with_defaults("EUR");
        config.rewards = vec![RewardDef {
            reward_id: "gift".into(),
            name: "Gift".into(),
            points_cost: 150,
            active: true,
        }];
        let mut sequence = 0;
        for command in [
            ProgramCommand::Configure(Configuration {
                org_id: org.into(),
                config,
                at: start,
            }),
            ProgramCommand::RegisterLocation(NewLocation {
                org_id: org.into(),
                location_id: "main".into(),
                name: "Main".into(),
                at: start,
            }),
        ] {
            for event in program.execute(command)? {
                sequence += 1;
                rows.push("program", org, sequence, &event);
            }
        }
        let snapshot = program.snapshot().context("configured")?;
        for m in 0..members_per_org {
            let member_id = Uuid::new_v4();
            let id = format!("{org}/{member_id}");
            let mut member = Member::default();
            let mut commands = vec![MemberCommand::Enroll(NewMember {
                org_id: org.into(),
                member_id,
                external_id: None,
                display_name: None,
                program: snapshot.clone(),
                at: start,
            })];
            for p in 0..12_i64 {
                let at = start + Duration::days(p * 29 + (m as i64 % 29));
                commands.push(MemberCommand::RecordPurchase(Purchase {
                    receipt: Receipt {
                        transaction_id: format!("{m}-{p}"),
                        location_id: "main".into(),
                        amount_minor: 1_000 + 731 * ((m as i64 + p) % 40),
                        currency: "EUR".into(),
                        occurred_at: at,
                        items: None,
                    },
                    program: snapshot.clone(),
                    recorded_at: at,
                    budgets_left: Default::default(),
                }));
                if p % 4 == 3 {
                    commands.push(MemberCommand::RefundPurchase(Refund {
                        refund_id: format!("r{m}-{p}"),
                        transaction_id: format!("{m}-{p}"),
                        amount_minor: 500,
                        program: snapshot.clone(),
                        at: at + Duration::hours(1),
                    }));
                    commands.push(MemberCommand::RedeemReward(Redemption {
                        redemption_id: format!("x{m}-{p}"),
                        reward_id: "gift".into(),
                        reward: snapshot.config.reward("gift").cloned(),
                        at: at + Duration::hours(2),
                    }));
                }
            }
            commands.push(MemberCommand::ExpirePoints(Expiry {
                as_of: start + Duration::days(400),
            }));
            let mut sequence = 0;
            for command in commands {
                // Refused commands (a redemption without enough points) append nothing.
                if let Ok(events) = member.execute(command) {
                    for event in events {
                        sequence += 1;
                        rows.push("member", &id, sequence, &event);
                    }
                }
            }
            total += usize::try_from(sequence)?;
            if rows.sequence.len() >= 5_000 {
                rows.insert(pool).await?;
            }
        }
        total += usize::try_from(sequence)?;
    }
    rows.insert(pool).await?;
    Ok(total)
}

fn rate(events: usize, seconds: std::time::Duration) -> u128 {
    (events as u128 * 1_000) / seconds.as_millis().max(1)
}

async fn bench(pool: &PgPool, members: usize, batch: i64) -> anyhow::Result<()> {
    let started = Instant::now();
    let events = generate(pool, members).await?;
    println!(
        "generated {events} events ({} members) in {:?}",
        members * ORGS.len(),
        started.elapsed()
    );

    let projector = projector::Projector::new(pool.clone(), "rm")?;
    let started = Instant::now();
    let mut after = 0;
    let mut applied = 0;
    loop {
        let page = projector::event::read_log(pool, after, batch).await?;
        let Some(last) = page.last() else { break };
        after = last.global_position;
        let incoming: Vec<Incoming> = page
            .into_iter()
            .map(|event| Incoming::Event {
                event,
                from_store: true,
            })
            .collect();
        applied += projector.process(incoming).await?.applied;
    }
    let elapsed = started.elapsed();
    println!(
        "live apply path (batches of {batch}, no NATS): {applied} events in {elapsed:?} = {} events/s",
        rate(applied, elapsed)
    );

    let started = Instant::now();
    let report = projector::audit::audit(pool, "rm").await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(report.is_clean(), "{report}");
    println!(
        "audit (replay {} events + compare {} tables): {elapsed:?} = {} events/s",
        report.events_replayed,
        report.tables.len(),
        rate(report.events_replayed, elapsed)
    );

    for org in ORGS {
        let started = Instant::now();
        let summary = projector::rfm::recompute(pool, "rm", org, Utc::now()).await?;
        println!(
            "rfm recompute of {org}: {} members in {:?}",
            summary.members,
            started.elapsed()
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init("projector-bench");
    let admin_url = env_or(
        "BENCH_ADMIN_URL",
        "postgres://postgres:postgres@127.0.0.1:5432/postgres",
    );
    let members: usize = env_or("BENCH_MEMBERS", "1000").parse()?;
    let batch: i64 = env_or("BENCH_BATCH", "500").parse()?;
    let name = format!("projector_bench_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url).await?;
    sqlx::query(&format!(r#"CREATE DATABASE "{name}""#))
        .execute(&mut admin)
        .await?;
    let url = url_with_database(&admin_url, &name);
    let result = async {
        let pool = PgPool::connect(&url).await?;
        schema::migrate(&pool).await?;
        let result = bench(&pool, members, batch).await;
        pool.close().await;
        result
    }
    .await;
    if std::env::var_os("BENCH_KEEP").is_some() {
        println!("kept database {name}");
    } else {
        sqlx::query(&format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#))
            .execute(&mut admin)
            .await?;
    }
    result
}

/// `admin_url` (no query string) with its database replaced.
fn url_with_database(admin_url: &str, database: &str) -> String {
    match admin_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{database}"),
        None => format!("{admin_url}/{database}"),
    }
}
