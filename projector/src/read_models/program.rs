//! Each org's current program (`programs` with its time zone and earn cap, its tiers, rewards,
//! stamp cards and promotions) and its registered locations (`program_locations`).

use std::collections::BTreeMap;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use domain::program::{ProgramConfig, Promotion};
use domain::ProgramEvent;
use sqlx::PgConnection;

use super::{to_i64, ReadModel, Writes};
use crate::event::ApplyError;

pub const TABLES: &[&str] = &[
    "programs",
    "program_tiers",
    "program_rewards",
    "program_stamp_cards",
    "program_locations",
    "program_promotions",
];

#[derive(Debug, Clone)]
pub struct ProgramRow {
    pub version: i64,
    pub config: ProgramConfig,
    pub configured_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct LocationRow {
    pub org_id: String,
    pub location_id: String,
    pub name: String,
    pub registered_at: DateTime<Utc>,
}

/// The programs a batch configures (the last configuration per org) and the locations it
/// registers.
#[derive(Debug, Default)]
pub struct ProgramWrites {
    pub programs: BTreeMap<String, ProgramRow>,
    pub locations: Vec<LocationRow>,
}

impl ProgramWrites {
    pub fn merge(&mut self, other: ProgramWrites) {
        self.programs.extend(other.programs);
        self.locations.extend(other.locations);
    }
}

/// A configuration replaces the org's program; a location is added (or renamed).
pub(super) fn apply(org_id: &str, event: &ProgramEvent, writes: &mut Writes) -> Result<(), ApplyError> {
    match event {
        ProgramEvent::ProgramConfigured {
            org_id: named,
            version,
            config,
            configured_at,
        } => {
            if named != org_id {
                return Err(ApplyError::Invalid(format!(
                    "ProgramConfigured names org {named} but belongs to program {org_id}"
                )));
            }
            writes.program.programs.insert(
                org_id.to_owned(),
                ProgramRow {
                    version: to_i64(*version, "version")?,
                    config: config.clone(),
                    configured_at: *configured_at,
                },
            );
        }
        ProgramEvent::LocationRegistered {
            org_id: named,
            location_id,
            name,
            registered_at,
        } => {
            if named != org_id {
                return Err(ApplyError::Invalid(format!(
                    "LocationRegistered names org {named} but belongs to program {org_id}"
                )));
            }
            writes.program.locations.push(LocationRow {
                org_id: org_id.to_owned(),
                location_id: location_id.clone(),
                name: name.clone(),
                registered_at: *registered_at,
            });
        }
    }
    writes.touched(&[ReadModel::Program]);
    Ok(())
}

/// Writes the programs and locations of the batch.
pub(super) async fn flush(conn: &mut PgConnection, writes: &ProgramWrites) -> anyhow::Result<()> {
    for (org, program) in &writes.programs {
        write_program(conn, org, program).await?;
    }
    if !writes.locations.is_empty() {
        let l = &writes.locations;
        sqlx::query(
            "INSERT INTO program_locations (org_id, location_id, name, registered_at) \
             SELECT unnest($1::text[]), unnest($2::text[]), unnest($3::text[]), unnest($4::timestamptz[]) \
             ON CONFLICT (org_id, location_id) DO UPDATE SET name = excluded.name, registered_at = excluded.registered_at",
        )
        .bind(l.iter().map(|r| r.org_id.clone()).collect::<Vec<_>>())
        .bind(l.iter().map(|r| r.location_id.clone()).collect::<Vec<_>>())
        .bind(l.iter().map(|r| r.name.clone()).collect::<Vec<_>>())
        .bind(l.iter().map(|r| r.registered_at).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await
        .context("writing program_locations")?;
    }
    Ok(())
}

/// Replaces the program of `org` and its tiers, rewards and stamp cards.
async fn write_program(conn: &mut PgConnection, org: &str, program: &ProgramRow) -> anyhow::Result<()> {
    let config = &program.config;
    sqlx::query(
        "INSERT INTO programs (org_id, version, currency, earn_rate, expiry_days, qualification_window_days, \
         downgrade_grace_days, configured_at, config, time_zone, earn_cap_points, earn_cap_period) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (org_id) DO UPDATE SET version = excluded.version, currency = excluded.currency, \
         earn_rate = excluded.earn_rate, expiry_days = excluded.expiry_days, \
         qualification_window_days = excluded.qualification_window_days, \
         downgrade_grace_days = excluded.downgrade_grace_days, configured_at = excluded.configured_at, \
         config = excluded.config, time_zone = excluded.time_zone, \
         earn_cap_points = excluded.earn_cap_points, earn_cap_period = excluded.earn_cap_period",
    )
    .bind(org)
    .bind(program.version)
    .bind(&config.currency)
    .bind(config.earn_rate)
    .bind(config.expiry_days.map(i64::from))
    .bind(i64::from(config.qualification_window_days))
    .bind(i64::from(config.downgrade_grace_days))
    .bind(program.configured_at)
    .bind(sqlx::types::Json(config))
    .bind(config.time_zone.name())
    .bind(config.earn_cap.map(|cap| cap.points))
    .bind(config.earn_cap.map(|cap| json_name(&cap.period)))
    .execute(&mut *conn)
    .await
    .context("writing programs")?;
    for table in [
        "program_tiers",
        "program_rewards",
        "program_stamp_cards",
        "program_promotions",
    ] {
        sqlx::query(&format!("DELETE FROM {table} WHERE org_id = $1"))
            .bind(org)
            .execute(&mut *conn)
            .await
            .with_context(|| format!("clearing {table}"))?;
    }
    let tiers = &config.tiers;
    sqlx::query(
        "INSERT INTO program_tiers (org_id, position, name, threshold_points, multiplier_bps) \
         SELECT $1, t.* FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::bigint[]) AS t",
    )
    .bind(org)
    .bind((0..tiers.len()).map(|i| i as i64).collect::<Vec<_>>())
    .bind(tiers.iter().map(|t| t.name.clone()).collect::<Vec<_>>())
    .bind(tiers.iter().map(|t| t.threshold_points).collect::<Vec<_>>())
    .bind(
        tiers
            .iter()
            .map(|t| i64::from(t.multiplier_bps))
            .collect::<Vec<_>>(),
    )
    .execute(&mut *conn)
    .await
    .context("writing program_tiers")?;
    let rewards = &config.rewards;
    sqlx::query(
        "INSERT INTO program_rewards (org_id, reward_id, name, points_cost, active) \
         SELECT $1, r.* FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bool[]) AS r",
    )
    .bind(org)
    .bind(rewards.iter().map(|r| r.reward_id.clone()).collect::<Vec<_>>())
    .bind(rewards.iter().map(|r| r.name.clone()).collect::<Vec<_>>())
    .bind(rewards.iter().map(|r| r.points_cost).collect::<Vec<_>>())
    .bind(rewards.iter().map(|r| r.active).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await
    .context("writing program_rewards")?;
    let cards = &config.stamp_cards;
    sqlx::query(
        "INSERT INTO program_stamp_cards (org_id, card_id, name, stamps_required, reward_id, min_amount_minor) \
         SELECT $1, c.* FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[]) AS c",
    )
    .bind(org)
    .bind(cards.iter().map(|c| c.card_id.clone()).collect::<Vec<_>>())
    .bind(cards.iter().map(|c| c.name.clone()).collect::<Vec<_>>())
    .bind(cards.iter().map(|c| i64::from(c.stamps_required)).collect::<Vec<_>>())
    .bind(cards.iter().map(|c| c.reward_id.clone()).collect::<Vec<_>>())
    .bind(cards.iter().map(|c| c.min_amount_minor).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await
    .context("writing program_stamp_cards")?;
    write_promotions(conn, org, &config.promotions).await
}

/// The JSON name of a unit enum (`"day"`, `"promotion"`), as the program JSON writes it.
fn json_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        other => format!("{other:?}"),
    }
}

fn json_text<T: serde::Serialize>(value: &T) -> anyhow::Result<String> {
    serde_json::to_string(value).context("serializing a promotion")
}

/// Writes the program's promotions, in its order.
async fn write_promotions(
    conn: &mut PgConnection,
    org: &str,
    promotions: &[Promotion],
) -> anyhow::Result<()> {
    if promotions.is_empty() {
        return Ok(());
    }
    let p = promotions;
    sqlx::query(
        "INSERT INTO program_promotions (org_id, promotion_id, position, name, starts_at, ends_at, schedule, \
         conditions, effect, stackable, priority, limit_count, limit_period, budget_points) \
         SELECT $1, p.id, p.position, p.name, p.starts_at, p.ends_at, p.schedule::jsonb, p.conditions::jsonb, \
         p.effect::jsonb, p.stackable, p.priority, p.limit_count, p.limit_period, p.budget_points \
         FROM unnest($2::text[], $3::int[], $4::text[], $5::timestamptz[], $6::timestamptz[], $7::text[], \
         $8::text[], $9::text[], $10::bool[], $11::int[], $12::int[], $13::text[], $14::bigint[]) \
         AS p(id, position, name, starts_at, ends_at, schedule, conditions, effect, stackable, priority, \
         limit_count, limit_period, budget_points)",
    )
    .bind(org)
    .bind(p.iter().map(|p| p.promotion_id.clone()).collect::<Vec<_>>())
    .bind((0..p.len()).map(|i| i32::try_from(i).unwrap_or(i32::MAX)).collect::<Vec<_>>())
    .bind(p.iter().map(|p| p.name.clone()).collect::<Vec<_>>())
    .bind(p.iter().map(|p| p.starts_at).collect::<Vec<_>>())
    .bind(p.iter().map(|p| p.ends_at).collect::<Vec<_>>())
    .bind(
        p.iter()
            .map(|p| p.schedule.as_ref().map(json_text).transpose())
            .collect::<anyhow::Result<Vec<_>>>()?,
    )
    .bind(p.iter().map(|p| json_text(&p.conditions)).collect::<anyhow::Result<Vec<_>>>()?)
    .bind(p.iter().map(|p| json_text(&p.effect)).collect::<anyhow::Result<Vec<_>>>()?)
    .bind(p.iter().map(|p| p.stackable).collect::<Vec<_>>())
    .bind(p.iter().map(|p| p.priority).collect::<Vec<_>>())
    .bind(
        p.iter()
            .map(|p| p.limit.map(|l| i32::try_from(l.count).unwrap_or(i32::MAX)))
            .collect::<Vec<_>>(),
    )
    .bind(p.iter().map(|p| p.limit.map(|l| json_name(&l.period))).collect::<Vec<_>>())
    .bind(p.iter().map(|p| p.budget_points).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await
    .context("writing program_promotions")?;
    Ok(())
}
