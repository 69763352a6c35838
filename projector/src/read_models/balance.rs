//! Balance and ledger: each member's balance with its counters and expiry lots
//! (`member_balances`, `member_lots`), and the double-entry journal of every points-moving event
//! (`journal_entries`, `postings`, `org_liability`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate as _;
use domain::ledger::{self, Account};
use domain::member::Lot;
use domain::points::CounterOverflow;
use domain::{MemberEvent, MemberKey, PointCounters};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{
    add, add_per_org, key_arrays, rows_of, EventMeta, MemberState, Mode, ReadModel, Touched, Writes,
};
use crate::event::ApplyError;

pub const BALANCE_TABLES: &[&str] = &["member_balances", "member_lots"];
pub const LEDGER_TABLES: &[&str] = &["journal_entries", "postings", "org_liability"];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BalanceRow {
    /// The balance and its running totals, moved by the domain's own rule.
    pub points: PointCounters,
    /// The domain's expiry lots, in the domain's order: all of them, or only those added after
    /// the stored ones when these were not read ([`StoredLots::Unread`]).
    pub lots: Vec<Lot>,
    pub stored: StoredLots,
}

/// What the batch knows of the lots `member_lots` held when it loaded the member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredLots {
    /// All read (none for a new member or a replay): only the rows that differ are written
    /// back.
    Read(Vec<Lot>),
    /// Not read, since no event of the batch takes from them (`domain::member::takes_from_lots`):
    /// a long history's lots cost a purchase nothing. `count` rows are stored before `lots`,
    /// and `next_expiry` is theirs.
    Unread {
        count: usize,
        next_expiry: Option<(i64, DateTime<Utc>)>,
    },
}

impl Default for StoredLots {
    fn default() -> Self {
        StoredLots::Read(Vec::new())
    }
}

impl BalanceRow {
    /// `(points, at)` of the lots that expire next, as `domain::Member::next_expiry` computes
    /// it, from the stored lots' own when they were not read.
    pub fn next_expiry(&self) -> Option<(i64, DateTime<Utc>)> {
        let stored = match &self.stored {
            StoredLots::Read(_) => None,
            StoredLots::Unread { next_expiry, .. } => *next_expiry,
        };
        domain::member::state::next_expiry_of(&self.lots, stored)
    }
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

/// The journal entries and postings a batch adds, and its change of each org's liability.
#[derive(Debug, Default)]
pub struct LedgerWrites {
    pub journal: Vec<JournalRow>,
    pub postings: Vec<PostingRow>,
    pub liability: BTreeMap<String, i64>,
}

impl LedgerWrites {
    pub fn merge(&mut self, other: LedgerWrites) {
        self.journal.extend(other.journal);
        self.postings.extend(other.postings);
        for (org, delta) in other.liability {
            *self.liability.entry(org).or_default() += delta;
        }
    }
}

/// An enrolment opens the balance; a points-moving event moves it, its lots and the ledger.
pub(super) fn apply(
    balance: &mut Option<BalanceRow>,
    key: &MemberKey,
    meta: &EventMeta,
    event: &MemberEvent,
    writes: &mut Writes,
) -> Result<(), ApplyError> {
    let (balance_after, occurred_at, reference) = match event {
        MemberEvent::MemberEnrolled { .. } => {
            *balance = Some(BalanceRow::default());
            // Every org with members has a liability row, even while it is 0.
            writes.ledger.liability.entry(key.org_id.clone()).or_default();
            writes.touched(&[ReadModel::Balance]);
            return Ok(());
        }
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
        MemberEvent::AchievementUnlocked {
            balance_after,
            occurred_at,
            achievement_id,
            ..
        } => (*balance_after, *occurred_at, Some(achievement_id.clone())),
        _ => return Ok(()),
    };
    let Some(row) = balance.as_mut() else {
        return Err(ApplyError::Invalid("no balance row".into()));
    };
    let delta = ledger::points_delta(event);
    let balance = add(row.points.balance, delta, "balance")?;
    if balance != balance_after {
        return Err(ApplyError::Invalid(format!(
            "{} says balance_after {balance_after}, but the read model's balance {} moved by {delta} is {balance}",
            event.type_name(),
            row.points.balance
        )));
    }
    let points = row
        .points
        .after(event)
        .map_err(|CounterOverflow(counter)| ApplyError::Overflow(counter))?;
    if matches!(row.stored, StoredLots::Unread { .. }) && domain::member::takes_from_lots(event) {
        // The batch decides which lots to read from its events before loading: a bug if so.
        return Err(ApplyError::Invalid(format!(
            "{} takes from lots the batch did not read",
            event.type_name()
        )));
    }
    // The lots follow the domain's own rules (credit repays a negative balance first, debits
    // take the soonest-expiring lot first, expiry drops expired lots): apply the event to a
    // domain Member holding just the counters and lots.
    let mut member = domain::Member {
        points: row.points,
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
    row.points = points;

    if delta != 0 {
        writes.ledger.journal.push(JournalRow {
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
            writes.ledger.postings.push(PostingRow {
                key: key.clone(),
                sequence: meta.sequence,
                account: posting.account,
                delta: posting.delta,
            });
        }
        let liability = writes.ledger.liability.entry(key.org_id.clone()).or_default();
        *liability = add(*liability, delta, "liability")?;
    }
    writes.touched(&[ReadModel::Balance, ReadModel::Ledger]);
    Ok(())
}

/// Loads the balances of the members `keys` names, and the lots of those in `read_lots` (the
/// others' lots stay [`StoredLots::Unread`]).
pub(super) async fn load(
    conn: &mut PgConnection,
    (orgs, ids): &(Vec<String>, Vec<Uuid>),
    read_lots: &BTreeSet<MemberKey>,
    states: &mut HashMap<MemberKey, MemberState>,
) -> anyhow::Result<()> {
    let key = |org_id: String, member_id: Uuid| MemberKey { org_id, member_id };
    type BalanceTuple = (
        String,
        Uuid,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        Option<i64>,
        Option<DateTime<Utc>>,
        i32,
    );
    // Lot numbers run from 0 without gaps: the last one (a probe of the primary key) counts
    // them.
    let rows: Vec<BalanceTuple> = sqlx::query_as(
        "SELECT b.org_id, b.member_id, balance, lifetime_earned, redeemed, expired, clawed_back, adjusted, \
                next_expiry_points, next_expiry_at, \
                coalesce((SELECT l.lot_no + 1 FROM member_lots l \
                          WHERE l.org_id = b.org_id AND l.member_id = b.member_id \
                          ORDER BY l.lot_no DESC LIMIT 1), 0) \
         FROM member_balances b JOIN rm.member_keys($1, $2) AS k(org_id, member_id) \
         USING (org_id, member_id)",
    )
    .bind(orgs)
    .bind(ids)
    .fetch_all(&mut *conn)
    .await
    .context("loading member_balances")?;
    for row in rows {
        let (org, id, balance, lifetime_earned, redeemed, expired, clawed_back, adjusted) =
            (row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7);
        let (next_points, next_at, count) = (row.8, row.9, row.10);
        let member = key(org, id);
        let stored = if read_lots.contains(&member) {
            StoredLots::Read(Vec::new())
        } else {
            StoredLots::Unread {
                count: usize::try_from(count).context("a negative lot number")?,
                next_expiry: next_points.zip(next_at),
            }
        };
        if let Some(state) = states.get_mut(&member) {
            state.balance = Some(BalanceRow {
                points: PointCounters {
                    balance,
                    lifetime_earned,
                    redeemed,
                    expired,
                    clawed_back,
                    adjusted,
                },
                lots: Vec::new(),
                stored,
            });
        }
    }

    let (orgs, ids) = key_arrays(read_lots.iter().filter(|member| {
        states
            .get(*member)
            .and_then(|state| state.balance.as_ref())
            .is_some()
    }));
    if orgs.is_empty() {
        return Ok(());
    }
    type LotTuple = (String, Uuid, DateTime<Utc>, Option<DateTime<Utc>>, i64);
    let rows: Vec<LotTuple> = sqlx::query_as(
        "SELECT l.org_id, l.member_id, earned_at, expires_at, remaining \
         FROM member_lots l JOIN rm.member_keys($1, $2) AS k(org_id, member_id) \
         USING (org_id, member_id) ORDER BY l.org_id, l.member_id, l.lot_no",
    )
    .bind(&orgs)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .context("loading member_lots")?;
    for (org, id, earned_at, expires_at, remaining) in rows {
        if let Some(balance) = states.get_mut(&key(org, id)).and_then(|s| s.balance.as_mut()) {
            balance.lots.push(Lot {
                earned_at,
                expires_at,
                remaining,
            });
        }
    }
    for balance in states.values_mut().filter_map(|s| s.balance.as_mut()) {
        if let StoredLots::Read(stored) = &mut balance.stored {
            stored.clone_from(&balance.lots);
        }
    }
    Ok(())
}

/// Writes the balances and lots of the touched members.
pub(super) async fn flush(conn: &mut PgConnection, touched: &Touched<'_>, mode: Mode) -> anyhow::Result<()> {
    let rows = rows_of(touched, |s| s.balance.as_ref());
    if rows.is_empty() {
        return Ok(());
    }
    let (orgs, ids) = key_arrays(rows.iter().map(|(k, _)| *k));
    let col = |f: fn(&PointCounters) -> i64| rows.iter().map(|(_, b)| f(&b.points)).collect::<Vec<i64>>();
    let next: Vec<Option<(i64, DateTime<Utc>)>> = rows.iter().map(|(_, b)| b.next_expiry()).collect();
    sqlx::query(&format!(
        "INSERT INTO member_balances (org_id, member_id, balance, lifetime_earned, redeemed, expired, \
         clawed_back, adjusted, next_expiry_points, next_expiry_at) \
         SELECT * FROM unnest($1::text[], $2::uuid[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], \
         $7::bigint[], $8::bigint[], $9::bigint[], $10::timestamptz[]){}",
        mode.on_conflict(
            "(org_id, member_id) DO UPDATE SET balance = excluded.balance, \
             lifetime_earned = excluded.lifetime_earned, redeemed = excluded.redeemed, expired = excluded.expired, \
             clawed_back = excluded.clawed_back, adjusted = excluded.adjusted, \
             next_expiry_points = excluded.next_expiry_points, next_expiry_at = excluded.next_expiry_at"
        )
    ))
    .bind(&orgs)
    .bind(&ids)
    .bind(col(|b| b.balance))
    .bind(col(|b| b.lifetime_earned))
    .bind(col(|b| b.redeemed))
    .bind(col(|b| b.expired))
    .bind(col(|b| b.clawed_back))
    .bind(col(|b| b.adjusted))
    .bind(next.iter().map(|n| n.map(|(p, _)| p)).collect::<Vec<_>>())
    .bind(next.iter().map(|n| n.map(|(_, at)| at)).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await
    .context("writing member_balances")?;
    flush_lots(conn, &rows, mode).await
}

/// Lots only change at their ends in the common case (a purchase appends one, a redemption
/// draws down the first): rewrite from the first lot that differs from the stored row, and
/// drop stored rows past the new end, instead of rewriting every lot of the member.
async fn flush_lots(
    conn: &mut PgConnection,
    rows: &[(&MemberKey, &BalanceRow)],
    mode: Mode,
) -> anyhow::Result<()> {
    let mut lots = LotColumns::default();
    let (mut cut_orgs, mut cut_ids, mut cut_from) = (Vec::new(), Vec::new(), Vec::new());
    for (key, balance) in rows {
        // `lots[i]` is row `first + i`; rows before `first + same` are unchanged.
        let (first, same) = match &balance.stored {
            StoredLots::Read(stored) => {
                if stored.len() > balance.lots.len() {
                    cut_orgs.push(key.org_id.clone());
                    cut_ids.push(key.member_id);
                    cut_from.push(i32::try_from(balance.lots.len()).context("too many lots")?);
                }
                let same = balance
                    .lots
                    .iter()
                    .zip(stored)
                    .take_while(|(new, old)| new == old)
                    .count();
                (0, same)
            }
            StoredLots::Unread { count, .. } => (*count, 0),
        };
        for (i, lot) in balance.lots.iter().enumerate().skip(same) {
            lots.org.push(key.org_id.clone());
            lots.member.push(key.member_id);
            lots.no.push(i32::try_from(first + i).context("too many lots")?);
            lots.earned_at.push(lot.earned_at);
            lots.expires_at.push(lot.expires_at);
            lots.remaining.push(lot.remaining);
        }
    }
    if !cut_orgs.is_empty() {
        sqlx::query(
            "DELETE FROM member_lots l USING public.lot_cuts($1, $2, $3) AS k(org_id, member_id, from_no) \
             WHERE l.org_id = k.org_id AND l.member_id = k.member_id AND l.lot_no >= k.from_no",
        )
        .bind(&cut_orgs)
        .bind(&cut_ids)
        .bind(&cut_from)
        .execute(&mut *conn)
        .await
        .context("dropping spent member_lots")?;
    }
    if !lots.org.is_empty() {
        sqlx::query(&format!(
            "INSERT INTO member_lots (org_id, member_id, lot_no, earned_at, expires_at, remaining) \
             SELECT * FROM unnest($1::text[], $2::uuid[], $3::int[], $4::timestamptz[], $5::timestamptz[], $6::bigint[]){}",
            mode.on_conflict(
                "(org_id, member_id, lot_no) DO UPDATE SET earned_at = excluded.earned_at, \
                 expires_at = excluded.expires_at, remaining = excluded.remaining"
            )
        ))
        .bind(&lots.org)
        .bind(&lots.member)
        .bind(&lots.no)
        .bind(&lots.earned_at)
        .bind(&lots.expires_at)
        .bind(&lots.remaining)
        .execute(&mut *conn)
        .await
        .context("writing member_lots")?;
    }
    Ok(())
}

#[derive(Default)]
struct LotColumns {
    org: Vec<String>,
    member: Vec<Uuid>,
    no: Vec<i32>,
    earned_at: Vec<DateTime<Utc>>,
    expires_at: Vec<Option<DateTime<Utc>>>,
    remaining: Vec<i64>,
}

/// Writes the journal entries and postings, and adds to the orgs' liabilities.
pub(super) async fn flush_ledger(conn: &mut PgConnection, ledger: &LedgerWrites) -> anyhow::Result<()> {
    if !ledger.journal.is_empty() {
        let j = &ledger.journal;
        let (orgs, ids) = key_arrays(j.iter().map(|r| &r.key));
        sqlx::query(
            "INSERT INTO journal_entries (org_id, member_id, sequence, global_position, event_type, reference, \
             points_delta, balance_after, occurred_at, committed_at) \
             SELECT * FROM unnest($1::text[], $2::uuid[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], \
             $7::bigint[], $8::bigint[], $9::timestamptz[], $10::timestamptz[])",
        )
        .bind(&orgs)
        .bind(&ids)
        .bind(j.iter().map(|r| r.sequence).collect::<Vec<_>>())
        .bind(j.iter().map(|r| r.global_position).collect::<Vec<_>>())
        .bind(j.iter().map(|r| r.event_type).collect::<Vec<_>>())
        .bind(j.iter().map(|r| r.reference.clone()).collect::<Vec<_>>())
        .bind(j.iter().map(|r| r.points_delta).collect::<Vec<_>>())
        .bind(j.iter().map(|r| r.balance_after).collect::<Vec<_>>())
        .bind(j.iter().map(|r| r.occurred_at).collect::<Vec<_>>())
        .bind(j.iter().map(|r| r.committed_at).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await
        .context("writing journal_entries")?;
    }
    if !ledger.postings.is_empty() {
        let p = &ledger.postings;
        let (orgs, ids) = key_arrays(p.iter().map(|r| &r.key));
        sqlx::query(
            "INSERT INTO postings (org_id, member_id, sequence, account, delta) \
             SELECT * FROM unnest($1::text[], $2::uuid[], $3::bigint[], $4::text[], $5::bigint[])",
        )
        .bind(&orgs)
        .bind(&ids)
        .bind(p.iter().map(|r| r.sequence).collect::<Vec<_>>())
        .bind(p.iter().map(|r| r.account.as_str()).collect::<Vec<_>>())
        .bind(p.iter().map(|r| r.delta).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await
        .context("writing postings")?;
    }
    Ok(())
}

/// Adds the batch's liability changes to its orgs' (a per-org row: [`super::flush`] writes
/// those last).
pub(super) async fn flush_liability(conn: &mut PgConnection, ledger: &LedgerWrites) -> anyhow::Result<()> {
    add_per_org(conn, "org_liability", "points", ledger.liability.iter()).await
}
