//! Audits from the event store alone (SPEC §6 "Replay for audits").
//!
//! [`audit`] rebuilds every read model from the `events` table into a scratch schema, with the
//! same per-event code as the live consumer ([`crate::batch::apply_event`]), and compares it with
//! a consistent snapshot of the live read models, table by table: a fingerprint of each side
//! (its row count and the sum of its rows' seeded 64-bit hashes) and, only where they differ, one
//! hash aggregate naming the rows in one side and not the other. The rebuild is a fold: events
//! streamed aggregate by aggregate, member rows kept in memory, complete aggregates appended to
//! unlogged, index-free tables whose keys are checked only when the comparison differs (rows
//! equal to the live ones are as unique as the live keys keep them); if Postgres refuses
//! anything there, the replay starts again through the live batch path, which parks exactly the
//! culprit. It replays exactly the events the live side has seen (per aggregate up to its
//! checkpoint or last parked event), so a projector that is still catching up does not show up
//! as a difference. The scratch schemas are dropped at the end, whatever happened.
//!
//! What is not compared, and why:
//! - `parked_events.parked_at` (when it was parked) and stream messages that could not be read
//!   at all (`aggregate_type = ''`: they have no event-store row to replay);
//! - `rfm_orgs.scored_*` and `rfm_segment_transitions`: they record *when* scores were
//!   recomputed, which the log does not contain. `rfm_scores` of an org are compared when they
//!   are current (no purchase or refund since the last recomputation): the replay recomputes
//!   them as of the same time. Otherwise the report notes how far behind they are.
//!
//! [`as_of`] answers "what was this member's balance and tier at time T".
//!
//! - [`replay`]: the rebuild (the fold, or the live batch path when Postgres refuses it);
//! - [`compare`]: the snapshot of the live side, the table-by-table comparison and the ledger
//!   invariants;
//! - [`as_of`](mod@as_of): a member's account at a time.

use std::fmt;

use anyhow::Context as _;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::check_schema_name;

pub mod as_of;
pub mod compare;
pub mod replay;

pub use as_of::{as_of, AsOf};

/// Statements the audit runs side by side, each on its own connection (the live side's
/// fingerprints and ledger rules, copies, comparisons, RFM passes): that work is Postgres's,
/// and one statement runs on one core.
const AT_ONCE: usize = 2;

/// One row found on one side only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub table: String,
    /// `only in live` or `only in replay`, or `invariant` for a broken ledger rule.
    pub side: String,
    /// The row, as JSON.
    pub row: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.table, self.side, self.row)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableSummary {
    pub table: String,
    pub live_rows: i64,
    pub replay_rows: i64,
    pub differences: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditReport {
    pub events_replayed: usize,
    pub tables: Vec<TableSummary>,
    pub differences: Vec<Difference>,
    pub notes: Vec<String>,
}

impl AuditReport {
    pub fn is_clean(&self) -> bool {
        self.differences.is_empty()
    }
}

impl fmt::Display for AuditReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "replayed {} events from the event store", self.events_replayed)?;
        for t in &self.tables {
            writeln!(
                f,
                "{:<26} live {:>8}  replay {:>8}  differences {}",
                t.table, t.live_rows, t.replay_rows, t.differences
            )?;
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        for difference in &self.differences {
            writeln!(f, "DIFFERENCE {difference}")?;
        }
        if self.is_clean() {
            writeln!(f, "OK: the read models match the event store")
        } else {
            writeln!(f, "FAILED: {} differences", self.differences.len())
        }
    }
}

/// Rebuilds the read models of `schema` (normally `rm`) from the event store and compares.
pub async fn audit(pool: &PgPool, schema: &str) -> anyhow::Result<AuditReport> {
    check_schema_name(schema)?;
    let id = Uuid::new_v4().simple().to_string();
    let live = format!("audit_live_{}", &id[..12]);
    let replay = format!("audit_replay_{}", &id[..12]);
    let result = audit_into(pool, schema, &live, &replay).await;
    for scratch in [&live, &replay] {
        if let Err(error) = sqlx::query(&format!("DROP SCHEMA IF EXISTS {scratch} CASCADE"))
            .execute(pool)
            .await
        {
            tracing::error!(%error, schema = %scratch, "cannot drop an audit scratch schema");
        }
    }
    result
}

async fn audit_into(pool: &PgPool, schema: &str, live: &str, replay: &str) -> anyhow::Result<AuditReport> {
    let started = std::time::Instant::now();
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY tablename")
            .bind(schema)
            .fetch_all(pool)
            .await
            .context("listing read-model tables")?;
    anyhow::ensure!(
        !tables.is_empty(),
        "schema '{schema}' has no read-model tables (migrations not run?)"
    );

    let mut notes = Vec::new();
    let (holder, snapshot) = compare::LiveSnapshot::take(pool).await?;
    sqlx::query(&format!("CREATE SCHEMA {live}"))
        .execute(pool)
        .await?;
    snapshot.copy(pool, schema, live, compare::READ_BY_REPLAY).await?;
    replay::create_tables(pool, schema, replay, &tables, true).await?;
    let behind = replay::limit_to_live(pool, live).await?;
    if behind > 0 {
        notes.push(format!(
            "{behind} events of the store are not yet applied by the live projector: not part of this comparison"
        ));
    }
    let comparable = compare::comparable_tables(pool, schema, &tables, &mut notes).await?;
    // The fingerprints' seed: unknown before the audit runs.
    let seed = Uuid::new_v4().as_u64_pair().0.cast_signed();
    let prepared = started.elapsed();

    // The live side's fingerprints and ledger rules, under the snapshot, while the replay runs.
    let (replayed, live_side) = tokio::try_join!(
        replay::replay(pool, schema, live, replay, &tables, &mut notes),
        compare::live_side(pool, &snapshot, schema, &comparable, seed),
    )?;
    let (mut events, how) = replayed;
    let replayed = started.elapsed();
    let sides = compare::Sides {
        snapshot: &snapshot,
        schema,
        live,
        replay,
        seed,
    };
    let mut compared = rescore_and_compare(pool, sides, &comparable, &live_side).await?;
    if how == replay::Replayed::Fold && !compared.is_clean() {
        // The fold's keys were not checked: a duplicate is what the live side refused.
        if let Some(duplicate) = replay::duplicate_key(pool, schema, replay, &tables).await? {
            let why = format!("the fast replay holds a key the live tables refuse ({duplicate})");
            events =
                replay::replay_through_batches(pool, schema, live, replay, &tables, why, &mut notes).await?;
            compared = rescore_and_compare(pool, sides, &comparable, &live_side).await?;
        }
    }
    holder
        .commit()
        .await
        .context("releasing the snapshot of the live read models")?;
    notes.append(&mut compared.notes);
    let mut report = AuditReport {
        events_replayed: events,
        notes,
        ..compared
    };
    report.differences.extend(live_side.invariants);
    tracing::debug!(?prepared, ?replayed, total = ?started.elapsed(), "audit timings");
    Ok(report)
}

/// The RFM scores recomputed as the live side last did, then every table compared.
async fn rescore_and_compare(
    pool: &PgPool,
    sides: compare::Sides<'_>,
    tables: &[compare::Comparable],
    live_side: &compare::LiveSide,
) -> anyhow::Result<AuditReport> {
    let mut report = AuditReport::default();
    let scored_orgs = replay::rescore_rfm(pool, sides.live, sides.replay, &mut report.notes).await?;
    compare::compare_tables(pool, sides, tables, live_side, &scored_orgs, &mut report).await?;
    Ok(report)
}
