//! RFM (SPEC §6): the raw data kept per event (`purchases` with their refunds, per-member
//! aggregates in `rfm_members`, per-org `rfm_orgs.raw_version`), and the scores and segments
//! (`rfm_scores`, `rfm_segment_transitions`) recomputed from it per org in one set-based pass.
//!
//! As of the recomputation time `T`, for each purchasing member (at least one purchase ever):
//! - recency: whole days from the last purchase to `T`, `floor((T − last) / 1 day)`, 0 if the
//!   last purchase is after `T` (a terminal clock a little ahead);
//! - frequency: purchases with `occurred_at` in `(T − 365 days, T]`;
//! - monetary: those purchases' amounts minus their refunds, in minor units.
//!
//! Each dimension is scored `1 + floor(5 × W / N)`, W = members strictly worse (more days,
//! fewer purchases, less spend), N = purchasing members of the org. W is `rank() − 1` over the
//! dimension ordered worst first, so equal values always get equal scores. The segment comes
//! from the (R, F) grid (`rm.rfm_segment`); a changed segment is recorded in
//! `rfm_segment_transitions` at `T`.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context as _;
use chrono::{DateTime, SubsecRound as _, Utc};
use domain::MemberEvent;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{add, add_per_org, key_arrays, MemberState, Mode, ReadModel, Touched, Writes};
use crate::chain::Chain;
use crate::check_schema_name;
use crate::event::ApplyError;
use domain::MemberKey;

pub const TABLES: &[&str] = &[
    "purchases",
    "rfm_members",
    "rfm_orgs",
    "rfm_scores",
    "rfm_segment_transitions",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseRow {
    pub location_id: String,
    pub occurred_at: DateTime<Utc>,
    pub amount_minor: i64,
    pub refunded_minor: i64,
    pub points_earned: i64,
    pub clawed_back: i64,
}

/// What a batch adds to a member's `rfm_members` row.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MemberDelta {
    /// Earliest and latest purchase recorded by the batch.
    pub first_purchase_at: Option<DateTime<Utc>>,
    pub last_purchase_at: Option<DateTime<Utc>>,
    pub purchases: i64,
    pub amount_minor: i64,
    pub refunded_minor: i64,
}

impl MemberDelta {
    fn add(&mut self, other: MemberDelta) {
        self.first_purchase_at = self
            .first_purchase_at
            .into_iter()
            .chain(other.first_purchase_at)
            .min();
        self.last_purchase_at = self.last_purchase_at.max(other.last_purchase_at);
        self.purchases += other.purchases;
        self.amount_minor += other.amount_minor;
        self.refunded_minor += other.refunded_minor;
    }

    fn purchased(&mut self, at: DateTime<Utc>, amount_minor: i64) {
        self.add(MemberDelta {
            first_purchase_at: Some(at),
            last_purchase_at: Some(at),
            purchases: 1,
            amount_minor,
            refunded_minor: 0,
        });
    }
}

/// The members and orgs whose raw data a batch changed.
#[derive(Debug, Default)]
pub struct RfmWrites {
    /// What the batch adds to each member's `rfm_members` row (one purchase adds one, its
    /// amount and its time; a refund its amount): the row is updated by these sums instead of
    /// recomputed from all of the member's purchases, whose count grows with its history.
    pub members: BTreeMap<MemberKey, MemberDelta>,
    /// Purchase and refund events applied per org (`rfm_orgs.raw_version` increments).
    pub orgs: BTreeMap<String, i64>,
}

impl RfmWrites {
    pub fn merge(&mut self, other: RfmWrites) {
        for (key, delta) in other.members {
            self.members.entry(key).or_default().add(delta);
        }
        for (org, delta) in other.orgs {
            *self.orgs.entry(org).or_default() += delta;
        }
    }

    fn changed(&mut self, key: &MemberKey) -> &mut MemberDelta {
        *self.orgs.entry(key.org_id.clone()).or_default() += 1;
        self.members.entry(key.clone()).or_default()
    }
}

/// A purchase is recorded once; a refund must match the purchase it names.
pub(super) fn apply(
    purchases: &mut BTreeMap<String, PurchaseRow>,
    key: &MemberKey,
    event: &MemberEvent,
    writes: &mut Writes,
) -> Result<(), ApplyError> {
    match event {
        MemberEvent::PurchaseRecorded {
            transaction_id,
            location_id,
            amount_minor,
            occurred_at,
            points_earned,
            ..
        } => {
            if purchases.contains_key(transaction_id) {
                return Err(ApplyError::Invalid(format!(
                    "purchase '{transaction_id}' is already recorded"
                )));
            }
            purchases.insert(
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
            writes.rfm.changed(key).purchased(*occurred_at, *amount_minor);
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
            ..
        } => {
            let Some(purchase) = purchases.get_mut(transaction_id) else {
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
            writes.rfm.changed(key).refunded_minor += *amount_minor;
        }
        _ => return Ok(()),
    }
    writes.touched(&[ReadModel::Rfm]);
    Ok(())
}

/// The purchases the batch names (keys `$3, $4, $5`), in [`super::load_members`]'s read.
pub(super) const LOAD: &str =
    "SELECT json_build_array(p.org_id, p.member_id, p.transaction_id, location_id, \
     occurred_at, amount_minor, refunded_minor, points_earned, clawed_back)::text \
     FROM purchases p JOIN public.purchase_keys($3, $4, $5) AS k(org_id, member_id, transaction_id) \
     USING (org_id, member_id, transaction_id)";

/// Puts a row of [`LOAD`] into its member's state.
pub(super) fn loaded(row: &str, states: &mut HashMap<MemberKey, MemberState>) -> serde_json::Result<()> {
    type PurchaseTuple = (String, Uuid, String, String, DateTime<Utc>, i64, i64, i64, i64);
    let row: PurchaseTuple = serde_json::from_str(row)?;
    let key = MemberKey {
        org_id: row.0,
        member_id: row.1,
    };
    if let Some(state) = states.get_mut(&key) {
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
    Ok(())
}

/// `rfm_members` recomputed from `purchases` (a member's aggregates never drift from them).
const MEMBERS_FROM_PURCHASES: &str = "INSERT INTO rfm_members (org_id, member_id, first_purchase_at, \
     last_purchase_at, purchases, amount_minor, refunded_minor) \
     SELECT p.org_id, p.member_id, min(p.occurred_at), max(p.occurred_at), count(*), \
     sum(p.amount_minor)::bigint, sum(p.refunded_minor)::bigint FROM purchases p";

/// Writes `rfm_members` of every member with purchases, after an [`Mode::Append`] load.
pub async fn write_members(conn: &mut PgConnection) -> anyhow::Result<()> {
    sqlx::query(&format!(
        "{MEMBERS_FROM_PURCHASES} GROUP BY p.org_id, p.member_id"
    ))
    .execute(&mut *conn)
    .await
    .context("writing rfm_members")?;
    Ok(())
}

/// Writes the purchases of the touched members, then (live) their `rfm_members` rows (the
/// orgs' raw versions are per-org rows: [`flush_per_org`]).
pub(super) fn flush(chain: &mut Chain, touched: &Touched<'_>, writes: &RfmWrites, mode: Mode) {
    let rows: Vec<(&MemberKey, &String, &PurchaseRow)> = touched
        .iter()
        .flat_map(|(k, s)| s.purchases.iter().map(move |(txn, row)| (*k, txn, row)))
        .collect();
    if !rows.is_empty() {
        let (orgs, ids) = key_arrays(rows.iter().map(|(k, _, _)| *k));
        chain.write("purchases", &format!(
            "INSERT INTO purchases (org_id, member_id, transaction_id, location_id, occurred_at, amount_minor, \
             refunded_minor, points_earned, clawed_back) \
             SELECT unnest($1::text[]), unnest($2::uuid[]), unnest($3::text[]), unnest($4::text[]), unnest($5::timestamptz[]), unnest($6::bigint[]), \
             unnest($7::bigint[]), unnest($8::bigint[]), unnest($9::bigint[]){}",
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
        .bind(rows.iter().map(|(_, _, p)| p.clawed_back).collect::<Vec<_>>());
    }
    if !writes.members.is_empty() && mode == Mode::Upsert {
        // A refund's member has a row (its purchase wrote it), so a delta without purchases
        // only ever updates; its times are ±infinity, which least/greatest leave alone (a NULL
        // would fail the NOT NULL check, made on the proposed row before the conflict).
        let m = &writes.members;
        let (orgs, ids) = key_arrays(m.keys());
        chain.write(

            "rfm_members",
            "INSERT INTO rfm_members AS r (org_id, member_id, first_purchase_at, last_purchase_at, purchases, \
             amount_minor, refunded_minor) \
             SELECT o, m, coalesce(f, 'infinity'), coalesce(l, '-infinity'), p, a, r \
             FROM unnest($1::text[], $2::uuid[], $3::timestamptz[], $4::timestamptz[], $5::bigint[], \
             $6::bigint[], $7::bigint[]) AS t(o, m, f, l, p, a, r) \
             ON CONFLICT (org_id, member_id) DO UPDATE SET \
             first_purchase_at = least(r.first_purchase_at, excluded.first_purchase_at), \
             last_purchase_at = greatest(r.last_purchase_at, excluded.last_purchase_at), \
             purchases = r.purchases + excluded.purchases, amount_minor = r.amount_minor + excluded.amount_minor, \
             refunded_minor = r.refunded_minor + excluded.refunded_minor",
        )
        .bind(&orgs)
        .bind(&ids)
        .bind(m.values().map(|d| d.first_purchase_at).collect::<Vec<_>>())
        .bind(m.values().map(|d| d.last_purchase_at).collect::<Vec<_>>())
        .bind(m.values().map(|d| d.purchases).collect::<Vec<_>>())
        .bind(m.values().map(|d| d.amount_minor).collect::<Vec<_>>())
        .bind(m.values().map(|d| d.refunded_minor).collect::<Vec<_>>());
    }
}

/// Adds the batch's purchase and refund counts to its orgs' RFM versions (a per-org row:
/// [`super::flush`] writes those last).
pub(super) fn flush_per_org(per_org: &mut Chain, writes: &RfmWrites) {
    add_per_org(per_org, "rfm_orgs", "raw_version", writes.orgs.iter());
}

/// What one recomputation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RfmSummary {
    pub org_id: String,
    pub computed_at: DateTime<Utc>,
    /// Purchasing members scored.
    pub members: i64,
    /// Members whose segment changed (or who got their first one).
    pub transitions: i64,
}

const RECOMPUTE: &str = "
WITH raw AS (
    SELECT member_id,
           greatest(0, floor(extract(epoch FROM ($2 - max(occurred_at))) / 86400))::int AS recency_days,
           (count(*) FILTER (WHERE occurred_at > $2 - interval '365 days' AND occurred_at <= $2))::int AS frequency,
           coalesce(sum(amount_minor - refunded_minor)
                    FILTER (WHERE occurred_at > $2 - interval '365 days' AND occurred_at <= $2), 0)::bigint
               AS monetary_minor
    FROM purchases
    WHERE org_id = $1
    GROUP BY member_id
), scored AS (
    SELECT raw.*,
           (1 + 5 * (rank() OVER (ORDER BY recency_days DESC) - 1) / count(*) OVER ())::smallint AS r,
           (1 + 5 * (rank() OVER (ORDER BY frequency) - 1) / count(*) OVER ())::smallint AS f,
           (1 + 5 * (rank() OVER (ORDER BY monetary_minor) - 1) / count(*) OVER ())::smallint AS m
    FROM raw
), segmented AS (
    SELECT scored.*, rm.rfm_segment(r, f) AS segment FROM scored
), transitions AS (
    INSERT INTO rfm_segment_transitions (org_id, member_id, at, from_segment, to_segment)
    SELECT $1, s.member_id, $2, old.segment, s.segment
    FROM segmented s
             LEFT JOIN rfm_scores old ON old.org_id = $1 AND old.member_id = s.member_id
    WHERE old.segment IS DISTINCT FROM s.segment
    ON CONFLICT (org_id, member_id, at) DO UPDATE SET to_segment = excluded.to_segment
    RETURNING 1
), upserted AS (
    INSERT INTO rfm_scores (org_id, member_id, computed_at, recency_days, frequency, monetary_minor, r, f, m, segment)
    SELECT $1, member_id, $2, recency_days, frequency, monetary_minor, r, f, m, segment FROM segmented
    ON CONFLICT (org_id, member_id) DO UPDATE SET computed_at = excluded.computed_at,
        recency_days = excluded.recency_days, frequency = excluded.frequency,
        monetary_minor = excluded.monetary_minor, r = excluded.r, f = excluded.f, m = excluded.m,
        segment = excluded.segment
    RETURNING 1
)
SELECT (SELECT count(*) FROM upserted), (SELECT count(*) FROM transitions),
       coalesce((SELECT raw_version FROM rfm_orgs WHERE org_id = $1), 0)";

/// Recomputes the scores of `org_id` as of `at` in the read models of `schema`.
pub async fn recompute(
    pool: &PgPool,
    schema: &str,
    org_id: &str,
    at: DateTime<Utc>,
) -> anyhow::Result<RfmSummary> {
    check_schema_name(schema)?;
    let started = std::time::Instant::now();
    let mut tx = pool.begin().await.context("beginning an RFM recomputation")?;
    // Every join of the pass is over the whole org. Without statistics (a table not analyzed
    // since it grew: autovacuum off, or just behind a bulk load) the planner expects one row
    // and joined each member to the org's old scores by a nested loop over the org's index:
    // quadratic, 0.73 s for an org of 2,242 purchasing members against 0.04 s by hash.
    // Two recomputations of one org (the schedule and `projector rfm-recompute`) take turns,
    // so that each sees the segments the other left; batches never wait for either (below).
    sqlx::query(
        "SELECT set_config('search_path', $1, true), set_config('enable_nestloop', 'off', true), \
         pg_advisory_xact_lock(hashtext('loyalty-rfm:' || $1 || ':' || $2))",
    )
    .bind(schema)
    .bind(org_id)
    .execute(&mut *tx)
    .await
    .context("taking the org's RFM lock")?;
    // `raw_version` is read by the pass itself, in the snapshot it reads the purchases in, so
    // `scored_version` is exactly the raw data the scores were computed from: a batch writes
    // both in one transaction (an org without the row had no purchases applied: version 0).
    // The org's row is locked only from the last statement to the commit; held for the whole
    // pass (as before), it held every batch with the org's purchases for as long: lag spikes
    // of a few hundred milliseconds at 800 purchases/s.
    let (members, transitions, raw_version): (i64, i64, i64) = sqlx::query_as(RECOMPUTE)
        .bind(org_id)
        .bind(at)
        .fetch_one(&mut *tx)
        .await
        .with_context(|| format!("recomputing RFM scores of {org_id}"))?;
    sqlx::query(
        "INSERT INTO rfm_orgs (org_id, raw_version, scored_version, scored_at) VALUES ($1, $2, $2, $3) \
         ON CONFLICT (org_id) DO UPDATE SET scored_version = excluded.scored_version, \
         scored_at = excluded.scored_at",
    )
    .bind(org_id)
    .bind(raw_version)
    .bind(at)
    .execute(&mut *tx)
    .await
    .context("recording the scored version")?;
    tx.commit().await.context("committing RFM scores")?;
    metrics::histogram!("projector_rfm_recompute_seconds").record(started.elapsed().as_secs_f64());
    metrics::counter!("projector_rfm_recomputations_total").increment(1);
    tracing::info!(org = org_id, members, transitions, "RFM scores recomputed");
    Ok(RfmSummary {
        org_id: org_id.to_owned(),
        computed_at: at,
        members,
        transitions,
    })
}

/// Recomputes every org that has purchases, as of `at`.
pub async fn recompute_all(
    pool: &PgPool,
    schema: &str,
    at: DateTime<Utc>,
) -> anyhow::Result<Vec<RfmSummary>> {
    check_schema_name(schema)?;
    let orgs: Vec<String> =
        sqlx::query_scalar(&format!("SELECT org_id FROM {schema}.rfm_orgs ORDER BY org_id"))
            .fetch_all(pool)
            .await
            .context("listing orgs for RFM")?;
    let mut out = Vec::with_capacity(orgs.len());
    for org in orgs {
        out.push(recompute(pool, schema, &org, at).await?);
    }
    Ok(out)
}
