//! Balance and ledger: each member's balance with its counters and expiry lots
//! (`member_balances`, `member_lots`), and the double-entry journal of every points-moving event
//! (`journal_entries`, `postings`, `org_liability`).

use std::collections::{BTreeMap, HashMap};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate as _;
use domain::ledger::{self, Account};
use domain::member::{LotKey, Lots, Take};
use domain::points::CounterOverflow;
use domain::{MemberEvent, MemberKey, PointCounters};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{
    add, add_per_org, key_arrays, rows_of, EventMeta, MemberState, Mode, ReadModel, Touched, Writes,
};
use crate::chain::Chain;
use crate::event::ApplyError;

pub const BALANCE_TABLES: &[&str] = &["member_balances", "member_lots"];
pub const LEDGER_TABLES: &[&str] = &["journal_entries", "postings", "org_liability"];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BalanceRow {
    /// The balance and its running totals, moved by the domain's own rule.
    pub points: PointCounters,
    /// The domain's lots as far as the batch knows them: the stored lots it read, moved by its
    /// events, and the points its events credited to lots it did not read.
    pub lots: Lots,
    pub stored: StoredLots,
}

/// `(points, at)` of the lots that expire next, if any do.
pub type NextExpiry = Option<(i64, DateTime<Utc>)>;

/// What the batch knows of the lots `member_lots` held when it loaded the member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredLots {
    /// The stored lots it read, as read.
    pub read: Lots,
    pub through: Through,
    /// The stored next expiry, which stands for the lots not read.
    pub next_expiry: NextExpiry,
}

/// How far, in the order debits take lots, the stored lots were read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Through {
    /// None: no event of the batch takes from them (`domain::member::takes_from_lots`), so a
    /// long history's lots cost a purchase nothing.
    Nothing,
    /// The first ones, through this lot: all that the batch's events take from.
    Lot(LotKey),
    /// All (none for a new member or a replay).
    #[default]
    All,
}

impl Through {
    /// Whether the lots read hold all of `take`, with `lots` as the batch knows them now.
    fn holds(self, lots: &Lots, take: Take) -> bool {
        match self {
            Through::Nothing => take.within(0, None),
            Through::Lot(last) => take.within(lots.through(last).map(|(_, p)| p).sum(), Some(last)),
            Through::All => true,
        }
    }
}

/// What a batch's events take from one member's lots, together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LotsTaken {
    pub points: i64,
    pub due_by: Option<DateTime<Utc>>,
}

impl LotsTaken {
    pub fn add(&mut self, take: Take) {
        match take {
            Take::Points(points) => self.points = self.points.saturating_add(points),
            Take::DueBy(as_of) => self.due_by = self.due_by.max(Some(as_of)),
        }
    }

    /// Whether lots read through `last`, holding `points` points, hold all of it.
    fn within(self, points: i64, last: LotKey) -> bool {
        Take::Points(self.points).within(points, Some(last))
            && self
                .due_by
                .is_none_or(|as_of| Take::DueBy(as_of).within(points, Some(last)))
    }
}

impl BalanceRow {
    /// `(points, at)` of the lots that expire next, as `domain::Member::next_expiry` computes
    /// it; `None` when only the stored lots can tell (the first lots were read and spent).
    pub fn next_expiry(&self) -> Option<NextExpiry> {
        match self.stored.through {
            Through::All => Some(self.lots.next_expiry(None)),
            Through::Nothing => Some(self.lots.next_expiry(self.stored.next_expiry)),
            Through::Lot(last) => {
                // Exact when the first lot known was read and every lot expiring with it too:
                // every lot not read comes after `last`.
                let first = self.lots.first().filter(|first| *first <= last)?;
                let sooner = match (first.expires_at, last.expires_at) {
                    (None, _) => true,
                    (Some(first), Some(last)) => first < last,
                    (Some(_), None) => true,
                };
                sooner.then(|| self.lots.next_expiry(None))
            }
        }
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
    if let Some(take) = domain::member::takes_from_lots(event) {
        if !row.stored.through.holds(&row.lots, take) {
            // The batch decides which lots to read from its events before loading: a bug if so.
            return Err(ApplyError::Invalid(format!(
                "{} takes from lots the batch did not read",
                event.type_name()
            )));
        }
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
    // Back before any error: the caller undoes the event's change of the lots, not their loss.
    row.lots = member.lots;
    if member.points.balance != balance {
        return Err(ApplyError::Invalid(format!(
            "the domain's balance after {} is {}, the ledger's {balance}",
            event.type_name(),
            member.points.balance
        )));
    }
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

/// Lots read at first for a member some event of the batch takes from: enough for a
/// redemption in the common case; when they do not hold what the batch takes, all are read.
pub(super) const FIRST_LOTS: i64 = 32;

/// The balances of the batch's members, in [`super::load_members`]'s read.
pub(super) const LOAD: &str =
    "SELECT json_build_array(b.org_id, b.member_id, balance, lifetime_earned, redeemed, \
     expired, clawed_back, adjusted, next_expiry_points, next_expiry_at)::text \
     FROM member_balances b JOIN rm.member_keys($1, $2) AS k(org_id, member_id) USING (org_id, member_id)";

/// The first [`FIRST_LOTS`] lots (`$8`) of the members an event of the batch takes from (keys
/// `$6, $7`), in the order debits take them, in [`super::load_members`]'s read.
pub(super) const LOAD_FIRST_LOTS: &str =
    "SELECT json_build_array(k.org_id, k.member_id, l.earned_at, l.expires_at, \
     l.remaining)::text \
     FROM rm.member_keys($6, $7) AS k(org_id, member_id) \
     CROSS JOIN LATERAL (SELECT earned_at, expires_at, remaining FROM member_lots l \
     WHERE l.org_id = k.org_id AND l.member_id = k.member_id \
     ORDER BY l.expiry_key, l.earned_at LIMIT $8) l";

/// Puts a row of [`LOAD`] into its member's state.
pub(super) fn loaded(row: &str, states: &mut HashMap<MemberKey, MemberState>) -> serde_json::Result<()> {
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
    );
    let row: BalanceTuple = serde_json::from_str(row)?;
    let (org_id, member_id, balance, lifetime_earned, redeemed, expired, clawed_back, adjusted) =
        (row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7);
    if let Some(state) = states.get_mut(&MemberKey { org_id, member_id }) {
        state.balance = Some(BalanceRow {
            points: PointCounters {
                balance,
                lifetime_earned,
                redeemed,
                expired,
                clawed_back,
                adjusted,
            },
            lots: Lots::default(),
            stored: StoredLots {
                read: Lots::default(),
                through: Through::Nothing,
                next_expiry: row.8.zip(row.9),
            },
        });
    }
    Ok(())
}

/// A lot as [`LOAD_FIRST_LOTS`] reads it.
pub(super) type LotTuple = (String, Uuid, DateTime<Utc>, Option<DateTime<Utc>>, i64);

/// Gives the members in `taken` with a balance (loaded before) the first lots read
/// (`first`, rows of [`LOAD_FIRST_LOTS`]); those whose first lots do not hold what the batch
/// takes have all their lots read.
pub(super) async fn load_lots(
    conn: &mut PgConnection,
    taken: &BTreeMap<MemberKey, LotsTaken>,
    first: Vec<LotTuple>,
    states: &mut HashMap<MemberKey, MemberState>,
) -> anyhow::Result<()> {
    let has_balance = |member: &&MemberKey| {
        states
            .get(*member)
            .and_then(|state| state.balance.as_ref())
            .is_some()
    };
    let mut read: BTreeMap<MemberKey, Lots> = taken
        .keys()
        .filter(has_balance)
        .map(|m| (m.clone(), Lots::default()))
        .collect();
    credit(&mut read, first);
    let mut short = Vec::new();
    for (member, lots) in read {
        let Some(balance) = states.get_mut(&member).and_then(|s| s.balance.as_mut()) else {
            continue;
        };
        let first_lots = usize::try_from(FIRST_LOTS).unwrap_or(usize::MAX);
        let through = match lots.iter().last() {
            _ if lots.len() < first_lots => Some(Through::All),
            Some((last, _)) if taken[&member].within(lots.total(), last) => Some(Through::Lot(last)),
            _ => None,
        };
        match through {
            Some(through) => balance.stored.through = through,
            None => short.push(member),
        }
        balance.lots.clone_from(&lots);
        balance.stored.read = lots;
    }
    for (member, lots) in read_all_lots(conn, &short).await? {
        if let Some(balance) = states.get_mut(&member).and_then(|s| s.balance.as_mut()) {
            balance.lots.clone_from(&lots);
            balance.stored = StoredLots {
                read: lots,
                through: Through::All,
                next_expiry: None,
            };
        }
    }
    Ok(())
}

/// Credits the lots read (`rows`) to their members in `read` (others are left out).
fn credit(read: &mut BTreeMap<MemberKey, Lots>, rows: Vec<LotTuple>) {
    for (org_id, member_id, earned_at, expires_at, remaining) in rows {
        if let Some(lots) = read.get_mut(&MemberKey { org_id, member_id }) {
            lots.credit(
                LotKey {
                    expires_at,
                    earned_at,
                },
                remaining,
            );
        }
    }
}

/// Every stored lot of `members`.
async fn read_all_lots(
    conn: &mut PgConnection,
    members: &[MemberKey],
) -> anyhow::Result<BTreeMap<MemberKey, Lots>> {
    let mut read: BTreeMap<MemberKey, Lots> = members.iter().map(|m| (m.clone(), Lots::default())).collect();
    if read.is_empty() {
        return Ok(read);
    }
    let (orgs, ids) = key_arrays(read.keys());
    let rows: Vec<LotTuple> = sqlx::query_as(
        "SELECT l.org_id, l.member_id, l.earned_at, l.expires_at, l.remaining \
         FROM member_lots l JOIN rm.member_keys($1, $2) AS k(org_id, member_id) USING (org_id, member_id)",
    )
    .bind(&orgs)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .context("loading member_lots")?;
    credit(&mut read, rows);
    Ok(read)
}

/// Writes the balances and lots of the touched members. The next expiry of a member whose
/// first lots the batch spent is read back from the lots written ([`flush_next_expiry`], after
/// `chain` is sent).
pub(super) fn flush(chain: &mut Chain, touched: &Touched<'_>, mode: Mode) {
    let balances = rows_of(touched, |s| s.balance.as_ref());
    if balances.is_empty() {
        return;
    }
    let (orgs, ids) = key_arrays(balances.iter().map(|(k, _)| *k));
    let col = |f: fn(&PointCounters) -> i64| balances.iter().map(|(_, b)| f(&b.points)).collect::<Vec<i64>>();
    let next: Vec<Option<NextExpiry>> = balances.iter().map(|(_, b)| b.next_expiry()).collect();
    let next_of = |n: &Option<NextExpiry>| n.flatten();
    chain
        .write(
            "member_balances",
            &format!(
                "INSERT INTO member_balances (org_id, member_id, balance, lifetime_earned, redeemed, expired, \
                 clawed_back, adjusted, next_expiry_points, next_expiry_at) \
                 SELECT unnest($1::text[]), unnest($2::uuid[]), unnest($3::bigint[]), unnest($4::bigint[]), unnest($5::bigint[]), unnest($6::bigint[]), \
                 unnest($7::bigint[]), unnest($8::bigint[]), unnest($9::bigint[]), unnest($10::timestamptz[]){}",
                mode.on_conflict(
                    "(org_id, member_id) DO UPDATE SET balance = excluded.balance, \
                     lifetime_earned = excluded.lifetime_earned, redeemed = excluded.redeemed, expired = excluded.expired, \
                     clawed_back = excluded.clawed_back, adjusted = excluded.adjusted, \
                     next_expiry_points = excluded.next_expiry_points, next_expiry_at = excluded.next_expiry_at"
                )
            ),
        )
        .bind(orgs)
        .bind(ids)
        .bind(col(|b| b.balance))
        .bind(col(|b| b.lifetime_earned))
        .bind(col(|b| b.redeemed))
        .bind(col(|b| b.expired))
        .bind(col(|b| b.clawed_back))
        .bind(col(|b| b.adjusted))
        .bind(next.iter().map(|n| next_of(n).map(|(p, _)| p)).collect::<Vec<_>>())
        .bind(next.iter().map(|n| next_of(n).map(|(_, at)| at)).collect::<Vec<_>>());
    flush_lots(chain, &balances, mode);
}

/// Reads the next expiry back from the stored lots for the touched members whose first lots
/// were read and spent: that of the lots now first, through the primary key's order. After
/// the lots are written.
pub(super) async fn flush_next_expiry(conn: &mut PgConnection, touched: &Touched<'_>) -> anyhow::Result<()> {
    let unknown = rows_of(touched, |s| s.balance.as_ref())
        .into_iter()
        .filter(|(_, b)| b.next_expiry().is_none())
        .map(|(k, _)| k);
    let (orgs, ids) = key_arrays(unknown);
    if orgs.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE member_balances b SET next_expiry_at = n.at, \
         next_expiry_points = (SELECT sum(l.remaining) FROM member_lots l \
         WHERE l.org_id = b.org_id AND l.member_id = b.member_id AND l.expiry_key = n.at) \
         FROM rm.member_keys($1, $2) AS k(org_id, member_id) \
         CROSS JOIN LATERAL (SELECT (SELECT l.expires_at FROM member_lots l \
         WHERE l.org_id = k.org_id AND l.member_id = k.member_id AND l.expiry_key < 'infinity' \
         ORDER BY l.expiry_key LIMIT 1) AS at) n \
         WHERE b.org_id = k.org_id AND b.member_id = k.member_id",
    )
    .bind(&orgs)
    .bind(&ids)
    .execute(&mut *conn)
    .await
    .context("reading the next expiry back from member_lots")?;
    Ok(())
}

/// Writes what changed of the lots: each lot's change from what was read (for a lot the batch
/// did not read, what its events credited, added to the stored row), and drops the lots read
/// and spent (never a lot also changed: one chain may hold both).
fn flush_lots(chain: &mut Chain, balances: &[(&MemberKey, &BalanceRow)], mode: Mode) {
    let mut lots = LotColumns::default();
    let mut spent = LotColumns::default();
    for (key, balance) in balances {
        let read = &balance.stored.read;
        for (lot, points) in balance.lots.iter() {
            let delta = points - read.get(&lot).unwrap_or(0);
            if delta != 0 {
                lots.push(key, lot, delta);
            }
        }
        for (lot, points) in read.iter() {
            if balance.lots.get(&lot).is_none() {
                spent.push(key, lot, points);
            }
        }
    }
    if !spent.org.is_empty() {
        chain
            .write(
                "spent member_lots",
                "DELETE FROM member_lots l \
                 USING public.lot_keys($1, $2, $3, $4) AS k(org_id, member_id, expiry_key, earned_at) \
                 WHERE l.org_id = k.org_id AND l.member_id = k.member_id \
                 AND l.expiry_key = k.expiry_key AND l.earned_at = k.earned_at",
            )
            .bind(spent.org)
            .bind(spent.member)
            .bind(spent.expires_at)
            .bind(spent.earned_at);
    }
    if !lots.org.is_empty() {
        chain.write(
                "member_lots",
                &format!(
                    "INSERT INTO member_lots (org_id, member_id, earned_at, expires_at, remaining) \
                     SELECT unnest($1::text[]), unnest($2::uuid[]), unnest($3::timestamptz[]), unnest($4::timestamptz[]), unnest($5::bigint[]){}",
                    mode.on_conflict(
                        "(org_id, member_id, expiry_key, earned_at) DO UPDATE \
                         SET remaining = member_lots.remaining + excluded.remaining"
                    )
                ),
            )
            .bind(lots.org)
            .bind(lots.member)
            .bind(lots.earned_at)
            .bind(lots.expires_at)
            .bind(lots.remaining);
    }
}

#[derive(Default)]
struct LotColumns {
    org: Vec<String>,
    member: Vec<Uuid>,
    earned_at: Vec<DateTime<Utc>>,
    expires_at: Vec<Option<DateTime<Utc>>>,
    remaining: Vec<i64>,
}

impl LotColumns {
    fn push(&mut self, member: &MemberKey, lot: LotKey, remaining: i64) {
        self.org.push(member.org_id.clone());
        self.member.push(member.member_id);
        self.earned_at.push(lot.earned_at);
        self.expires_at.push(lot.expires_at);
        self.remaining.push(remaining);
    }
}

/// Writes the journal entries and postings.
pub(super) fn flush_ledger(chain: &mut Chain, ledger: &LedgerWrites) {
    if !ledger.journal.is_empty() {
        let j = &ledger.journal;
        let (orgs, ids) = key_arrays(j.iter().map(|r| &r.key));
        chain.write(
                "journal_entries",
                "INSERT INTO journal_entries (org_id, member_id, sequence, global_position, event_type, reference, \
                 points_delta, balance_after, occurred_at, committed_at) \
                 SELECT unnest($1::text[]), unnest($2::uuid[]), unnest($3::bigint[]), unnest($4::bigint[]), unnest($5::text[]), unnest($6::text[]), \
                 unnest($7::bigint[]), unnest($8::bigint[]), unnest($9::timestamptz[]), unnest($10::timestamptz[])",
            )
            .bind(orgs)
            .bind(ids)
            .bind(j.iter().map(|r| r.sequence).collect::<Vec<_>>())
            .bind(j.iter().map(|r| r.global_position).collect::<Vec<_>>())
            .bind(j.iter().map(|r| r.event_type).collect::<Vec<_>>())
            .bind(j.iter().map(|r| r.reference.clone()).collect::<Vec<_>>())
            .bind(j.iter().map(|r| r.points_delta).collect::<Vec<_>>())
            .bind(j.iter().map(|r| r.balance_after).collect::<Vec<_>>())
            .bind(j.iter().map(|r| r.occurred_at).collect::<Vec<_>>())
            .bind(j.iter().map(|r| r.committed_at).collect::<Vec<_>>());
    }
    if !ledger.postings.is_empty() {
        let p = &ledger.postings;
        let (orgs, ids) = key_arrays(p.iter().map(|r| &r.key));
        chain
            .write(
                "postings",
                "INSERT INTO postings (org_id, member_id, sequence, account, delta) \
                 SELECT unnest($1::text[]), unnest($2::uuid[]), unnest($3::bigint[]), unnest($4::text[]), unnest($5::bigint[])",
            )
            .bind(orgs)
            .bind(ids)
            .bind(p.iter().map(|r| r.sequence).collect::<Vec<_>>())
            .bind(p.iter().map(|r| r.account.as_str()).collect::<Vec<_>>())
            .bind(p.iter().map(|r| r.delta).collect::<Vec<_>>());
    }
}

/// Adds the batch's liability changes to its orgs' (a per-org row: [`super::flush`] writes
/// those last).
pub(super) fn flush_liability(per_org: &mut Chain, ledger: &LedgerWrites) {
    add_per_org(per_org, "org_liability", "points", ledger.liability.iter());
}
