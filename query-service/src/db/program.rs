//! Programs (`rm.programs` with their tiers, rewards, stamp cards and locations, and the whole
//! configuration: promotions, time zone, earn cap).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::program::ProgramConfig;

use super::Db;
use crate::error::QueryResult;

#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub struct ProgramRow {
    pub org_id: String,
    pub version: i64,
    pub currency: String,
    pub earn_rate: i64,
    pub expiry_days: Option<i32>,
    pub qualification_window_days: i32,
    pub downgrade_grace_days: i32,
    pub configured_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub struct ProgramTierRow {
    pub name: String,
    pub threshold_points: i64,
    pub multiplier_bps: i32,
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub struct RewardRow {
    pub reward_id: String,
    pub name: String,
    pub points_cost: i64,
    pub active: bool,
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub struct StampCardDefRow {
    pub card_id: String,
    pub name: String,
    pub stamps_required: i32,
    pub reward_id: String,
    pub min_amount_minor: i64,
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub struct LocationRow {
    pub location_id: String,
    pub name: String,
}

#[derive(sqlx::FromRow, serde::Deserialize)]
pub(super) struct ProgramWithParts {
    #[sqlx(flatten)]
    #[serde(flatten)]
    program: ProgramRow,
    tiers: sqlx::types::Json<Vec<ProgramTierRow>>,
    rewards: sqlx::types::Json<Vec<RewardRow>>,
    stamp_cards: sqlx::types::Json<Vec<StampCardDefRow>>,
    locations: sqlx::types::Json<Vec<LocationRow>>,
    config: sqlx::types::Json<ProgramConfig>,
}

/// An org's program with its ladder, catalogue and cards.
#[derive(Debug, Clone)]
pub struct FullProgram {
    pub program: ProgramRow,
    pub tiers: Vec<ProgramTierRow>,
    pub rewards: Vec<RewardRow>,
    pub stamp_cards: Vec<StampCardDefRow>,
    /// The org's registered locations, by id.
    pub locations: Vec<LocationRow>,
    /// The whole configuration (promotions, time zone, earn cap among others).
    pub config: ProgramConfig,
}

/// The programs of the orgs in `$1`, each with its parts as JSON: a storefront query asks for
/// the program on every request, and each round trip costs both processes more than the few
/// rows it carries.
pub(super) const PROGRAMS: &str = "SELECT p.org_id, p.version, p.currency, p.earn_rate, p.expiry_days, \
        p.qualification_window_days, p.downgrade_grace_days, p.configured_at, \
        (SELECT coalesce(json_agg(json_build_object('name', t.name, \
                  'threshold_points', t.threshold_points, 'multiplier_bps', t.multiplier_bps) \
                  ORDER BY t.position), '[]') \
         FROM rm.program_tiers t WHERE t.org_id = p.org_id) AS tiers, \
        (SELECT coalesce(json_agg(json_build_object('reward_id', r.reward_id, 'name', r.name, \
                  'points_cost', r.points_cost, 'active', r.active) \
                  ORDER BY r.points_cost, r.reward_id), '[]') \
         FROM rm.program_rewards r WHERE r.org_id = p.org_id) AS rewards, \
        (SELECT coalesce(json_agg(json_build_object('card_id', c.card_id, 'name', c.name, \
                  'stamps_required', c.stamps_required, 'reward_id', c.reward_id, \
                  'min_amount_minor', c.min_amount_minor) ORDER BY c.card_id), '[]') \
         FROM rm.program_stamp_cards c WHERE c.org_id = p.org_id) AS stamp_cards, \
        (SELECT coalesce(json_agg(json_build_object('location_id', l.location_id, \
                  'name', l.name) ORDER BY l.location_id), '[]') \
         FROM rm.program_locations l WHERE l.org_id = p.org_id) AS locations, \
        p.config \
 FROM rm.programs p WHERE p.org_id = ANY($1::text[])";

/// Programs by org.
pub(super) fn by_org(rows: Vec<ProgramWithParts>) -> HashMap<String, FullProgram> {
    rows.into_iter()
        .map(|row| {
            let full = FullProgram {
                program: row.program,
                tiers: row.tiers.0,
                rewards: row.rewards.0,
                stamp_cards: row.stamp_cards.0,
                locations: row.locations.0,
                config: row.config.0,
            };
            (full.program.org_id.clone(), full)
        })
        .collect()
}

impl Db {
    /// Programs of many orgs (ladder, catalogue, cards): one statement however many orgs.
    pub async fn programs(&self, orgs: &[String]) -> QueryResult<HashMap<String, FullProgram>> {
        let rows: Vec<ProgramWithParts> = sqlx::query_as(PROGRAMS).bind(orgs).fetch_all(self.pool()).await?;
        Ok(by_org(rows))
    }
}
