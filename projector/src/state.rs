//! The read models of one batch, in memory: the member rows the batch's events touch (loaded
//! before, written back after) and the rows the events add or increment.
//!
//! Applying an event is pure: it changes this state or fails with an [`ApplyError`] and changes
//! nothing (the caller applies to a copy of the member's rows and to fresh [`Writes`], and keeps
//! them only on success). The same code serves the live consumer and the audit replay.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike as _, NaiveDate, SubsecRound as _, Utc};
use cqrs_es::Aggregate as _;
use domain::ledger::{self, Account};
use domain::member::Lot;
use domain::program::ProgramConfig;
use domain::{MemberEvent, ProgramEvent};
use uuid::Uuid;

use crate::event::{ApplyError, MemberKey};

/// Where an event sits in the log.
#[derive(Debug, Clone)]
pub struct EventMeta {
    pub sequence: i64,
    pub global_position: i64,
    pub committed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BalanceRow {
    pub balance: i64,
    pub lifetime_earned: i64,
    pub redeemed: i64,
    pub expired: i64,
    pub clawed_back: i64,
    pub adjusted: i64,
    /// The domain's expiry lots, in the domain's order.
    pub lots: Vec<Lot>,
    /// The lots as `member_lots` held them when the batch loaded them (none for a new member
    /// or a replay): only the rows that differ are written back.
    pub stored_lots: Vec<Lot>,
}

impl BalanceRow {
    /// `(points, at)` of the lots that expire next, exactly as `domain::Member` computes it.
    pub fn next_expiry(&self) -> Option<(i64, DateTime<Utc>)> {
        self.as_domain().next_expiry()
    }

    fn as_domain(&self) -> domain::Member {
        domain::Member {
            points: domain::PointCounters {
                balance: self.balance,
                ..Default::default()
            },
            lots: self.lots.clone(),
            ..Default::default()
        }
    }
}

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StampRow {
    pub stamps: i32,
    pub stamps_required: i32,
    pub cards_completed: i32,
    pub last_stamp_day: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseRow {
    pub location_id: String,
    pub occurred_at: DateTime<Utc>,
    pub amount_minor: i64,
    pub refunded_minor: i64,
    pub points_earned: i64,
    pub clawed_back: i64,
}

/// The rows of one member that events modify in place. `purchases` holds the purchases the
/// batch's events name (all of the member's in the audit's fold).
#[derive(Debug, Clone, Default)]
pub struct MemberState {
    pub balance: Option<BalanceRow>,
    pub tier: Option<TierRow>,
    pub stamps: BTreeMap<String, StampRow>,
    pub purchases: BTreeMap<String, PurchaseRow>,
    /// Some event of this batch was applied to the member: its rows are written back.
    pub touched: bool,
}

#[derive(Debug, Clone)]
pub struct DirectoryRow {
    pub key: MemberKey,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    pub enrolled_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct JournalRow {
    pub key: MemberKey,
    pub sequence: i64,
    pub global_position: i64,
    pub event_type: &'static str,
    pub reference: Option<String>,
    pub points_delta: i64,
    pub balance_after: i64,
    pub occurred_at: DateTime<Utc>,
    pub committed_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct PostingRow {
    pub key: MemberKey,
    pub sequence: i64,
    pub account: Account,
    pub delta: i64,
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

#[derive(Debug, Clone)]
pub struct StampRewardRow {
    pub key: MemberKey,
    pub card_id: String,
    pub cards_completed: i32,
    pub reward_id: String,
    pub transaction_id: String,
    pub occurred_at: DateTime<Utc>,
}

/// A leaderboard row: org, location ('' = all), period, period key, member.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaderboardKey {
    pub org_id: String,
    pub location_id: String,
    pub period: &'static str,
    pub period_key: String,
    pub member_id: Uuid,
}

/// The change of one leaderboard row by a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderboardOp {
    pub delta: i64,
    /// The first event of the batch touching the row (its `reached` if the row is new and no
    /// event changed its score).
    pub first: (DateTime<Utc>, i64),
    /// The last event of the batch that changed the score.
    pub changed: Option<(DateTime<Utc>, i64)>,
}

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

/// An event that is not applied but kept in `parked_events`.
#[derive(Debug, Clone)]
pub struct ParkedRow {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub global_position: Option<i64>,
    pub event_type: Option<String>,
    pub payload: String,
    pub error: String,
    pub blocked_by: Option<i64>,
}

/// Rows a batch adds, and increments it makes, outside the loaded member rows.
#[derive(Debug, Default)]
pub struct Writes {
    pub directory: Vec<DirectoryRow>,
    pub journal: Vec<JournalRow>,
    pub postings: Vec<PostingRow>,
    pub liability: BTreeMap<String, i64>,
    pub tier_history: Vec<TierHistoryRow>,
    pub stamp_rewards: Vec<StampRewardRow>,
    /// Members whose purchases changed: their `rfm_members` row is recomputed.
    pub rfm_members: BTreeSet<MemberKey>,
    pub rfm_orgs: BTreeMap<String, i64>,
    pub leaderboard: BTreeMap<LeaderboardKey, LeaderboardOp>,
    pub programs: BTreeMap<String, ProgramRow>,
    pub locations: Vec<LocationRow>,
    pub checkpoints: BTreeMap<(String, String), (i64, i64)>,
    pub parked: Vec<ParkedRow>,
    /// Events applied per read model, for the metrics.
    pub applied: BTreeMap<&'static str, u64>,
}

impl Writes {
    /// Adds `other` (the effects of a later event) to `self`.
    pub fn merge(&mut self, other: Writes) {
        self.directory.extend(other.directory);
        self.journal.extend(other.journal);
        self.postings.extend(other.postings);
        for (org, delta) in other.liability {
            *self.liability.entry(org).or_default() += delta;
        }
        self.tier_history.extend(other.tier_history);
        self.stamp_rewards.extend(other.stamp_rewards);
        self.rfm_members.extend(other.rfm_members);
        for (org, delta) in other.rfm_orgs {
            *self.rfm_orgs.entry(org).or_default() += delta;
        }
        for (key, op) in other.leaderboard {
            match self.leaderboard.get_mut(&key) {
                Some(existing) => {
                    existing.delta += op.delta;
                    existing.changed = op.changed.or(existing.changed);
                }
                None => {
                    self.leaderboard.insert(key, op);
                }
            }
        }
        self.programs.extend(other.programs);
        self.locations.extend(other.locations);
        self.checkpoints.extend(other.checkpoints);
        self.parked.extend(other.parked);
        for (model, n) in other.applied {
            *self.applied.entry(model).or_default() += n;
        }
    }

    fn touched(&mut self, models: &[&'static str]) {
        for model in models {
            *self.applied.entry(model).or_default() += 1;
        }
    }
}

/// The ISO week (`2025-W03`) and calendar month (`2025-01`) of `at`, UTC.
pub fn period_keys(at: DateTime<Utc>) -> [(&'static str, String); 3] {
    let week = at.iso_week();
    [
        ("week", format!("{:04}-W{:02}", week.year(), week.week())),
        ("month", format!("{:04}-{:02}", at.year(), at.month())),
        ("all", "all".to_owned()),
    ]
}

fn add(a: i64, b: i64, what: &'static str) -> Result<i64, ApplyError> {
    a.checked_add(b).ok_or(ApplyError::Overflow(what))
}

fn to_i32(value: u32, what: &'static str) -> Result<i32, ApplyError> {
    i32::try_from(value).map_err(|_| ApplyError::Overflow(what))
}

fn to_i64(value: u64, what: &'static str) -> Result<i64, ApplyError> {
    i64::try_from(value).map_err(|_| ApplyError::Overflow(what))
}

fn leaderboard(
    writes: &mut Writes,
    key: &MemberKey,
    location_id: &str,
    purchase_at: DateTime<Utc>,
    delta: i64,
    event_at: DateTime<Utc>,
    meta: &EventMeta,
) {
    let at = (event_at, meta.global_position);
    for location in ["", location_id] {
        for (period, period_key) in period_keys(purchase_at) {
            let row = LeaderboardKey {
                org_id: key.org_id.clone(),
                location_id: location.to_owned(),
                period,
                period_key,
                member_id: key.member_id,
            };
            let op = LeaderboardOp {
                delta,
                first: at,
                changed: (delta != 0).then_some(at),
            };
            match writes.leaderboard.get_mut(&row) {
                Some(existing) => {
                    existing.delta += delta;
                    existing.changed = op.changed.or(existing.changed);
                }
                None => {
                    writes.leaderboard.insert(row, op);
                }
            }
        }
    }
}

/// Applies one member event to `state` (the member's rows) and `writes`.
pub fn apply_member(
    state: &mut MemberState,
    key: &MemberKey,
    meta: &EventMeta,
    event: &MemberEvent,
    writes: &mut Writes,
) -> Result<(), ApplyError> {
    if let MemberEvent::MemberEnrolled {
        org_id,
        member_id,
        external_id,
        display_name,
        enrolled_at,
        tier,
        multiplier_bps,
        program_version,
    } = event
    {
        if *org_id != key.org_id || *member_id != key.member_id {
            return Err(ApplyError::Invalid(format!(
                "MemberEnrolled names {org_id}/{member_id} but belongs to aggregate {}",
                key.aggregate_id()
            )));
        }
        if state.balance.is_some() {
            return Err(ApplyError::Invalid(
                "MemberEnrolled for a member already enrolled".into(),
            ));
        }
        state.balance = Some(BalanceRow::default());
        state.tier = Some(TierRow {
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
        writes.directory.push(DirectoryRow {
            key: key.clone(),
            external_id: external_id.clone(),
            display_name: display_name.clone(),
            enrolled_at: *enrolled_at,
        });
        writes.tier_history.push(TierHistoryRow {
            key: key.clone(),
            sequence: meta.sequence,
            change: "enrolled",
            from_tier: None,
            to_tier: tier.clone(),
            multiplier_bps: Some(to_i32(*multiplier_bps, "multiplier_bps")?),
            qualifying_points: 0,
            at: *enrolled_at,
            downgrade_after: None,
            program_version: Some(to_i64(*program_version, "program_version")?),
        });
        // Every org with members has a liability row, even while it is 0.
        writes.liability.entry(key.org_id.clone()).or_default();
        writes.touched(&["directory", "balance", "tier"]);
        return Ok(());
    }

    if state.balance.is_none() || state.tier.is_none() {
        return Err(ApplyError::Invalid(format!(
            "{} for a member that is not enrolled",
            event.type_name()
        )));
    }
    apply_points(state, key, meta, event, writes)?;
    apply_rest(state, key, meta, event, writes)
}

impl MemberState {
    /// Applies one member event all or nothing: on error the state and `writes` are as before.
    /// Both the live batches and the audit's fold apply every member event through here.
    pub fn apply(
        &mut self,
        key: &MemberKey,
        meta: &EventMeta,
        event: &MemberEvent,
        writes: &mut Writes,
    ) -> Result<(), ApplyError> {
        // A member's purchases can be many (the audit folds whole histories) and an event
        // touches at most one: only that one is saved for the undo, the rest is small.
        let purchases = std::mem::take(&mut self.purchases);
        let mut trial = MemberState {
            purchases,
            ..self.clone()
        };
        let purchase = match event {
            MemberEvent::PurchaseRecorded { transaction_id, .. }
            | MemberEvent::PurchaseRefunded { transaction_id, .. } => {
                Some((transaction_id, trial.purchases.get(transaction_id).cloned()))
            }
            _ => None,
        };
        let mut effects = Writes::default();
        match apply_member(&mut trial, key, meta, event, &mut effects) {
            Ok(()) => {
                trial.touched = true;
                *self = trial;
                writes.merge(effects);
                Ok(())
            }
            Err(error) => {
                match purchase {
                    Some((txn, Some(before))) => {
                        trial.purchases.insert(txn.clone(), before);
                    }
                    Some((txn, None)) => {
                        trial.purchases.remove(txn);
                    }
                    None => {}
                }
                self.purchases = trial.purchases;
                Err(error)
            }
        }
    }
}

/// The balance, lots and ledger part of a points-moving event.
fn apply_points(
    state: &mut MemberState,
    key: &MemberKey,
    meta: &EventMeta,
    event: &MemberEvent,
    writes: &mut Writes,
) -> Result<(), ApplyError> {
    let (balance_after, occurred_at, reference) = match event {
        MemberEvent::PurchaseRecorded {
            balance_after,
            occurred_at,
            transaction_id,
            ..
        } => (*balance_after, *occurred_at, Some(transaction_id.clone())),
        MemberEvent::PurchaseRefunded {
            balance_after,
            occurred_at,
            refund_id,
            ..
        } => (*balance_after, *occurred_at, Some(refund_id.clone())),
        MemberEvent::RewardRedeemed {
            balance_after,
            occurred_at,
            redemption_id,
            ..
        } => (*balance_after, *occurred_at, Some(redemption_id.clone())),
        MemberEvent::PointsAdjusted {
            balance_after,
            occurred_at,
            adjustment_id,
            ..
        } => (*balance_after, *occurred_at, Some(adjustment_id.clone())),
        MemberEvent::PointsExpired {
            balance_after, as_of, ..
        } => (*balance_after, *as_of, None),
        _ => return Ok(()),
    };
    let Some(row) = state.balance.as_mut() else {
        return Err(ApplyError::Invalid("no balance row".into()));
    };
    let delta = ledger::points_delta(event);
    let balance = add(row.balance, delta, "balance")?;
    if balance != balance_after {
        return Err(ApplyError::Invalid(format!(
            "{} says balance_after {balance_after}, but the read model's balance {} moved by {delta} is {balance}",
            event.type_name(),
            row.balance
        )));
    }
    match event {
        MemberEvent::PurchaseRecorded { points_earned, .. } => {
            row.lifetime_earned = add(row.lifetime_earned, *points_earned, "lifetime_earned")?;
        }
        MemberEvent::PurchaseRefunded {
            points_clawed_back, ..
        } => row.clawed_back = add(row.clawed_back, *points_clawed_back, "clawed_back")?,
        MemberEvent::RewardRedeemed { points_cost, .. } => {
            row.redeemed = add(row.redeemed, *points_cost, "redeemed")?;
        }
        MemberEvent::PointsAdjusted { delta, .. } => row.adjusted = add(row.adjusted, *delta, "adjusted")?,
        MemberEvent::PointsExpired { points, .. } => row.expired = add(row.expired, *points, "expired")?,
        _ => {}
    }
    // The lots follow the domain's own rules (credit repays a negative balance first, debits
    // take the soonest-expiring lot first, expiry drops expired lots): apply the event to a
    // domain Member holding just the balance and lots.
    let mut member = domain::Member {
        points: domain::PointCounters {
            balance: row.balance,
            ..Default::default()
        },
        lots: std::mem::take(&mut row.lots),
        ..Default::default()
    };
    member.apply(event.clone());
    if member.points.balance != balance {
        return Err(ApplyError::Invalid(format!(
            "the domain's balance after {} is {}, the ledger's {balance}",
            event.type_name(),
            member.points.balance
        )));
    }
    row.lots = member.lots;
    row.balance = balance;

    if delta != 0 {
        writes.journal.push(JournalRow {
            key: key.clone(),
            sequence: meta.sequence,
            global_position: meta.global_position,
            event_type: event.type_name(),
            reference,
            points_delta: delta,
            balance_after,
            occurred_at,
            committed_at: meta.committed_at,
        });
        for posting in ledger::postings(event) {
            writes.postings.push(PostingRow {
                key: key.clone(),
                sequence: meta.sequence,
                account: posting.account,
                delta: posting.delta,
            });
        }
        let liability = writes.liability.entry(key.org_id.clone()).or_default();
        *liability = add(*liability, delta, "liability")?;
    }
    writes.touched(&["balance", "ledger"]);
    Ok(())
}

/// Tier, stamps, purchases (RFM raw data) and leaderboards.
fn apply_rest(
    state: &mut MemberState,
    key: &MemberKey,
    meta: &EventMeta,
    event: &MemberEvent,
    writes: &mut Writes,
) -> Result<(), ApplyError> {
    let Some(tier) = state.tier.as_mut() else {
        return Err(ApplyError::Invalid("no tier row".into()));
    };
    match event {
        MemberEvent::MemberEnrolled { .. } => {}
        MemberEvent::PurchaseRecorded {
            transaction_id,
            location_id,
            amount_minor,
            occurred_at,
            points_earned,
            qualifying_points,
            ..
        } => {
            if state.purchases.contains_key(transaction_id) {
                return Err(ApplyError::Invalid(format!(
                    "purchase '{transaction_id}' is already recorded"
                )));
            }
            state.purchases.insert(
                transaction_id.clone(),
                PurchaseRow {
                    location_id: location_id.clone(),
                    occurred_at: *occurred_at,
                    amount_minor: *amount_minor,
                    refunded_minor: 0,
                    points_earned: *points_earned,
                    clawed_back: 0,
                },
            );
            tier.qualifying_points = *qualifying_points;
            tier.qualifying_as_of = *occurred_at;
            writes.rfm_members.insert(key.clone());
            *writes.rfm_orgs.entry(key.org_id.clone()).or_default() += 1;
            leaderboard(
                writes,
                key,
                location_id,
                *occurred_at,
                *points_earned,
                *occurred_at,
                meta,
            );
            writes.touched(&["tier", "rfm", "leaderboard"]);
        }
        MemberEvent::PurchaseRefunded {
            transaction_id,
            location_id,
            purchase_occurred_at,
            purchase_amount_minor,
            purchase_points_earned,
            amount_minor,
            refunded_total_minor,
            points_clawed_back,
            qualifying_points,
            occurred_at,
            ..
        } => {
            let Some(purchase) = state.purchases.get_mut(transaction_id) else {
                return Err(ApplyError::Invalid(format!(
                    "refund of purchase '{transaction_id}', which the read model does not have"
                )));
            };
            let same_purchase = purchase.location_id == *location_id
                // At the store's precision: a log may hold receipt times finer than the
                // microseconds `purchases` keeps.
                && purchase.occurred_at.trunc_subsecs(6) == purchase_occurred_at.trunc_subsecs(6)
                && purchase.amount_minor == *purchase_amount_minor
                && purchase.points_earned == *purchase_points_earned;
            let refunded = add(purchase.refunded_minor, *amount_minor, "refunded_minor")?;
            if !same_purchase || refunded != *refunded_total_minor {
                return Err(ApplyError::Invalid(format!(
                    "refund of '{transaction_id}' does not match the recorded purchase \
                     (refunded so far {}, this refund {amount_minor}, event says total {refunded_total_minor})",
                    purchase.refunded_minor
                )));
            }
            purchase.refunded_minor = refunded;
            purchase.clawed_back = add(purchase.clawed_back, *points_clawed_back, "clawed_back")?;
            tier.qualifying_points = *qualifying_points;
            tier.qualifying_as_of = *occurred_at;
            writes.rfm_members.insert(key.clone());
            *writes.rfm_orgs.entry(key.org_id.clone()).or_default() += 1;
            if *points_clawed_back != 0 {
                // Clawbacks count against the purchase's own period and location.
                leaderboard(
                    writes,
                    key,
                    location_id,
                    *purchase_occurred_at,
                    -*points_clawed_back,
                    *occurred_at,
                    meta,
                );
            }
            writes.touched(&["tier", "rfm", "leaderboard"]);
        }
        MemberEvent::StampCollected {
            card_id,
            day,
            stamps,
            stamps_required,
            ..
        } => {
            let card = state.stamps.entry(card_id.clone()).or_insert(StampRow {
                stamps: 0,
                stamps_required: 0,
                cards_completed: 0,
                last_stamp_day: None,
            });
            card.stamps = to_i32(*stamps, "stamps")?;
            card.stamps_required = to_i32(*stamps_required, "stamps_required")?;
            card.last_stamp_day = Some(*day);
            writes.touched(&["stamps"]);
        }
        MemberEvent::StampCardCompleted {
            card_id,
            reward_id,
            transaction_id,
            cards_completed,
            occurred_at,
        } => {
            let Some(card) = state.stamps.get_mut(card_id) else {
                return Err(ApplyError::Invalid(format!(
                    "card '{card_id}' completed without any stamp"
                )));
            };
            card.stamps = 0;
            card.cards_completed = to_i32(*cards_completed, "cards_completed")?;
            writes.stamp_rewards.push(StampRewardRow {
                key: key.clone(),
                card_id: card_id.clone(),
                cards_completed: card.cards_completed,
                reward_id: reward_id.clone(),
                transaction_id: transaction_id.clone(),
                occurred_at: *occurred_at,
            });
            writes.touched(&["stamps"]);
        }
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
            tier.tier = to.clone();
            tier.multiplier_bps = to_i32(*multiplier_bps, "multiplier_bps")?;
            tier.qualifying_points = *qualifying_points;
            tier.qualifying_as_of = *occurred_at;
            tier.tier_since = *occurred_at;
            tier.program_version = to_i64(*program_version, "program_version")?;
            tier.grace_started_at = None;
            tier.grace_threshold_points = None;
            tier.downgrade_after = None;
            writes.tier_history.push(TierHistoryRow {
                key: key.clone(),
                sequence: meta.sequence,
                change: if upgraded { "upgraded" } else { "downgraded" },
                from_tier: Some(from.clone()),
                to_tier: to.clone(),
                multiplier_bps: Some(tier.multiplier_bps),
                qualifying_points: *qualifying_points,
                at: *occurred_at,
                downgrade_after: None,
                program_version: Some(tier.program_version),
            });
            writes.touched(&["tier"]);
        }
        MemberEvent::TierGracePeriodStarted {
            tier: name,
            threshold_points,
            qualifying_points,
            as_of,
            downgrade_after,
        } => {
            tier.qualifying_points = *qualifying_points;
            tier.qualifying_as_of = *as_of;
            tier.grace_started_at = Some(*as_of);
            tier.grace_threshold_points = Some(*threshold_points);
            tier.downgrade_after = Some(*downgrade_after);
            writes.tier_history.push(TierHistoryRow {
                key: key.clone(),
                sequence: meta.sequence,
                change: "grace_started",
                from_tier: Some(name.clone()),
                to_tier: name.clone(),
                multiplier_bps: None,
                qualifying_points: *qualifying_points,
                at: *as_of,
                downgrade_after: Some(*downgrade_after),
                program_version: None,
            });
            writes.touched(&["tier"]);
        }
        MemberEvent::TierGracePeriodCleared {
            tier: name,
            qualifying_points,
            as_of,
        } => {
            tier.qualifying_points = *qualifying_points;
            tier.qualifying_as_of = *as_of;
            tier.grace_started_at = None;
            tier.grace_threshold_points = None;
            tier.downgrade_after = None;
            writes.tier_history.push(TierHistoryRow {
                key: key.clone(),
                sequence: meta.sequence,
                change: "grace_cleared",
                from_tier: Some(name.clone()),
                to_tier: name.clone(),
                multiplier_bps: None,
                qualifying_points: *qualifying_points,
                at: *as_of,
                downgrade_after: None,
                program_version: None,
            });
            writes.touched(&["tier"]);
        }
        MemberEvent::RewardRedeemed { .. }
        | MemberEvent::PointsAdjusted { .. }
        | MemberEvent::PointsExpired { .. } => {}
    }
    Ok(())
}

/// Applies one program event.
pub fn apply_program(org_id: &str, event: &ProgramEvent, writes: &mut Writes) -> Result<(), ApplyError> {
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
            writes.programs.insert(
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
            writes.locations.push(LocationRow {
                org_id: org_id.to_owned(),
                location_id: location_id.clone(),
                name: name.clone(),
                registered_at: *registered_at,
            });
        }
    }
    writes.touched(&["program"]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    #[test]
    fn period_keys_are_iso_week_month_and_all_in_utc() {
        // 2021-01-03 is a Sunday that belongs to ISO week 53 of 2020.
        let at = Utc.with_ymd_and_hms(2021, 1, 3, 23, 59, 59).unwrap();
        assert_eq!(
            period_keys(at).map(|(p, k)| format!("{p}:{k}")),
            ["week:2020-W53", "month:2021-01", "all:all"]
        );
        let monday = Utc.with_ymd_and_hms(2021, 1, 4, 0, 0, 0).unwrap();
        assert_eq!(period_keys(monday)[0].1, "2021-W01");
    }

    fn enrolled(key: &MemberKey) -> (MemberState, Writes) {
        let mut state = MemberState::default();
        let mut writes = Writes::default();
        let event = MemberEvent::MemberEnrolled {
            org_id: key.org_id.clone(),
            member_id: key.member_id,
            external_id: None,
            display_name: None,
            enrolled_at: Utc.timestamp_opt(0, 0).unwrap(),
            tier: "Bronze".into(),
            multiplier_bps: 10_000,
            program_version: 1,
        };
        apply_member(&mut state, key, &meta(1), &event, &mut writes).unwrap();
        (state, writes)
    }

    fn meta(sequence: i64) -> EventMeta {
        EventMeta {
            sequence,
            global_position: sequence,
            committed_at: Utc.timestamp_opt(0, 0).unwrap(),
        }
    }

    fn purchase(txn: &str, points: i64, balance_after: i64) -> MemberEvent {
        let at = Utc.with_ymd_and_hms(2024, 1, 3, 10, 0, 0).unwrap();
        MemberEvent::PurchaseRecorded {
            transaction_id: txn.into(),
            location_id: "shop".into(),
            amount_minor: points * 100,
            currency: "EUR".into(),
            occurred_at: at,
            program_version: 1,
            base_points: points,
            tier: "Bronze".into(),
            multiplier_bps: 10_000,
            points_earned: points,
            expires_at: Some(at + chrono::Duration::days(365)),
            balance_after,
            qualifying_points: points,
        }
    }

    #[test]
    fn events_of_a_member_that_is_not_enrolled_are_refused() {
        let key = MemberKey {
            org_id: "o".into(),
            member_id: Uuid::new_v4(),
        };
        let error = apply_member(
            &mut MemberState::default(),
            &key,
            &meta(1),
            &purchase("t", 10, 10),
            &mut Writes::default(),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "PurchaseRecorded for a member that is not enrolled"
        );
    }

    #[test]
    fn a_balance_after_that_disagrees_with_the_ledger_is_refused() {
        let key = MemberKey {
            org_id: "o".into(),
            member_id: Uuid::new_v4(),
        };
        let (mut state, _) = enrolled(&key);
        let mut writes = Writes::default();
        apply_member(&mut state, &key, &meta(2), &purchase("a", 10, 10), &mut writes).unwrap();
        assert_eq!(writes.journal.len(), 1);
        assert_eq!(writes.postings.iter().map(|p| p.delta).sum::<i64>(), 0);
        assert_eq!(writes.liability["o"], 10);
        let error = apply_member(
            &mut state,
            &key,
            &meta(3),
            &purchase("b", 10, 25),
            &mut Writes::default(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("balance_after 25"), "{error}");
        let error = apply_member(
            &mut state,
            &key,
            &meta(3),
            &purchase("a", 10, 20),
            &mut Writes::default(),
        )
        .unwrap_err();
        assert_eq!(error.to_string(), "purchase 'a' is already recorded");
    }

    #[test]
    fn a_refund_must_match_the_purchase_it_names() {
        let key = MemberKey {
            org_id: "o".into(),
            member_id: Uuid::new_v4(),
        };
        let (mut state, _) = enrolled(&key);
        apply_member(
            &mut state,
            &key,
            &meta(2),
            &purchase("a", 10, 10),
            &mut Writes::default(),
        )
        .unwrap();
        let at = Utc.with_ymd_and_hms(2024, 1, 3, 10, 0, 0).unwrap();
        let refund = |txn: &str, total: i64| MemberEvent::PurchaseRefunded {
            refund_id: "r".into(),
            transaction_id: txn.into(),
            location_id: "shop".into(),
            purchase_occurred_at: at,
            purchase_amount_minor: 1_000,
            purchase_points_earned: 10,
            amount_minor: 500,
            refunded_total_minor: total,
            points_clawed_back: 5,
            balance_after: 5,
            qualifying_points: 5,
            occurred_at: at,
        };
        let mut writes = Writes::default();
        let unknown = apply_member(
            &mut state.clone(),
            &key,
            &meta(3),
            &refund("zz", 500),
            &mut Writes::default(),
        );
        assert!(unknown.unwrap_err().to_string().contains("does not have"));
        let wrong_total = apply_member(
            &mut state.clone(),
            &key,
            &meta(3),
            &refund("a", 900),
            &mut Writes::default(),
        );
        assert!(wrong_total.unwrap_err().to_string().contains("does not match"));
        apply_member(&mut state, &key, &meta(3), &refund("a", 500), &mut writes).unwrap();
        let purchase = &state.purchases["a"];
        assert_eq!((purchase.refunded_minor, purchase.clawed_back), (500, 5));
        assert_eq!(state.balance.as_ref().unwrap().clawed_back, 5);
        // The clawback counts against the purchase's own location and periods.
        assert!(writes.leaderboard.iter().all(|(k, op)| op.delta == -5
            && ["", "shop"].contains(&k.location_id.as_str())
            && ["2024-W01", "2024-01", "all"].contains(&k.period_key.as_str())));
    }

    #[test]
    fn leaderboard_ops_merge_keeping_the_last_change() {
        let t = |s| Utc.timestamp_opt(s, 0).unwrap();
        let key = MemberKey {
            org_id: "o".into(),
            member_id: Uuid::nil(),
        };
        let mut writes = Writes::default();
        let meta = |p| EventMeta {
            sequence: p,
            global_position: p,
            committed_at: t(0),
        };
        leaderboard(&mut writes, &key, "l", t(100), 10, t(100), &meta(1));
        let mut later = Writes::default();
        leaderboard(&mut later, &key, "l", t(100), -10, t(200), &meta(2));
        leaderboard(&mut later, &key, "l", t(100), 0, t(300), &meta(3));
        writes.merge(later);
        let all = writes
            .leaderboard
            .iter()
            .find(|(k, _)| k.location_id.is_empty() && k.period == "all")
            .unwrap()
            .1;
        assert_eq!(
            all,
            &LeaderboardOp {
                delta: 0,
                first: (t(100), 1),
                changed: Some((t(200), 2)),
            }
        );
        assert_eq!(writes.leaderboard.len(), 6);
    }
}
