//! Tiers: each member's current tier, qualifying points and grace period (`member_tiers`), and
//! every change of it (`tier_history`). The `member_tier_progress` view reads both with the
//! program and the purchases.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::MemberEvent;
use uuid::Uuid;

use super::{key_arrays, rows_of, to_i32, to_i64, EventMeta, MemberState, Mode, ReadModel, Touched, Writes};
use crate::chain::Chain;
use crate::event::ApplyError;
use domain::MemberKey;

pub const TABLES: &[&str] = &["member_tiers", "tier_history"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierRow {
    pub tier: String,
    pub multiplier_bps: i32,
    pub qualifying_points: i64,
    pub qualifying_as_of: DateTime<Utc>,
    pub tier_since: DateTime<Utc>,
    pub program_version: i64,
    pub grace_started_at: Option<DateTime<Utc>>,
    pub grace_threshold_points: Option<i64>,
    pub downgrade_after: Option<DateTime<Utc>>,
}

impl TierRow {
    fn qualifying(&mut self, points: i64, as_of: DateTime<Utc>) {
        self.qualifying_points = points;
        self.qualifying_as_of = as_of;
    }

    fn end_grace(&mut self) {
        self.grace_started_at = None;
        self.grace_threshold_points = None;
        self.downgrade_after = None;
    }
}

#[derive(Debug, Clone)]
pub struct TierHistoryRow {
    pub key: MemberKey,
    pub sequence: i64,
    pub change: &'static str,
    pub from_tier: Option<String>,
    pub to_tier: String,
    pub multiplier_bps: Option<i32>,
    pub qualifying_points: i64,
    pub at: DateTime<Utc>,
    pub downgrade_after: Option<DateTime<Utc>>,
    pub program_version: Option<i64>,
}

/// An enrolment opens the tier, purchases and refunds report the qualifying points, tier
/// events change the tier or its grace period; each change is recorded in the history.
pub(super) fn apply(
    row: &mut Option<TierRow>,
    key: &MemberKey,
    meta: &EventMeta,
    event: &MemberEvent,
    writes: &mut Writes,
) -> Result<(), ApplyError> {
    let history =
        |change, from_tier: Option<&String>, to_tier: &String, qualifying_points, at| TierHistoryRow {
            key: key.clone(),
            sequence: meta.sequence,
            change,
            from_tier: from_tier.cloned(),
            to_tier: to_tier.clone(),
            multiplier_bps: None,
            qualifying_points,
            at,
            downgrade_after: None,
            program_version: None,
        };
    if let MemberEvent::MemberEnrolled {
        enrolled_at,
        tier,
        multiplier_bps,
        program_version,
        ..
    } = event
    {
        *row = Some(TierRow {
            tier: tier.clone(),
            multiplier_bps: to_i32(*multiplier_bps, "multiplier_bps")?,
            qualifying_points: 0,
            qualifying_as_of: *enrolled_at,
            tier_since: *enrolled_at,
            program_version: to_i64(*program_version, "program_version")?,
            grace_started_at: None,
            grace_threshold_points: None,
            downgrade_after: None,
        });
        writes.tier_history.push(TierHistoryRow {
            multiplier_bps: Some(to_i32(*multiplier_bps, "multiplier_bps")?),
            program_version: Some(to_i64(*program_version, "program_version")?),
            ..history("enrolled", None, tier, 0, *enrolled_at)
        });
        writes.touched(&[ReadModel::Tier]);
        return Ok(());
    }
    let Some(row) = row.as_mut() else {
        return Err(ApplyError::Invalid("no tier row".into()));
    };
    match event {
        MemberEvent::PurchaseRecorded {
            occurred_at,
            qualifying_points,
            ..
        }
        | MemberEvent::PurchaseRefunded {
            occurred_at,
            qualifying_points,
            ..
        } => row.qualifying(*qualifying_points, *occurred_at),
        MemberEvent::TierUpgraded {
            from,
            to,
            multiplier_bps,
            qualifying_points,
            occurred_at,
            program_version,
        }
        | MemberEvent::TierDowngraded {
            from,
            to,
            multiplier_bps,
            qualifying_points,
            as_of: occurred_at,
            program_version,
        } => {
            let upgraded = matches!(event, MemberEvent::TierUpgraded { .. });
            row.tier = to.clone();
            row.multiplier_bps = to_i32(*multiplier_bps, "multiplier_bps")?;
            row.qualifying(*qualifying_points, *occurred_at);
            row.tier_since = *occurred_at;
            row.program_version = to_i64(*program_version, "program_version")?;
            row.end_grace();
            let change = if upgraded { "upgraded" } else { "downgraded" };
            writes.tier_history.push(TierHistoryRow {
                multiplier_bps: Some(row.multiplier_bps),
                program_version: Some(row.program_version),
                ..history(change, Some(from), to, *qualifying_points, *occurred_at)
            });
        }
        MemberEvent::TierGracePeriodStarted {
            tier: name,
            threshold_points,
            qualifying_points,
            as_of,
            downgrade_after,
        } => {
            row.qualifying(*qualifying_points, *as_of);
            row.grace_started_at = Some(*as_of);
            row.grace_threshold_points = Some(*threshold_points);
            row.downgrade_after = Some(*downgrade_after);
            writes.tier_history.push(TierHistoryRow {
                downgrade_after: Some(*downgrade_after),
                ..history("grace_started", Some(name), name, *qualifying_points, *as_of)
            });
        }
        MemberEvent::TierGracePeriodCleared {
            tier: name,
            qualifying_points,
            as_of,
        } => {
            row.qualifying(*qualifying_points, *as_of);
            row.end_grace();
            writes.tier_history.push(history(
                "grace_cleared",
                Some(name),
                name,
                *qualifying_points,
                *as_of,
            ));
        }
        MemberEvent::MemberEnrolled { .. }
        | MemberEvent::RewardRedeemed { .. }
        | MemberEvent::PointsAdjusted { .. }
        | MemberEvent::PointsExpired { .. }
        | MemberEvent::StampCollected { .. }
        | MemberEvent::StampCardCompleted { .. }
        | MemberEvent::AchievementProgressed { .. }
        | MemberEvent::AchievementUnlocked { .. } => return Ok(()),
    }
    writes.touched(&[ReadModel::Tier]);
    Ok(())
}

/// The tiers of the batch's members, in [`super::load_members`]'s read.
pub(super) const LOAD: &str = "SELECT json_build_array(t.org_id, t.member_id, tier, multiplier_bps, qualifying_points, \
     qualifying_as_of, tier_since, program_version, grace_started_at, grace_threshold_points, downgrade_after)::text \
     FROM member_tiers t JOIN rm.member_keys($1, $2) AS k(org_id, member_id) USING (org_id, member_id)";

/// Puts a row of [`LOAD`] into its member's state.
pub(super) fn loaded(row: &str, states: &mut HashMap<MemberKey, MemberState>) -> serde_json::Result<()> {
    type TierTuple = (
        String,
        Uuid,
        String,
        i32,
        i64,
        DateTime<Utc>,
        DateTime<Utc>,
        i64,
        Option<DateTime<Utc>>,
        Option<i64>,
        Option<DateTime<Utc>>,
    );
    let row: TierTuple = serde_json::from_str(row)?;
    let key = MemberKey {
        org_id: row.0,
        member_id: row.1,
    };
    if let Some(state) = states.get_mut(&key) {
        state.tier = Some(TierRow {
            tier: row.2,
            multiplier_bps: row.3,
            qualifying_points: row.4,
            qualifying_as_of: row.5,
            tier_since: row.6,
            program_version: row.7,
            grace_started_at: row.8,
            grace_threshold_points: row.9,
            downgrade_after: row.10,
        });
    }
    Ok(())
}

/// Writes the tiers of the touched members.
pub(super) fn flush(chain: &mut Chain, touched: &Touched<'_>, mode: Mode) {
    let rows = rows_of(touched, |s| s.tier.as_ref());
    if rows.is_empty() {
        return;
    }
    let (orgs, ids) = key_arrays(rows.iter().map(|(k, _)| *k));
    chain.write("member_tiers", &format!(
        "INSERT INTO member_tiers (org_id, member_id, tier, multiplier_bps, qualifying_points, qualifying_as_of, \
         tier_since, program_version, grace_started_at, grace_threshold_points, downgrade_after) \
         SELECT unnest($1::text[]), unnest($2::uuid[]), unnest($3::text[]), unnest($4::int[]), unnest($5::bigint[]), unnest($6::timestamptz[]), \
         unnest($7::timestamptz[]), unnest($8::bigint[]), unnest($9::timestamptz[]), unnest($10::bigint[]), unnest($11::timestamptz[]){}",
        mode.on_conflict(
            "(org_id, member_id) DO UPDATE SET tier = excluded.tier, \
             multiplier_bps = excluded.multiplier_bps, qualifying_points = excluded.qualifying_points, \
             qualifying_as_of = excluded.qualifying_as_of, tier_since = excluded.tier_since, \
             program_version = excluded.program_version, grace_started_at = excluded.grace_started_at, \
             grace_threshold_points = excluded.grace_threshold_points, downgrade_after = excluded.downgrade_after"
        )
    ))
    .bind(&orgs)
    .bind(&ids)
    .bind(rows.iter().map(|(_, t)| t.tier.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, t)| t.multiplier_bps).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, t)| t.qualifying_points).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, t)| t.qualifying_as_of).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, t)| t.tier_since).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, t)| t.program_version).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, t)| t.grace_started_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, t)| t.grace_threshold_points).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, t)| t.downgrade_after).collect::<Vec<_>>());
}

/// Writes the tier changes of the batch.
pub(super) fn flush_history(chain: &mut Chain, history: &[TierHistoryRow]) {
    if history.is_empty() {
        return;
    }
    let h = history;
    let (orgs, ids) = key_arrays(h.iter().map(|r| &r.key));
    chain.write(

        "tier_history",
        "INSERT INTO tier_history (org_id, member_id, sequence, change, from_tier, to_tier, multiplier_bps, \
         qualifying_points, at, downgrade_after, program_version) \
         SELECT unnest($1::text[]), unnest($2::uuid[]), unnest($3::bigint[]), unnest($4::text[]), unnest($5::text[]), unnest($6::text[]), \
         unnest($7::int[]), unnest($8::bigint[]), unnest($9::timestamptz[]), unnest($10::timestamptz[]), unnest($11::bigint[])",
    )
    .bind(&orgs)
    .bind(&ids)
    .bind(h.iter().map(|r| r.sequence).collect::<Vec<_>>())
    .bind(h.iter().map(|r| r.change).collect::<Vec<_>>())
    .bind(h.iter().map(|r| r.from_tier.clone()).collect::<Vec<_>>())
    .bind(h.iter().map(|r| r.to_tier.clone()).collect::<Vec<_>>())
    .bind(h.iter().map(|r| r.multiplier_bps).collect::<Vec<_>>())
    .bind(h.iter().map(|r| r.qualifying_points).collect::<Vec<_>>())
    .bind(h.iter().map(|r| r.at).collect::<Vec<_>>())
    .bind(h.iter().map(|r| r.downgrade_after).collect::<Vec<_>>())
    .bind(h.iter().map(|r| r.program_version).collect::<Vec<_>>());
}
