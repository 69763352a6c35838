//! The read models of SPEC §6, one module each. A module owns its rows (what a batch holds in
//! memory), its apply (what a member or program event does to them) and its flush (the SQL that
//! writes them back, in set-based statements: arrays bound as parameters and `unnest`ed).
//! Rows to insert are unnested in the select list (`SELECT unnest($1), unnest($2), …`, which
//! Postgres streams), not `FROM unnest($1, $2, …)`, which it first copies whole into a
//! tuplestore: half the executor time per row (BENCHMARKS.md).
//!
//! - [`balance`]: balances, expiry lots and the double-entry ledger (journal, postings, liability);
//! - [`tier`]: current tiers and their history;
//! - [`stamps`]: stamp cards and the rewards they issued;
//! - [`rfm`]: purchases (the raw data), per-member and per-org aggregates, scores and segments;
//! - [`leaderboard`]: points per org, location and period (current and closed periods);
//! - [`directory`]: who is enrolled;
//! - [`program`]: each org's current program (its promotions, time zone and cap) and locations;
//! - [`promotions`]: what each promotion awarded, per use, in total and per day;
//! - [`achievements`]: each member's progress and badges, and unlocks per week.
//!
//! This module ties them together for one batch: [`MemberState`] (the rows of one member that
//! events modify in place, loaded before and written back after), [`Writes`] (the rows a batch
//! adds and the increments it makes), [`load_members`] and [`flush`].
//!
//! Applying an event is pure: it changes this state or fails with an [`ApplyError`] and changes
//! nothing. The same code serves the live consumer and the audit replay.
//!
//! Table names are unqualified: the caller's transaction sets `search_path` to the read-model
//! schema (`rm` live, a scratch schema during an audit).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use domain::member::Lots;
use domain::{MemberEvent, ProgramEvent};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::chain::Chain;
use crate::event::ApplyError;
use crate::progress::{self, Progress};
use domain::MemberKey;

pub mod achievements;
pub mod balance;
pub mod directory;
pub mod leaderboard;
pub mod program;
pub mod promotions;
pub mod rfm;
pub mod stamps;
pub mod tier;

#[cfg(test)]
mod tests;

/// A read model, as the metrics name it (`projector_events_applied_total{read_model}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReadModel {
    Balance,
    Ledger,
    Tier,
    Stamps,
    Rfm,
    Leaderboard,
    Directory,
    Program,
    Promotions,
    Achievements,
}

impl ReadModel {
    pub const ALL: [ReadModel; 10] = [
        ReadModel::Balance,
        ReadModel::Ledger,
        ReadModel::Tier,
        ReadModel::Stamps,
        ReadModel::Rfm,
        ReadModel::Leaderboard,
        ReadModel::Directory,
        ReadModel::Program,
        ReadModel::Promotions,
        ReadModel::Achievements,
    ];

    /// The name in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadModel::Balance => "balance",
            ReadModel::Ledger => "ledger",
            ReadModel::Tier => "tier",
            ReadModel::Stamps => "stamps",
            ReadModel::Rfm => "rfm",
            ReadModel::Leaderboard => "leaderboard",
            ReadModel::Directory => "directory",
            ReadModel::Program => "program",
            ReadModel::Promotions => "promotions",
            ReadModel::Achievements => "achievements",
        }
    }

    /// The tables of the read-model schema that hold it.
    pub fn tables(self) -> &'static [&'static str] {
        match self {
            ReadModel::Balance => balance::BALANCE_TABLES,
            ReadModel::Ledger => balance::LEDGER_TABLES,
            ReadModel::Tier => tier::TABLES,
            ReadModel::Stamps => stamps::TABLES,
            ReadModel::Rfm => rfm::TABLES,
            ReadModel::Leaderboard => leaderboard::TABLES,
            ReadModel::Directory => directory::TABLES,
            ReadModel::Program => program::TABLES,
            ReadModel::Promotions => promotions::TABLES,
            ReadModel::Achievements => achievements::TABLES,
        }
    }
}

impl std::fmt::Display for ReadModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an event sits in the log.
#[derive(Debug, Clone)]
pub struct EventMeta {
    pub sequence: i64,
    pub global_position: i64,
    pub committed_at: DateTime<Utc>,
}

/// The rows of one member that events modify in place. `purchases` holds the purchases the
/// batch's events name (all of the member's in the audit's fold).
#[derive(Debug, Clone, Default)]
pub struct MemberState {
    pub balance: Option<balance::BalanceRow>,
    pub tier: Option<tier::TierRow>,
    pub stamps: BTreeMap<String, stamps::StampRow>,
    pub purchases: BTreeMap<String, rfm::PurchaseRow>,
    /// The promotions the member has used (a first use counts a new member of the promotion).
    pub promotions: BTreeSet<String>,
    /// Progress and unlocks per achievement.
    pub achievements: BTreeMap<String, achievements::AchievementRow>,
    /// Current leaderboard scores per location (`""`: org-wide).
    pub leaderboard: BTreeMap<String, leaderboard::BoardRow>,
    /// Some event of this batch was applied to the member: its rows are written back.
    pub touched: bool,
}

/// Rows a batch adds, and increments it makes, outside the loaded member rows.
#[derive(Debug, Default)]
pub struct Writes {
    pub directory: Vec<directory::DirectoryRow>,
    pub ledger: balance::LedgerWrites,
    pub tier_history: Vec<tier::TierHistoryRow>,
    pub stamp_rewards: Vec<stamps::StampRewardRow>,
    pub rfm: rfm::RfmWrites,
    pub leaderboard: leaderboard::LeaderboardWrites,
    pub program: program::ProgramWrites,
    pub promotions: promotions::PromotionWrites,
    pub achievements: achievements::AchievementWrites,
    pub progress: Progress,
    /// Events applied per read model, for the metrics.
    pub applied: BTreeMap<ReadModel, u64>,
}

impl Writes {
    /// Adds `other` (the effects of a later event) to `self`.
    pub fn merge(&mut self, other: Writes) {
        self.directory.extend(other.directory);
        self.ledger.merge(other.ledger);
        self.tier_history.extend(other.tier_history);
        self.stamp_rewards.extend(other.stamp_rewards);
        self.rfm.merge(other.rfm);
        self.leaderboard.merge(other.leaderboard);
        self.program.merge(other.program);
        self.promotions.merge(other.promotions);
        self.achievements.merge(other.achievements);
        self.progress.merge(other.progress);
        for (model, n) in other.applied {
            *self.applied.entry(model).or_default() += n;
        }
    }

    /// Counts one applied event for each of `models`.
    pub(crate) fn touched(&mut self, models: &[ReadModel]) {
        for model in models {
            *self.applied.entry(*model).or_default() += 1;
        }
    }
}

pub(crate) fn add(a: i64, b: i64, what: &'static str) -> Result<i64, ApplyError> {
    a.checked_add(b).ok_or(ApplyError::Overflow(what))
}

pub(crate) fn to_i32(value: u32, what: &'static str) -> Result<i32, ApplyError> {
    i32::try_from(value).map_err(|_| ApplyError::Overflow(what))
}

pub(crate) fn to_i64(value: u64, what: &'static str) -> Result<i64, ApplyError> {
    i64::try_from(value).map_err(|_| ApplyError::Overflow(what))
}

/// Applies one member event to `state` (the member's rows) and `writes`, read model by read
/// model. The first error wins, so the order below is the order of the checks.
fn apply_member(
    state: &mut MemberState,
    key: &MemberKey,
    meta: &EventMeta,
    event: &MemberEvent,
    writes: &mut Writes,
) -> Result<(), ApplyError> {
    if let MemberEvent::MemberEnrolled {
        org_id, member_id, ..
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
    } else if state.balance.is_none() || state.tier.is_none() {
        return Err(ApplyError::Invalid(format!(
            "{} for a member that is not enrolled",
            event.type_name()
        )));
    }
    balance::apply(&mut state.balance, key, meta, event, writes)?;
    rfm::apply(&mut state.purchases, key, event, writes)?;
    tier::apply(&mut state.tier, key, meta, event, writes)?;
    stamps::apply(&mut state.stamps, key, event, writes)?;
    leaderboard::apply(&mut state.leaderboard, key, meta, event, writes)?;
    promotions::apply(&mut state.promotions, key, event, writes)?;
    achievements::apply(&mut state.achievements, key, event, writes)?;
    directory::apply(key, event, writes);
    Ok(())
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
        // A member's purchases and lots can be many (the audit folds whole histories) and an
        // event touches few of them: only those are saved for the undo, the rest is small.
        let purchases = std::mem::take(&mut self.purchases);
        let lots = self.balance.as_mut().map(|b| {
            let lots = std::mem::take(&mut b.lots);
            let saved = lots.save_for(event);
            (lots, std::mem::take(&mut b.stored.read), saved)
        });
        let mut trial = MemberState {
            purchases,
            ..self.clone()
        };
        let (read, saved) = match (lots, trial.balance.as_mut()) {
            (Some((lots, read, saved)), Some(balance)) => {
                balance.lots = lots;
                (Some(read), Some(saved))
            }
            _ => (None, None),
        };
        let purchase = match event {
            MemberEvent::PurchaseRecorded { transaction_id, .. }
            | MemberEvent::PurchaseRefunded { transaction_id, .. } => {
                Some((transaction_id, trial.purchases.get(transaction_id).cloned()))
            }
            _ => None,
        };
        let mut effects = Writes::default();
        let outcome = apply_member(&mut trial, key, meta, event, &mut effects);
        // The stored lots as read are never changed by an event.
        let put_back = |state: &mut MemberState, read: Option<Lots>| {
            if let (Some(balance), Some(read)) = (state.balance.as_mut(), read) {
                balance.stored.read = read;
            }
        };
        match outcome {
            Ok(()) => {
                trial.touched = true;
                *self = trial;
                put_back(self, read);
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
                if let (Some(balance), Some(mut lots), Some(saved)) =
                    (self.balance.as_mut(), trial.balance.map(|b| b.lots), saved)
                {
                    lots.restore(saved);
                    balance.lots = lots;
                }
                put_back(self, read);
                Err(error)
            }
        }
    }
}

/// Applies one program event all or nothing: on error `writes` is as before.
pub fn apply_program(org_id: &str, event: &ProgramEvent, writes: &mut Writes) -> Result<(), ApplyError> {
    let mut effects = Writes::default();
    program::apply(org_id, event, &mut effects)?;
    writes.merge(effects);
    Ok(())
}

/// The keys of some members as two parallel arrays, to bind and `unnest`.
pub(crate) fn key_arrays<'a>(keys: impl Iterator<Item = &'a MemberKey>) -> (Vec<String>, Vec<Uuid>) {
    keys.map(|k| (k.org_id.clone(), k.member_id)).unzip()
}

/// What puts a row of a read of [`load_members`] into its member's state.
type Loaded = fn(&str, &mut HashMap<MemberKey, MemberState>) -> serde_json::Result<()>;

/// The reads of [`load_members`], each with what puts its rows into the members' states
/// (`None`: the first lots, used once every balance is in). Parameters: the members' keys
/// (`$1, $2`), the purchases named (`$3, $4, $5`), the members whose lots are taken from
/// (`$6, $7`) and how many of their lots to read first (`$8`).
const READS: [(&str, Option<Loaded>); 8] = [
    (balance::LOAD, Some(balance::loaded as Loaded)),
    (balance::LOAD_FIRST_LOTS, None),
    (tier::LOAD, Some(tier::loaded as Loaded)),
    (stamps::LOAD, Some(stamps::loaded as Loaded)),
    (rfm::LOAD, Some(rfm::loaded as Loaded)),
    (promotions::LOAD, Some(promotions::loaded as Loaded)),
    (achievements::LOAD, Some(achievements::loaded as Loaded)),
    (leaderboard::LOAD, Some(leaderboard::loaded as Loaded)),
];

/// [`READS`] in one statement (every round trip of a batch waits for a busy core), each row a
/// JSON array tagged by the index of its read.
static LOAD: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let union: Vec<String> = READS
        .iter()
        .enumerate()
        .map(|(i, (read, _))| format!("SELECT {i}, r.* FROM ({read}) r"))
        .collect();
    format!(
        "WITH RECURSIVE {} {}",
        promotions::LOAD_WITH,
        union.join(" UNION ALL ")
    )
});

/// Loads the rows of `members`, the purchases named in `purchases` (those the batch records
/// or refunds), and of the members in `lots_taken` as many of their first lots as the batch's
/// events take from (the others' lots stay unread).
pub async fn load_members(
    conn: &mut PgConnection,
    members: &[MemberKey],
    lots_taken: &BTreeMap<MemberKey, balance::LotsTaken>,
    purchases: &[(MemberKey, String)],
) -> anyhow::Result<HashMap<MemberKey, MemberState>> {
    let mut states: HashMap<MemberKey, MemberState> = members
        .iter()
        .map(|k| (k.clone(), MemberState::default()))
        .collect();
    if members.is_empty() {
        return Ok(states);
    }
    let (orgs, ids) = key_arrays(members.iter());
    let (purchase_orgs, purchase_ids) = key_arrays(purchases.iter().map(|(k, _)| k));
    let transactions: Vec<&str> = purchases.iter().map(|(_, t)| t.as_str()).collect();
    let (lot_orgs, lot_ids) = key_arrays(lots_taken.keys());
    let rows: Vec<(i32, String)> = sqlx::query_as(&LOAD)
        .bind(&orgs)
        .bind(&ids)
        .bind(&purchase_orgs)
        .bind(&purchase_ids)
        .bind(&transactions)
        .bind(&lot_orgs)
        .bind(&lot_ids)
        .bind(balance::FIRST_LOTS)
        .fetch_all(&mut *conn)
        .await
        .context("loading the batch's members")?;
    let mut first_lots = Vec::new();
    for (read, row) in rows {
        let loaded = usize::try_from(read)
            .ok()
            .and_then(|i| READS.get(i))
            .with_context(|| format!("a row of an unknown read {read}"))?
            .1;
        match loaded {
            Some(loaded) => loaded(&row, &mut states),
            None => serde_json::from_str(&row).map(|lot| first_lots.push(lot)),
        }
        .with_context(|| format!("decoding a row of read {read}: {row}"))?;
    }
    balance::load_lots(conn, lots_taken, first_lots, &mut states).await?;
    Ok(states)
}

/// The rows of the members some event of the batch was applied to.
pub(crate) type Touched<'a> = [(&'a MemberKey, &'a MemberState)];

/// The touched members that have a row of one read model (`row` picks it), with their keys.
pub(crate) fn rows_of<'a, R>(
    touched: &Touched<'a>,
    row: impl Fn(&'a MemberState) -> Option<&'a R>,
) -> Vec<(&'a MemberKey, &'a R)> {
    touched.iter().filter_map(|(k, s)| Some((*k, row(s)?))).collect()
}

/// Adds per-org increments to a per-org counter: `table (org_id, column)` gains each delta.
pub(crate) fn add_per_org<'a>(
    per_org: &mut Chain,
    table: &'static str,
    column: &str,
    increments: impl Iterator<Item = (&'a String, &'a i64)>,
) {
    let (orgs, deltas): (Vec<String>, Vec<i64>) = increments.map(|(o, d)| (o.clone(), *d)).unzip();
    if orgs.is_empty() {
        return;
    }
    per_org
        .write(
            table,
            &format!(
                "INSERT INTO {table} AS t (org_id, {column}) SELECT unnest($1::text[]), unnest($2::bigint[]) \
                 ON CONFLICT (org_id) DO UPDATE SET {column} = t.{column} + excluded.{column}"
            ),
        )
        .bind(orgs)
        .bind(deltas);
}

/// Writes the batch back, and tells the caches of read models which members it changed
/// (`announce`, delivered when the transaction commits: `common::projected`). Returns how many
/// events were newly parked (a redelivered parked event is not parked twice).
///
/// Three round trips whatever the batch holds ([`Chain`]), in this order:
/// - the programs, in statements of their own (each replaces an org's rows: delete, then
///   insert), only when the batch changes one;
/// - every member row and addition in one statement (no two of them touch one row; a member
///   whose first lots were spent then has its next expiry read back from the lots written, one
///   more statement);
/// - the parked events and checkpoints, then the per-org rows (liability, RFM versions,
///   promotion and achievement counts, each in key order), in one statement last. Batches of
///   disjoint members run side by side (`crate::batch`), and the per-org rows are the only rows
///   two of them write: written last, a batch waits for the other's commit only at its very
///   end, and the one order of locking means two batches never deadlock.
pub async fn flush(
    conn: &mut PgConnection,
    members: &HashMap<MemberKey, MemberState>,
    writes: &Writes,
    mode: Mode,
    announce: &[MemberKey],
) -> anyhow::Result<u64> {
    let touched: Vec<(&MemberKey, &MemberState)> = members.iter().filter(|(_, s)| s.touched).collect();
    program::flush(conn, &writes.program).await?;

    let mut rows = Chain::new();
    balance::flush(&mut rows, &touched, mode);
    tier::flush(&mut rows, &touched, mode);
    stamps::flush(&mut rows, &touched, mode);
    rfm::flush(&mut rows, &touched, &writes.rfm, mode);
    balance::flush_ledger(&mut rows, &writes.ledger);
    directory::flush(&mut rows, &writes.directory);
    tier::flush_history(&mut rows, &writes.tier_history);
    stamps::flush_rewards(&mut rows, &writes.stamp_rewards);
    leaderboard::flush_current(&mut rows, &touched, mode);
    leaderboard::flush_closed(&mut rows, &writes.leaderboard, mode);
    promotions::flush(&mut rows, &writes.promotions);
    achievements::flush(&mut rows, &touched, mode);
    rows.execute(conn).await?;
    balance::flush_next_expiry(conn, &touched).await?;

    let mut last = Chain::new();
    let parked = progress::flush(&mut last, &writes.progress, mode);
    rfm::flush_per_org(&mut last, &writes.rfm);
    balance::flush_liability(&mut last, &writes.ledger);
    promotions::flush_per_org(&mut last, &writes.promotions);
    achievements::flush_per_org(&mut last, &writes.achievements);
    if !announce.is_empty() {
        last.select(
            "the announcement of the members changed",
            "SELECT count(pg_notify($1, p)) FROM unnest($2::text[]) p",
        )
        .bind(common::projected::MEMBERS_CHANNEL)
        .bind(common::projected::payloads(announce));
    }
    let returned = last.execute(conn).await?;
    Ok(parked.map_or(0, |n| u64::try_from(n.of(&returned)).unwrap_or(0)))
}

/// How [`flush`] writes member, leaderboard and progress rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The rows may exist (live batches): upserts and increments.
    Upsert,
    /// Each of these rows is written exactly once, whole, into tables that start empty (the
    /// audit's fold of complete aggregates): plain inserts, so the tables need no index while
    /// loading, and `rfm_members` is left to [`rfm::write_members`] at the end. The per-org
    /// rows (liability, RFM versions, programs) are still upserted.
    Append,
}

impl Mode {
    pub(crate) fn on_conflict(self, clause: &str) -> String {
        match self {
            Mode::Upsert => format!(" ON CONFLICT {clause}"),
            Mode::Append => String::new(),
        }
    }
}
