//! Many read models of many members in one statement.
//!
//! A storefront asks for a member's card (balance, tier, RFM, stamp cards, rewards, ranks) on
//! every page view, and an analyst's page asks the same of up to a hundred members. Each read
//! model has its own statement in its module, taking the members as the parallel arrays `$1`
//! (orgs) and `$2` (member ids); here the wanted ones become subqueries of one statement, each
//! aggregated into a JSON array of its rows, so a card costs one round trip instead of one per
//! read model (each round trip cost both processes more than the rows it carried). A row decodes
//! into the same type as from its own statement. The subqueries keep their `ORDER BY`, and
//! `json_agg` fed by an ordered subquery keeps that order: what Postgres documents as the usual
//! behaviour, not as a guarantee (an aggregate's own `ORDER BY` would be, but each part would
//! then have to name its sort keys twice).

use std::collections::{BTreeMap, HashMap};

use domain::ids::MemberKey;
use serde::de::DeserializeOwned;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::Row as _;

use super::achievements::MEMBER_ACHIEVEMENTS;
use super::balance::BALANCES;
use super::keys::{grouped_keyed, key_arrays, keyed, Keyed};
use super::leaderboard::{ranks_by_member, RankRow, RanksKey, RANKS};
use super::member::MEMBERS;
use super::program::{by_org, ProgramWithParts, PROGRAMS};
use super::promotions::{budgets_by_org, BudgetRow, BUDGETS_LEFT, PROMOTION_HISTORIES};
use super::rfm::{transitions_by_member, MEMBER_RFM, MEMBER_TRANSITIONS};
use super::stamps::STAMP_CARDS;
use super::tier::{TIERS, TIER_HISTORY};
use super::Db;
use super::{
    BalanceRow, FullProgram, LeaderboardRow, MemberAchievementRow, MemberRow, PeriodKeys,
    PromotionHistoryRow, RfmRow, StampCardRow, TierChangeRow, TierRow, TransitionRow,
};
use crate::error::QueryResult;

/// Which read models to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    pub directory: bool,
    pub balances: bool,
    pub tiers: bool,
    pub rfm: bool,
    pub stamp_cards: bool,
    pub tier_history: bool,
    pub transitions: bool,
    pub promotion_histories: bool,
    pub achievements: bool,
    /// The programs of the members' orgs.
    pub programs: bool,
    /// The budgets left of the members' orgs.
    pub budgets: bool,
    /// The locations (`""`: org-wide) of the boards whose ranks are wanted.
    pub rank_locations: Vec<String>,
}

/// What one statement read: each wanted read model, by member (or by org). A member without a
/// row in a read model is absent from its map.
#[derive(Debug, Default)]
pub struct ReadModelRows {
    pub directory: HashMap<MemberKey, MemberRow>,
    pub balances: HashMap<MemberKey, BalanceRow>,
    pub tiers: HashMap<MemberKey, TierRow>,
    pub rfm: HashMap<MemberKey, RfmRow>,
    pub stamp_cards: HashMap<MemberKey, Vec<StampCardRow>>,
    pub tier_history: HashMap<MemberKey, Vec<TierChangeRow>>,
    pub transitions: HashMap<MemberKey, Vec<TransitionRow>>,
    pub promotion_histories: HashMap<MemberKey, PromotionHistoryRow>,
    pub achievements: HashMap<MemberKey, Vec<MemberAchievementRow>>,
    pub programs: HashMap<String, FullProgram>,
    pub budgets: HashMap<String, BTreeMap<String, i64>>,
    pub ranks: HashMap<RanksKey, Vec<LeaderboardRow>>,
}

impl Db {
    /// Every read model `wanted` names, for all `keys`, in one statement (none when nothing is
    /// wanted).
    pub async fn read_models(
        &self,
        keys: &[MemberKey],
        wanted: &Wanted,
        periods: &PeriodKeys,
    ) -> QueryResult<ReadModelRows> {
        let parts: [(bool, &str, &str); 12] = [
            (wanted.directory, "directory", &MEMBERS),
            (wanted.balances, "balances", BALANCES),
            (wanted.tiers, "tiers", TIERS),
            (wanted.rfm, "rfm", MEMBER_RFM),
            (wanted.stamp_cards, "stamp_cards", STAMP_CARDS),
            (wanted.tier_history, "tier_history", TIER_HISTORY),
            (wanted.transitions, "transitions", MEMBER_TRANSITIONS),
            (
                wanted.promotion_histories,
                "promotion_histories",
                PROMOTION_HISTORIES,
            ),
            (wanted.achievements, "achievements", MEMBER_ACHIEVEMENTS),
            (wanted.programs, "programs", PROGRAMS),
            (wanted.budgets, "budgets", BUDGETS_LEFT),
            (!wanted.rank_locations.is_empty(), "ranks", RANKS),
        ];
        let columns: Vec<String> = parts
            .iter()
            .filter(|(wanted, ..)| *wanted)
            .map(|(_, name, sql)| format!("(SELECT coalesce(json_agg(x), '[]') FROM ({sql}) x) AS {name}"))
            .collect();
        if keys.is_empty() || columns.is_empty() {
            return Ok(ReadModelRows::default());
        }
        // The FROM names both key arrays so that the statement takes them whichever parts it
        // has (the programs and budgets parts read only the orgs).
        let sql = format!(
            "SELECT {} FROM (SELECT $1::text[], $2::uuid[]) AS members(orgs, ids)",
            columns.join(", ")
        );
        let (orgs, ids) = key_arrays(keys);
        let mut query = sqlx::query(&sql).bind(&orgs).bind(ids);
        if !wanted.rank_locations.is_empty() {
            query = query
                .bind(&wanted.rank_locations)
                .bind(&periods.week)
                .bind(&periods.month);
        }
        let row = query.fetch_one(self.pool()).await?;

        let mut rows = ReadModelRows::default();
        if wanted.directory {
            let members: Vec<MemberRow> = part(&row, "directory")?;
            rows.directory = members.into_iter().map(|m| (m.key(), m)).collect();
        }
        if wanted.balances {
            rows.balances = keyed(part::<Keyed<BalanceRow>>(&row, "balances")?);
        }
        if wanted.tiers {
            rows.tiers = keyed(part::<Keyed<TierRow>>(&row, "tiers")?);
        }
        if wanted.rfm {
            rows.rfm = keyed(part::<Keyed<RfmRow>>(&row, "rfm")?);
        }
        if wanted.stamp_cards {
            rows.stamp_cards = grouped_keyed(part(&row, "stamp_cards")?);
        }
        if wanted.tier_history {
            rows.tier_history = grouped_keyed(part(&row, "tier_history")?);
        }
        if wanted.transitions {
            rows.transitions = transitions_by_member(part(&row, "transitions")?);
        }
        if wanted.promotion_histories {
            rows.promotion_histories =
                keyed(part::<Keyed<PromotionHistoryRow>>(&row, "promotion_histories")?);
        }
        if wanted.achievements {
            rows.achievements = grouped_keyed(part(&row, "achievements")?);
        }
        if wanted.programs {
            rows.programs = by_org(part::<ProgramWithParts>(&row, "programs")?);
        }
        if wanted.budgets {
            let mut orgs = orgs;
            orgs.sort();
            orgs.dedup();
            rows.budgets = budgets_by_org(&orgs, part::<BudgetRow>(&row, "budgets")?);
        }
        if !wanted.rank_locations.is_empty() {
            rows.ranks = ranks_by_member(part::<RankRow>(&row, "ranks")?);
        }
        Ok(rows)
    }
}

/// The rows of one part of the statement.
fn part<T: DeserializeOwned>(row: &PgRow, name: &str) -> QueryResult<Vec<T>> {
    let Json(rows): Json<Vec<T>> = row.try_get(name)?;
    Ok(rows)
}
