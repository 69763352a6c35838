//! Loading the member rows a batch needs, and writing a batch's results back, in a handful of
//! set-based statements (arrays bound as parameters and `unnest`ed) whatever the batch size.
//!
//! Table names are unqualified: the caller's transaction sets `search_path` to the read-model
//! schema (`rm` live, a scratch schema during an audit).

use std::collections::HashMap;

use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, Utc};
use domain::member::Lot;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::event::MemberKey;
use crate::state::{BalanceRow, MemberState, PurchaseRow, StampRow, TierRow, Writes};

fn key_arrays<'a>(keys: impl Iterator<Item = &'a MemberKey>) -> (Vec<String>, Vec<Uuid>) {
    keys.map(|k| (k.org_id.clone(), k.member_id)).unzip()
}

/// Loads the rows of `members`, and the purchases named in `purchases` (those refunded by the
/// batch).
pub async fn load_members(
    conn: &mut PgConnection,
    members: &[MemberKey],
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
    let key = |org_id: String, member_id: Uuid| MemberKey { org_id, member_id };

    type BalanceTuple = (String, Uuid, i64, i64, i64, i64, i64, i64);
    let rows: Vec<BalanceTuple> = sqlx::query_as(
        "SELECT b.org_id, b.member_id, balance, lifetime_earned, redeemed, expired, clawed_back, adjusted \
         FROM member_balances b JOIN unnest($1::text[], $2::uuid[]) AS k(org_id, member_id) \
         USING (org_id, member_id)",
    )
    .bind(&orgs)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .context("loading member_balances")?;
    for (org, id, balance, lifetime_earned, redeemed, expired, clawed_back, adjusted) in rows {
        if let Some(state) = states.get_mut(&key(org, id)) {
            state.balance = Some(BalanceRow {
                balance,
                lifetime_earned,
                redeemed,
                expired,
                clawed_back,
                adjusted,
                lots: Vec::new(),
                stored_lots: Vec::new(),
            });
        }
    }

    type LotTuple = (String, Uuid, DateTime<Utc>, Option<DateTime<Utc>>, i64);
    let rows: Vec<LotTuple> = sqlx::query_as(
        "SELECT l.org_id, l.member_id, earned_at, expires_at, remaining \
         FROM member_lots l JOIN unnest($1::text[], $2::uuid[]) AS k(org_id, member_id) \
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
        balance.stored_lots = balance.lots.clone();
    }

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
    let rows: Vec<TierTuple> = sqlx::query_as(
        "SELECT t.org_id, t.member_id, tier, multiplier_bps, qualifying_points, qualifying_as_of, \
         tier_since, program_version, grace_started_at, grace_threshold_points, downgrade_after \
         FROM member_tiers t JOIN unnest($1::text[], $2::uuid[]) AS k(org_id, member_id) \
         USING (org_id, member_id)",
    )
    .bind(&orgs)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .context("loading member_tiers")?;
    for row in rows {
        if let Some(state) = states.get_mut(&key(row.0, row.1)) {
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
    }

    type StampTuple = (String, Uuid, String, i32, i32, i32, Option<NaiveDate>);
    let rows: Vec<StampTuple> = sqlx::query_as(
        "SELECT s.org_id, s.member_id, card_id, stamps, stamps_required, cards_completed, last_stamp_day \
         FROM stamp_cards s JOIN unnest($1::text[], $2::uuid[]) AS k(org_id, member_id) \
         USING (org_id, member_id)",
    )
    .bind(&orgs)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .context("loading stamp_cards")?;
    for (org, id, card_id, stamps, stamps_required, cards_completed, last_stamp_day) in rows {
        if let Some(state) = states.get_mut(&key(org, id)) {
            state.stamps.insert(
                card_id,
                StampRow {
                    stamps,
                    stamps_required,
                    cards_completed,
                    last_stamp_day,
                },
            );
        }
    }

    if !purchases.is_empty() {
        let (orgs, ids) = key_arrays(purchases.iter().map(|(k, _)| k));
        let txns: Vec<String> = purchases.iter().map(|(_, t)| t.clone()).collect();
        type PurchaseTuple = (String, Uuid, String, String, DateTime<Utc>, i64, i64, i64, i64);
        let rows: Vec<PurchaseTuple> = sqlx::query_as(
            "SELECT p.org_id, p.member_id, p.transaction_id, location_id, occurred_at, amount_minor, \
             refunded_minor, points_earned, clawed_back \
             FROM purchases p JOIN unnest($1::text[], $2::uuid[], $3::text[]) AS k(org_id, member_id, transaction_id) \
             USING (org_id, member_id, transaction_id)",
        )
        .bind(&orgs)
        .bind(&ids)
        .bind(&txns)
        .fetch_all(&mut *conn)
        .await
        .context("loading purchases")?;
        for row in rows {
            if let Some(state) = states.get_mut(&key(row.0, row.1)) {
                state.purchases.insert(
                    row.2,
                    PurchaseRow {
                        location_id: row.3,
                        occurred_at: row.4,
                        amount_minor: row.5,
                        refunded_minor: row.6,
                        points_earned: row.7,
                        clawed_back: row.8,
                    },
                );
            }
        }
    }
    Ok(states)
}

/// Writes the batch back: member rows of touched members, then additions and increments,
/// checkpoints last. Returns how many events were newly parked (a redelivered parked event
/// is not parked twice).
pub async fn flush(
    conn: &mut PgConnection,
    members: &HashMap<MemberKey, MemberState>,
    writes: &Writes,
    mode: Mode,
) -> anyhow::Result<u64> {
    let touched: Vec<(&MemberKey, &MemberState)> = members.iter().filter(|(_, s)| s.touched).collect();
    flush_balances(conn, &touched, mode).await?;
    flush_tiers(conn, &touched, mode).await?;
    flush_stamps(conn, &touched, mode).await?;
    flush_purchases(conn, &touched, writes, mode).await?;
    flush_ledger(conn, writes).await?;
    flush_member_rows(conn, writes).await?;
    flush_leaderboard(conn, writes, mode).await?;
    flush_programs(conn, writes).await?;
    flush_progress(conn, writes, mode).await
}

/// How [`flush`] writes member, leaderboard and progress rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The rows may exist (live batches): upserts and increments.
    Upsert,
    /// Each of these rows is written exactly once, whole, into tables that start empty (the
    /// audit's fold of complete aggregates): plain inserts, so the tables need no index while
    /// loading, and `rfm_members` is left to [`write_rfm_members`] at the end. The per-org
    /// rows (liability, RFM versions, programs) are still upserted.
    Append,
}

impl Mode {
    fn on_conflict(self, clause: &str) -> String {
        match self {
            Mode::Upsert => format!(" ON CONFLICT {clause}"),
            Mode::Append => String::new(),
        }
    }
}

/// `rfm_members` recomputed from `purchases` (a member's aggregates never drift from them).
const RFM_MEMBERS_FROM_PURCHASES: &str = "INSERT INTO rfm_members (org_id, member_id, first_purchase_at, \
     last_purchase_at, purchases, amount_minor, refunded_minor) \
     SELECT p.org_id, p.member_id, min(p.occurred_at), max(p.occurred_at), count(*), \
     sum(p.amount_minor)::bigint, sum(p.refunded_minor)::bigint FROM purchases p";

/// Writes `rfm_members` of every member with purchases, after an [`Mode::Append`] load.
pub async fn write_rfm_members(conn: &mut PgConnection) -> anyhow::Result<()> {
    sqlx::query(&format!(
        "{RFM_MEMBERS_FROM_PURCHASES} GROUP BY p.org_id, p.member_id"
    ))
    .execute(&mut *conn)
    .await
    .context("writing rfm_members")?;
    Ok(())
}

async fn flush_balances(
    conn: &mut PgConnection,
    touched: &[(&MemberKey, &MemberState)],
    mode: Mode,
) -> anyhow::Result<()> {
    let rows: Vec<(&MemberKey, &BalanceRow)> = touched
        .iter()
        .filter_map(|(k, s)| Some((*k, s.balance.as_ref()?)))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let (orgs, ids) = key_arrays(rows.iter().map(|(k, _)| *k));
    let col = |f: fn(&BalanceRow) -> i64| rows.iter().map(|(_, b)| f(b)).collect::<Vec<i64>>();
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

    // Lots only change at their ends in the common case (a purchase appends one, a redemption
    // draws down the first): rewrite from the first lot that differs from the stored row, and
    // drop stored rows past the new end, instead of rewriting every lot of the member.
    let mut lots = LotColumns::default();
    let (mut cut_orgs, mut cut_ids, mut cut_from) = (Vec::new(), Vec::new(), Vec::new());
    for (key, balance) in &rows {
        let same = balance
            .lots
            .iter()
            .zip(&balance.stored_lots)
            .take_while(|(new, old)| new == old)
            .count();
        if balance.stored_lots.len() > balance.lots.len() {
            cut_orgs.push(key.org_id.clone());
            cut_ids.push(key.member_id);
            cut_from.push(i32::try_from(balance.lots.len()).context("too many lots")?);
        }
        for (no, lot) in balance.lots.iter().enumerate().skip(same) {
            lots.org.push(key.org_id.clone());
            lots.member.push(key.member_id);
            lots.no.push(i32::try_from(no).context("too many lots")?);
            lots.earned_at.push(lot.earned_at);
            lots.expires_at.push(lot.expires_at);
            lots.remaining.push(lot.remaining);
        }
    }
    if !cut_orgs.is_empty() {
        sqlx::query(
            "DELETE FROM member_lots l USING unnest($1::text[], $2::uuid[], $3::int[]) AS k(org_id, member_id, from_no) \
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

async fn flush_tiers(
    conn: &mut PgConnection,
    touched: &[(&MemberKey, &MemberState)],
    mode: Mode,
) -> anyhow::Result<()> {
    let rows: Vec<(&MemberKey, &TierRow)> = touched
        .iter()
        .filter_map(|(k, s)| Some((*k, s.tier.as_ref()?)))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let (orgs, ids) = key_arrays(rows.iter().map(|(k, _)| *k));
    sqlx::query(&format!(
        "INSERT INTO member_tiers (org_id, member_id, tier, multiplier_bps, qualifying_points, qualifying_as_of, \
         tier_since, program_version, grace_started_at, grace_threshold_points, downgrade_after) \
         SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::int[], $5::bigint[], $6::timestamptz[], \
         $7::timestamptz[], $8::bigint[], $9::timestamptz[], $10::bigint[], $11::timestamptz[]){}",
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
    .bind(rows.iter().map(|(_, t)| t.downgrade_after).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await
    .context("writing member_tiers")?;
    Ok(())
}

async fn flush_stamps(
    conn: &mut PgConnection,
    touched: &[(&MemberKey, &MemberState)],
    mode: Mode,
) -> anyhow::Result<()> {
    let rows: Vec<(&MemberKey, &String, &StampRow)> = touched
        .iter()
        .flat_map(|(k, s)| s.stamps.iter().map(move |(card, row)| (*k, card, row)))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let (orgs, ids) = key_arrays(rows.iter().map(|(k, _, _)| *k));
    sqlx::query(&format!(
        "INSERT INTO stamp_cards (org_id, member_id, card_id, stamps, stamps_required, cards_completed, last_stamp_day) \
         SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::int[], $5::int[], $6::int[], $7::date[]){}",
        mode.on_conflict(
            "(org_id, member_id, card_id) DO UPDATE SET stamps = excluded.stamps, \
             stamps_required = excluded.stamps_required, cards_completed = excluded.cards_completed, \
             last_stamp_day = excluded.last_stamp_day"
        )
    ))
    .bind(&orgs)
    .bind(&ids)
    .bind(rows.iter().map(|(_, c, _)| (*c).clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, _, r)| r.stamps).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, _, r)| r.stamps_required).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, _, r)| r.cards_completed).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, _, r)| r.last_stamp_day).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await
    .context("writing stamp_cards")?;
    Ok(())
}

async fn flush_purchases(
    conn: &mut PgConnection,
    touched: &[(&MemberKey, &MemberState)],
    writes: &Writes,
    mode: Mode,
) -> anyhow::Result<()> {
    let rows: Vec<(&MemberKey, &String, &PurchaseRow)> = touched
        .iter()
        .flat_map(|(k, s)| s.purchases.iter().map(move |(txn, row)| (*k, txn, row)))
        .collect();
    if !rows.is_empty() {
        let (orgs, ids) = key_arrays(rows.iter().map(|(k, _, _)| *k));
        sqlx::query(&format!(
            "INSERT INTO purchases (org_id, member_id, transaction_id, location_id, occurred_at, amount_minor, \
             refunded_minor, points_earned, clawed_back) \
             SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::bigint[], \
             $7::bigint[], $8::bigint[], $9::bigint[]){}",
            mode.on_conflict(
                "(org_id, member_id, transaction_id) DO UPDATE SET \
                 refunded_minor = excluded.refunded_minor, clawed_back = excluded.clawed_back"
            )
        ))
        .bind(&orgs)
        .bind(&ids)
        .bind(rows.iter().map(|(_, t, _)| (*t).clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, _, p)| p.location_id.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, _, p)| p.occurred_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, _, p)| p.amount_minor).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, _, p)| p.refunded_minor).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, _, p)| p.points_earned).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, _, p)| p.clawed_back).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await
        .context("writing purchases")?;
    }
    if !writes.rfm_members.is_empty() && mode == Mode::Upsert {
        // Per-member aggregates are recomputed from the member's purchases, which are now
        // written: cheap (primary-key prefix) and never drifts from them.
        let (orgs, ids) = key_arrays(writes.rfm_members.iter());
        sqlx::query(&format!(
            "{RFM_MEMBERS_FROM_PURCHASES} \
             JOIN unnest($1::text[], $2::uuid[]) AS k(org_id, member_id) USING (org_id, member_id) \
             GROUP BY p.org_id, p.member_id \
             ON CONFLICT (org_id, member_id) DO UPDATE SET first_purchase_at = excluded.first_purchase_at, \
             last_purchase_at = excluded.last_purchase_at, purchases = excluded.purchases, \
             amount_minor = excluded.amount_minor, refunded_minor = excluded.refunded_minor"
        ))
        .bind(&orgs)
        .bind(&ids)
        .execute(&mut *conn)
        .await
        .context("writing rfm_members")?;
    }
    if !writes.rfm_orgs.is_empty() {
        let (orgs, deltas): (Vec<String>, Vec<i64>) =
            writes.rfm_orgs.iter().map(|(o, d)| (o.clone(), *d)).unzip();
        sqlx::query(
            "INSERT INTO rfm_orgs AS o (org_id, raw_version) SELECT * FROM unnest($1::text[], $2::bigint[]) \
             ON CONFLICT (org_id) DO UPDATE SET raw_version = o.raw_version + excluded.raw_version",
        )
        .bind(&orgs)
        .bind(&deltas)
        .execute(&mut *conn)
        .await
        .context("writing rfm_orgs")?;
    }
    Ok(())
}

async fn flush_ledger(conn: &mut PgConnection, writes: &Writes) -> anyhow::Result<()> {
    if !writes.journal.is_empty() {
        let j = &writes.journal;
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
    if !writes.postings.is_empty() {
        let p = &writes.postings;
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
    if !writes.liability.is_empty() {
        let (orgs, deltas): (Vec<String>, Vec<i64>) =
            writes.liability.iter().map(|(o, d)| (o.clone(), *d)).unzip();
        sqlx::query(
            "INSERT INTO org_liability AS l (org_id, points) SELECT * FROM unnest($1::text[], $2::bigint[]) \
             ON CONFLICT (org_id) DO UPDATE SET points = l.points + excluded.points",
        )
        .bind(&orgs)
        .bind(&deltas)
        .execute(&mut *conn)
        .await
        .context("writing org_liability")?;
    }
    Ok(())
}

async fn flush_member_rows(conn: &mut PgConnection, writes: &Writes) -> anyhow::Result<()> {
    if !writes.directory.is_empty() {
        let d = &writes.directory;
        let (orgs, ids) = key_arrays(d.iter().map(|r| &r.key));
        sqlx::query(
            "INSERT INTO member_directory (org_id, member_id, external_id, display_name, enrolled_at) \
             SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[])",
        )
        .bind(&orgs)
        .bind(&ids)
        .bind(d.iter().map(|r| r.external_id.clone()).collect::<Vec<_>>())
        .bind(d.iter().map(|r| r.display_name.clone()).collect::<Vec<_>>())
        .bind(d.iter().map(|r| r.enrolled_at).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await
        .context("writing member_directory")?;
    }
    if !writes.tier_history.is_empty() {
        let h = &writes.tier_history;
        let (orgs, ids) = key_arrays(h.iter().map(|r| &r.key));
        sqlx::query(
            "INSERT INTO tier_history (org_id, member_id, sequence, change, from_tier, to_tier, multiplier_bps, \
             qualifying_points, at, downgrade_after, program_version) \
             SELECT * FROM unnest($1::text[], $2::uuid[], $3::bigint[], $4::text[], $5::text[], $6::text[], \
             $7::int[], $8::bigint[], $9::timestamptz[], $10::timestamptz[], $11::bigint[])",
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
        .bind(h.iter().map(|r| r.program_version).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await
        .context("writing tier_history")?;
    }
    if !writes.stamp_rewards.is_empty() {
        let s = &writes.stamp_rewards;
        let (orgs, ids) = key_arrays(s.iter().map(|r| &r.key));
        sqlx::query(
            "INSERT INTO stamp_rewards_issued (org_id, member_id, card_id, cards_completed, reward_id, \
             transaction_id, occurred_at) \
             SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::int[], $5::text[], $6::text[], \
             $7::timestamptz[])",
        )
        .bind(&orgs)
        .bind(&ids)
        .bind(s.iter().map(|r| r.card_id.clone()).collect::<Vec<_>>())
        .bind(s.iter().map(|r| r.cards_completed).collect::<Vec<_>>())
        .bind(s.iter().map(|r| r.reward_id.clone()).collect::<Vec<_>>())
        .bind(s.iter().map(|r| r.transaction_id.clone()).collect::<Vec<_>>())
        .bind(s.iter().map(|r| r.occurred_at).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await
        .context("writing stamp_rewards_issued")?;
    }
    Ok(())
}

async fn flush_leaderboard(conn: &mut PgConnection, writes: &Writes, mode: Mode) -> anyhow::Result<()> {
    // Rows some event of the batch changed: add the delta, the last change is when the score
    // was reached (even if the batch's changes cancel out). Rows no event changed (zero-point
    // purchases): created if new, otherwise left alone.
    let (changed, unchanged): (Vec<_>, Vec<_>) = writes
        .leaderboard
        .iter()
        .partition(|(_, op)| op.changed.is_some());
    for (rows, on_conflict) in [
        (
            changed,
            "DO UPDATE SET points = s.points + excluded.points, reached_at = excluded.reached_at, \
             reached_position = excluded.reached_position",
        ),
        (unchanged, "DO NOTHING"),
    ] {
        if rows.is_empty() {
            continue;
        }
        let reached = |op: &crate::state::LeaderboardOp| op.changed.unwrap_or(op.first);
        sqlx::query(&format!(
            "INSERT INTO leaderboard_scores AS s (org_id, location_id, period, period_key, member_id, points, \
             reached_at, reached_position) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::uuid[], $6::bigint[], \
             $7::timestamptz[], $8::bigint[]){}",
            mode.on_conflict(&format!(
                "(org_id, location_id, period, period_key, member_id) {on_conflict}"
            ))
        ))
        .bind(rows.iter().map(|(k, _)| k.org_id.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|(k, _)| k.location_id.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|(k, _)| k.period).collect::<Vec<_>>())
        .bind(rows.iter().map(|(k, _)| k.period_key.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|(k, _)| k.member_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, op)| op.delta).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, op)| reached(op).0).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, op)| reached(op).1).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await
        .context("writing leaderboard_scores")?;
    }
    Ok(())
}

async fn flush_programs(conn: &mut PgConnection, writes: &Writes) -> anyhow::Result<()> {
    for (org, program) in &writes.programs {
        let config = &program.config;
        sqlx::query(
            "INSERT INTO programs (org_id, version, currency, earn_rate, expiry_days, qualification_window_days, \
             downgrade_grace_days, configured_at, config) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (org_id) DO UPDATE SET version = excluded.version, currency = excluded.currency, \
             earn_rate = excluded.earn_rate, expiry_days = excluded.expiry_days, \
             qualification_window_days = excluded.qualification_window_days, \
             downgrade_grace_days = excluded.downgrade_grace_days, configured_at = excluded.configured_at, \
             config = excluded.config",
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
        .execute(&mut *conn)
        .await
        .context("writing programs")?;
        for table in ["program_tiers", "program_rewards", "program_stamp_cards"] {
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
    }
    if !writes.locations.is_empty() {
        let l = &writes.locations;
        sqlx::query(
            "INSERT INTO program_locations (org_id, location_id, name, registered_at) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) \
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

async fn flush_progress(conn: &mut PgConnection, writes: &Writes, mode: Mode) -> anyhow::Result<u64> {
    let mut parked = 0;
    if !writes.parked.is_empty() {
        let p = &writes.parked;
        parked = sqlx::query(&format!(
            "INSERT INTO parked_events (aggregate_type, aggregate_id, sequence, global_position, event_type, \
             payload, error, blocked_by) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], \
             $7::text[], $8::bigint[]){}",
            mode.on_conflict("(aggregate_type, aggregate_id, sequence) DO NOTHING")
        ))
        .bind(p.iter().map(|r| r.aggregate_type.clone()).collect::<Vec<_>>())
        .bind(p.iter().map(|r| r.aggregate_id.clone()).collect::<Vec<_>>())
        .bind(p.iter().map(|r| r.sequence).collect::<Vec<_>>())
        .bind(p.iter().map(|r| r.global_position).collect::<Vec<_>>())
        .bind(p.iter().map(|r| r.event_type.clone()).collect::<Vec<_>>())
        .bind(p.iter().map(|r| r.payload.clone()).collect::<Vec<_>>())
        .bind(p.iter().map(|r| r.error.clone()).collect::<Vec<_>>())
        .bind(p.iter().map(|r| r.blocked_by).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await
        .context("writing parked_events")?
        .rows_affected();
    }
    if !writes.checkpoints.is_empty() {
        let c: Vec<_> = writes.checkpoints.iter().collect();
        sqlx::query(&format!(
            "INSERT INTO projection_checkpoints (aggregate_type, aggregate_id, last_sequence, last_global_position) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]){}",
            mode.on_conflict(
                "(aggregate_type, aggregate_id) DO UPDATE SET last_sequence = excluded.last_sequence, \
                 last_global_position = excluded.last_global_position"
            )
        ))
        .bind(c.iter().map(|((t, _), _)| t.clone()).collect::<Vec<_>>())
        .bind(c.iter().map(|((_, id), _)| id.clone()).collect::<Vec<_>>())
        .bind(c.iter().map(|(_, (s, _))| *s).collect::<Vec<_>>())
        .bind(c.iter().map(|(_, (_, p))| *p).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await
        .context("writing projection_checkpoints")?;
    }
    Ok(parked)
}
