//! Achievements (SPEC §9): each member's progress toward each achievement and the badges
//! unlocked (`member_achievements`), and unlocks per achievement per ISO week
//! (`achievement_unlocks_weekly`, the analysts' funnel over time). The reward points themselves
//! move the balance and the ledger in [`super::balance`].
//!
//! Progress is what the domain recorded in `AchievementProgressed` (the projector judges
//! nothing); an unlock is final: a member's achievement is unlocked once and keeps its badge.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Datelike as _, Duration, NaiveDate, Utc};
use domain::MemberEvent;
use uuid::Uuid;

use super::{add, key_arrays, MemberState, Mode, ReadModel, Touched, Writes};
use crate::chain::Chain;
use crate::event::ApplyError;
use domain::MemberKey;

pub const TABLES: &[&str] = &["member_achievements", "achievement_unlocks_weekly"];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AchievementRow {
    pub progress: i64,
    pub target: i64,
    pub updated_at: Option<DateTime<Utc>>,
    pub unlocked_at: Option<DateTime<Utc>>,
    pub badge: Option<String>,
    pub reward_points: Option<i64>,
    /// Changed by this batch: written back.
    pub dirty: bool,
}

/// Increments of one achievement's week: `(unlocks, reward points)`.
pub type WeeklyKey = (String, String, NaiveDate);

#[derive(Debug, Default)]
pub struct AchievementWrites {
    pub weekly: BTreeMap<WeeklyKey, (i64, i64)>,
}

impl AchievementWrites {
    pub fn merge(&mut self, other: AchievementWrites) {
        for (key, (unlocks, points)) in other.weekly {
            let week = self.weekly.entry(key).or_default();
            week.0 += unlocks;
            week.1 += points;
        }
    }
}

/// The Monday (UTC) of `at`'s ISO week.
fn week_of(at: DateTime<Utc>) -> NaiveDate {
    let day = at.date_naive();
    day - Duration::days(i64::from(day.weekday().num_days_from_monday()))
}

/// Progress overwrites the member's rows; an unlock marks its row once and counts in its week.
pub(super) fn apply(
    rows: &mut BTreeMap<String, AchievementRow>,
    key: &MemberKey,
    event: &MemberEvent,
    writes: &mut Writes,
) -> Result<(), ApplyError> {
    match event {
        MemberEvent::AchievementProgressed {
            progress,
            occurred_at,
        } => {
            for moved in progress {
                let row = rows.entry(moved.achievement_id.clone()).or_default();
                if row.unlocked_at.is_some() {
                    return Err(ApplyError::Invalid(format!(
                        "progress recorded for achievement '{}' after it was unlocked",
                        moved.achievement_id
                    )));
                }
                row.progress = moved.progress;
                row.target = moved.target;
                row.updated_at = Some(*occurred_at);
                row.dirty = true;
            }
        }
        MemberEvent::AchievementUnlocked {
            achievement_id,
            badge,
            reward_points,
            occurred_at,
            ..
        } => {
            let row = rows.entry(achievement_id.clone()).or_default();
            if row.unlocked_at.is_some() {
                return Err(ApplyError::Invalid(format!(
                    "achievement '{achievement_id}' unlocked twice"
                )));
            }
            row.unlocked_at = Some(*occurred_at);
            row.updated_at.get_or_insert(*occurred_at);
            row.badge = Some(badge.clone());
            row.reward_points = Some(*reward_points);
            row.dirty = true;
            let week = writes
                .achievements
                .weekly
                .entry((key.org_id.clone(), achievement_id.clone(), week_of(*occurred_at)))
                .or_default();
            week.0 += 1;
            week.1 = add(week.1, *reward_points, "achievement reward points")?;
        }
        _ => return Ok(()),
    }
    writes.touched(&[ReadModel::Achievements]);
    Ok(())
}

/// The achievement rows of the batch's members, in [`super::load_members`]'s read.
pub(super) const LOAD: &str = "SELECT json_build_array(a.org_id, a.member_id, achievement_id, progress, target, \
     updated_at, unlocked_at, badge, reward_points)::text \
     FROM member_achievements a JOIN rm.member_keys($1, $2) AS k(org_id, member_id) USING (org_id, member_id)";

/// Puts a row of [`LOAD`] into its member's state.
pub(super) fn loaded(row: &str, states: &mut HashMap<MemberKey, MemberState>) -> serde_json::Result<()> {
    type Tuple = (
        String,
        Uuid,
        String,
        i64,
        i64,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
        Option<String>,
        Option<i64>,
    );
    let (org_id, member_id, id, progress, target, updated_at, unlocked_at, badge, reward_points): Tuple =
        serde_json::from_str(row)?;
    if let Some(state) = states.get_mut(&MemberKey { org_id, member_id }) {
        state.achievements.insert(
            id,
            AchievementRow {
                progress,
                target,
                updated_at: Some(updated_at),
                unlocked_at,
                badge,
                reward_points,
                dirty: false,
            },
        );
    }
    Ok(())
}

/// Writes the achievement rows the batch changed.
pub(super) fn flush(chain: &mut Chain, touched: &Touched<'_>, mode: Mode) {
    let rows: Vec<(&MemberKey, &String, &AchievementRow)> = touched
        .iter()
        .flat_map(|(k, s)| s.achievements.iter().map(move |(id, row)| (*k, id, row)))
        .filter(|(_, _, row)| row.dirty)
        .collect();
    if !rows.is_empty() {
        let (orgs, ids) = key_arrays(rows.iter().map(|(k, _, _)| *k));
        chain.write("member_achievements", &format!(
            "INSERT INTO member_achievements (org_id, member_id, achievement_id, progress, target, updated_at, \
             unlocked_at, badge, reward_points) \
             SELECT unnest($1::text[]), unnest($2::uuid[]), unnest($3::text[]), unnest($4::bigint[]), unnest($5::bigint[]), \
             unnest($6::timestamptz[]), unnest($7::timestamptz[]), unnest($8::text[]), unnest($9::bigint[]){}",
            mode.on_conflict(
                "(org_id, member_id, achievement_id) DO UPDATE SET progress = excluded.progress, \
                 target = excluded.target, updated_at = excluded.updated_at, unlocked_at = excluded.unlocked_at, \
                 badge = excluded.badge, reward_points = excluded.reward_points"
            )
        ))
        .bind(&orgs)
        .bind(&ids)
        .bind(rows.iter().map(|(_, id, _)| (*id).clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, _, r)| r.progress).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, _, r)| r.target).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, _, r)| r.updated_at.unwrap_or_default()).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, _, r)| r.unlocked_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, _, r)| r.badge.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, _, r)| r.reward_points).collect::<Vec<_>>());
    }
}

/// Adds the batch's unlocks to the weekly counts (per org: [`super::flush`] writes those
/// last).
pub(super) fn flush_per_org(per_org: &mut Chain, writes: &AchievementWrites) {
    if writes.weekly.is_empty() {
        return;
    }
    let w = &writes.weekly;
    per_org.write(

        "achievement_unlocks_weekly",
        "INSERT INTO achievement_unlocks_weekly AS t (org_id, achievement_id, week, unlocks, reward_points) \
         SELECT unnest($1::text[]), unnest($2::text[]), unnest($3::date[]), unnest($4::bigint[]), unnest($5::bigint[]) \
         ON CONFLICT (org_id, achievement_id, week) DO UPDATE SET unlocks = t.unlocks + excluded.unlocks, \
         reward_points = t.reward_points + excluded.reward_points",
    )
    .bind(w.keys().map(|(org, _, _)| org.clone()).collect::<Vec<_>>())
    .bind(w.keys().map(|(_, id, _)| id.clone()).collect::<Vec<_>>())
    .bind(w.keys().map(|(_, _, week)| *week).collect::<Vec<_>>())
    .bind(w.values().map(|(unlocks, _)| *unlocks).collect::<Vec<_>>())
    .bind(w.values().map(|(_, points)| *points).collect::<Vec<_>>());
}
