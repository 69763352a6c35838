//! Promotions (SPEC §9): what each promotion awarded, from the breakdown every purchase event
//! carries — per use (`promotion_uses`: the member, the purchase, the points, the budget left
//! it recorded), per promotion (`promotion_stats`: uses, points, distinct members, points drawn
//! on a budget) and per UTC day of the purchase (`promotion_daily`).
//!
//! Statistics count awarded points gross of later clawbacks (SPEC §9 exact readings): a refund
//! changes none of these rows, and a promotion the cap cut to 0 still counts its use. Purchases
//! recorded before promotions existed (event version 1) are upcast with no promotions.
//!
//! The per-promotion and per-day rows are increments, so they are the same whatever order the
//! members' events are applied in (live batches or the audit's fold); a member counts once in
//! `members`, on the first use [`MemberState::promotions`] does not list yet.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use domain::MemberEvent;
use uuid::Uuid;

use super::{add, key_arrays, MemberState, ReadModel, Writes};
use crate::chain::Chain;
use crate::event::ApplyError;
use domain::MemberKey;

pub const TABLES: &[&str] = &["promotion_uses", "promotion_stats", "promotion_daily"];

/// One purchase a promotion applied to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UseRow {
    pub key: MemberKey,
    pub promotion_id: String,
    pub transaction_id: String,
    pub occurred_at: DateTime<Utc>,
    pub points: i64,
    pub budget_left: Option<i64>,
}

/// Increments of one promotion's totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsDelta {
    pub uses: i64,
    pub points: i64,
    pub members: i64,
    pub budget_drawn: i64,
}

impl StatsDelta {
    fn add(&mut self, other: StatsDelta) {
        self.uses += other.uses;
        self.points += other.points;
        self.members += other.members;
        self.budget_drawn += other.budget_drawn;
    }
}

/// Increments of one promotion's day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DailyDelta {
    pub uses: i64,
    pub points: i64,
}

/// An org's promotion.
pub type PromotionKey = (String, String);

/// The uses a batch adds and the increments it makes.
#[derive(Debug, Default)]
pub struct PromotionWrites {
    pub uses: Vec<UseRow>,
    pub stats: BTreeMap<PromotionKey, StatsDelta>,
    pub daily: BTreeMap<(String, String, NaiveDate), DailyDelta>,
}

impl PromotionWrites {
    pub fn merge(&mut self, other: PromotionWrites) {
        self.uses.extend(other.uses);
        for (key, delta) in other.stats {
            self.stats.entry(key).or_default().add(delta);
        }
        for (key, delta) in other.daily {
            let day = self.daily.entry(key).or_default();
            day.uses += delta.uses;
            day.points += delta.points;
        }
    }
}

/// A purchase records a use of each promotion its breakdown lists; nothing else changes these
/// rows. `used` holds the promotions the member had used before this event.
pub(super) fn apply(
    used: &mut BTreeSet<String>,
    key: &MemberKey,
    event: &MemberEvent,
    writes: &mut Writes,
) -> Result<(), ApplyError> {
    let MemberEvent::PurchaseRecorded {
        transaction_id,
        occurred_at,
        points_earned,
        breakdown,
        ..
    } = event
    else {
        return Ok(());
    };
    let promoted = breakdown
        .promotions
        .iter()
        .try_fold(breakdown.tier_points, |sum, p| sum.checked_add(p.points));
    if breakdown.total != *points_earned || promoted != Some(breakdown.total) {
        return Err(ApplyError::Invalid(format!(
            "purchase '{transaction_id}' earned {points_earned} points but its breakdown adds up to {promoted:?} \
             with a total of {}",
            breakdown.total
        )));
    }
    if breakdown.promotions.is_empty() {
        return Ok(());
    }
    let mut seen = BTreeSet::new();
    for applied in &breakdown.promotions {
        let id = &applied.promotion_id;
        if !seen.insert(id.as_str()) {
            return Err(ApplyError::Invalid(format!(
                "purchase '{transaction_id}' lists promotion '{id}' twice"
            )));
        }
        if applied.points < 0 || applied.budget_left.is_some_and(|left| left < 0) {
            return Err(ApplyError::Invalid(format!(
                "purchase '{transaction_id}' awards promotion '{id}' {} points with budget left {:?}",
                applied.points, applied.budget_left
            )));
        }
        let first_use = used.insert(id.clone());
        let delta = StatsDelta {
            uses: 1,
            points: applied.points,
            members: i64::from(first_use),
            budget_drawn: if applied.budget_left.is_some() {
                applied.points
            } else {
                0
            },
        };
        let stats = writes
            .promotions
            .stats
            .entry((key.org_id.clone(), id.clone()))
            .or_default();
        // Checked here so that the increments written later cannot overflow either.
        add(stats.points, delta.points, "promotion points")?;
        stats.add(delta);
        let day = writes
            .promotions
            .daily
            .entry((key.org_id.clone(), id.clone(), occurred_at.date_naive()))
            .or_default();
        day.uses += 1;
        day.points += applied.points;
        writes.promotions.uses.push(UseRow {
            key: key.clone(),
            promotion_id: id.clone(),
            transaction_id: transaction_id.clone(),
            occurred_at: *occurred_at,
            points: applied.points,
            budget_left: applied.budget_left,
        });
    }
    writes.touched(&[ReadModel::Promotions]);
    Ok(())
}

/// Loads which promotions the members `keys` names have used.
///
/// The promotions the batch's members have used, in [`super::load_members`]'s read: one index
/// probe per (member, promotion used), skipping from one promotion id to the next on the
/// primary key (a `DISTINCT` over the member's uses would read their whole history on every
/// batch, as rewriting every lot once did). [`LOAD_WITH`] goes in the statement's `WITH`.
pub(super) const LOAD_WITH: &str = "used (org_id, member_id, promotion_id) AS ( \
         SELECT k.org_id, k.member_id, \
                (SELECT min(u.promotion_id) FROM promotion_uses u \
                  WHERE u.org_id = k.org_id AND u.member_id = k.member_id) \
         FROM unnest($1::text[], $2::uuid[]) AS k(org_id, member_id) \
         UNION ALL \
         SELECT p.org_id, p.member_id, \
                (SELECT min(u.promotion_id) FROM promotion_uses u \
                  WHERE u.org_id = p.org_id AND u.member_id = p.member_id \
                    AND u.promotion_id > p.promotion_id) \
         FROM used p WHERE p.promotion_id IS NOT NULL)";
pub(super) const LOAD: &str =
    "SELECT json_build_array(org_id, member_id, promotion_id)::text FROM used WHERE promotion_id IS NOT NULL";

/// Puts a row of [`LOAD`] into its member's state.
pub(super) fn loaded(row: &str, states: &mut HashMap<MemberKey, MemberState>) -> serde_json::Result<()> {
    let (org_id, member_id, promotion_id): (String, Uuid, String) = serde_json::from_str(row)?;
    if let Some(state) = states.get_mut(&MemberKey { org_id, member_id }) {
        state.promotions.insert(promotion_id);
    }
    Ok(())
}

/// Writes the batch's uses.
pub(super) fn flush(chain: &mut Chain, writes: &PromotionWrites) {
    if !writes.uses.is_empty() {
        let u = &writes.uses;
        let (orgs, ids) = key_arrays(u.iter().map(|r| &r.key));
        chain.write(
            "promotion_uses",
            "INSERT INTO promotion_uses (org_id, member_id, promotion_id, transaction_id, occurred_at, points, \
             budget_left) \
             SELECT unnest($1::text[]), unnest($2::uuid[]), unnest($3::text[]), unnest($4::text[]), unnest($5::timestamptz[]), unnest($6::bigint[]), \
             unnest($7::bigint[])",
        )
        .bind(&orgs)
        .bind(&ids)
        .bind(u.iter().map(|r| r.promotion_id.clone()).collect::<Vec<_>>())
        .bind(u.iter().map(|r| r.transaction_id.clone()).collect::<Vec<_>>())
        .bind(u.iter().map(|r| r.occurred_at).collect::<Vec<_>>())
        .bind(u.iter().map(|r| r.points).collect::<Vec<_>>())
        .bind(u.iter().map(|r| r.budget_left).collect::<Vec<_>>());
    }
}

/// Adds the batch's increments to the per-promotion rows (per org: [`super::flush`] writes
/// those last).
pub(super) fn flush_per_org(per_org: &mut Chain, writes: &PromotionWrites) {
    if !writes.stats.is_empty() {
        let s = &writes.stats;
        per_org.write(
            "promotion_stats",
            "INSERT INTO promotion_stats AS s (org_id, promotion_id, uses, points, members, budget_drawn) \
             SELECT unnest($1::text[]), unnest($2::text[]), unnest($3::bigint[]), unnest($4::bigint[]), unnest($5::bigint[]), unnest($6::bigint[]) \
             ON CONFLICT (org_id, promotion_id) DO UPDATE SET uses = s.uses + excluded.uses, \
             points = s.points + excluded.points, members = s.members + excluded.members, \
             budget_drawn = s.budget_drawn + excluded.budget_drawn",
        )
        .bind(s.keys().map(|(org, _)| org.clone()).collect::<Vec<_>>())
        .bind(s.keys().map(|(_, id)| id.clone()).collect::<Vec<_>>())
        .bind(s.values().map(|d| d.uses).collect::<Vec<_>>())
        .bind(s.values().map(|d| d.points).collect::<Vec<_>>())
        .bind(s.values().map(|d| d.members).collect::<Vec<_>>())
        .bind(s.values().map(|d| d.budget_drawn).collect::<Vec<_>>());
    }
    if !writes.daily.is_empty() {
        let d = &writes.daily;
        per_org
            .write(
                "promotion_daily",
                "INSERT INTO promotion_daily AS d (org_id, promotion_id, day, uses, points) \
                 SELECT unnest($1::text[]), unnest($2::text[]), unnest($3::date[]), unnest($4::bigint[]), unnest($5::bigint[]) \
                 ON CONFLICT (org_id, promotion_id, day) DO UPDATE SET uses = d.uses + excluded.uses, \
                 points = d.points + excluded.points",
            )
            .bind(d.keys().map(|(org, _, _)| org.clone()).collect::<Vec<_>>())
            .bind(d.keys().map(|(_, id, _)| id.clone()).collect::<Vec<_>>())
            .bind(d.keys().map(|(_, _, day)| *day).collect::<Vec<_>>())
            .bind(d.values().map(|v| v.uses).collect::<Vec<_>>())
            .bind(d.values().map(|v| v.points).collect::<Vec<_>>());
    }
}
