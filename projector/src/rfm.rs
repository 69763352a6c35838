//! RFM scores and segments (SPEC §6), recomputed per org in one set-based pass.
//!
//! Raw data (`purchases`, maintained per event) gives, as of the recomputation time `T`, for
//! each purchasing member (at least one purchase ever):
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

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::batch::check_schema_name;

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
SELECT (SELECT count(*) FROM upserted), (SELECT count(*) FROM transitions)";

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
    sqlx::query("SELECT set_config('search_path', $1, true)")
        .bind(schema)
        .execute(&mut *tx)
        .await?;
    // Lock the org's row first: a batch applying purchases of this org waits for us (or we for
    // it), so `scored_version` is exactly the raw data the scores were computed from.
    sqlx::query("INSERT INTO rfm_orgs (org_id, raw_version) VALUES ($1, 0) ON CONFLICT (org_id) DO NOTHING")
        .bind(org_id)
        .execute(&mut *tx)
        .await
        .context("registering the org for RFM")?;
    let raw_version: i64 =
        sqlx::query_scalar("SELECT raw_version FROM rfm_orgs WHERE org_id = $1 FOR UPDATE")
            .bind(org_id)
            .fetch_one(&mut *tx)
            .await
            .context("locking the org's RFM state")?;
    let (members, transitions): (i64, i64) = sqlx::query_as(RECOMPUTE)
        .bind(org_id)
        .bind(at)
        .fetch_one(&mut *tx)
        .await
        .with_context(|| format!("recomputing RFM scores of {org_id}"))?;
    sqlx::query("UPDATE rfm_orgs SET scored_version = $2, scored_at = $3 WHERE org_id = $1")
        .bind(org_id)
        .bind(raw_version)
        .bind(at)
        .execute(&mut *tx)
        .await?;
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
