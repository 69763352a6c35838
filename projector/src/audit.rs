//! Audits from the event store alone (SPEC §6 "Replay for audits").
//!
//! [`audit`] rebuilds every read model from the `events` table into a scratch schema, with the
//! same apply code as the live consumer, and compares it with a consistent snapshot of the live
//! read models, table by table (`EXCEPT ALL` both ways). It replays exactly the events the live
//! side has seen (per aggregate up to its checkpoint or last parked event), so a projector
//! that is still catching up does not show up as a difference. The scratch schemas are dropped
//! at the end, whatever happened.
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

use std::fmt;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate as _;
use serde::Serialize;
use sqlx::{PgPool, Row as _};
use uuid::Uuid;

use crate::batch::{check_schema_name, Projector};
use crate::event::{decode, stored_event_from_row, Decoded, Incoming, EVENT_COLUMNS};

/// Events per replay transaction.
const REPLAY_BATCH: i64 = 5_000;

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

/// Tables whose rows depend on when things ran, not on the log.
const NOT_COMPARED: &[&str] = &["rfm_segment_transitions"];
/// Columns left out of the comparison, per table.
const NOT_COMPARED_COLUMNS: &[(&str, &str)] = &[
    ("parked_events", "parked_at"),
    ("rfm_orgs", "scored_version"),
    ("rfm_orgs", "scored_at"),
];

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
    let mut report = AuditReport::default();
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

    // A consistent snapshot of the live side: one repeatable-read transaction.
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("CREATE SCHEMA {live}"))
        .execute(&mut *tx)
        .await?;
    for table in &tables {
        sqlx::query(&format!("CREATE TABLE {live}.{table} AS TABLE {schema}.{table}"))
            .execute(&mut *tx)
            .await
            .with_context(|| format!("copying {schema}.{table}"))?;
    }
    tx.commit().await.context("snapshotting the live read models")?;

    sqlx::query(&format!("CREATE SCHEMA {replay}"))
        .execute(pool)
        .await?;
    for table in &tables {
        sqlx::query(&format!(
            "CREATE TABLE {replay}.{table} (LIKE {schema}.{table} INCLUDING ALL)"
        ))
        .execute(pool)
        .await
        .with_context(|| format!("creating {replay}.{table}"))?;
    }

    // Exactly what the live side has seen: per aggregate up to its checkpoint or parked event.
    sqlx::query(&format!(
        "CREATE TABLE {live}.audit_limits AS \
         SELECT aggregate_type, aggregate_id, max(seq) AS max_sequence FROM ( \
           SELECT aggregate_type, aggregate_id, last_sequence AS seq FROM {live}.projection_checkpoints \
           UNION ALL SELECT aggregate_type, aggregate_id, sequence FROM {live}.parked_events \
           WHERE aggregate_type <> '') s GROUP BY aggregate_type, aggregate_id"
    ))
    .execute(pool)
    .await
    .context("computing replay limits")?;
    sqlx::query(&format!(
        "ALTER TABLE {live}.audit_limits ADD PRIMARY KEY (aggregate_type, aggregate_id)"
    ))
    .execute(pool)
    .await?;

    let behind: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM public.events e LEFT JOIN {live}.audit_limits l USING (aggregate_type, aggregate_id) \
         WHERE e.sequence > coalesce(l.max_sequence, 0)"
    ))
    .fetch_one(pool)
    .await
    .context("counting events the live side has not seen")?;
    if behind > 0 {
        report.notes.push(format!(
            "{behind} events of the store are not yet applied by the live projector: not part of this comparison"
        ));
    }

    let replayer = Projector::new(pool.clone(), replay)?;
    let mut after = 0_i64;
    loop {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM public.events e \
             JOIN {live}.audit_limits l USING (aggregate_type, aggregate_id) \
             WHERE e.sequence <= l.max_sequence AND e.global_position > $1 \
             ORDER BY e.global_position LIMIT $2"
        ))
        .bind(after)
        .bind(REPLAY_BATCH)
        .fetch_all(pool)
        .await
        .context("reading the event store")?;
        let Some(last) = rows.last() else { break };
        after = last.try_get("global_position")?;
        let incoming: Vec<Incoming> = rows
            .iter()
            .map(|row| {
                stored_event_from_row(row).map(|event| Incoming::Event {
                    event,
                    from_store: true,
                })
            })
            .collect::<Result<_, _>>()?;
        // The live consumer's own path, fallback for batches Postgres refuses included.
        let batch = replayer.process(&incoming).await?;
        report.events_replayed += batch.received;
    }

    // RFM scores as of the live recomputation, for orgs whose scores are current.
    type OrgTuple = (String, i64, Option<i64>, Option<DateTime<Utc>>);
    let orgs: Vec<OrgTuple> = sqlx::query_as(&format!(
        "SELECT org_id, raw_version, scored_version, scored_at FROM {live}.rfm_orgs ORDER BY org_id"
    ))
    .fetch_all(pool)
    .await?;
    let mut scored_orgs = Vec::new();
    for (org, raw, scored, at) in orgs {
        match (scored, at) {
            (Some(scored), Some(at)) if scored == raw => {
                crate::rfm::recompute(pool, replay, &org, at).await?;
                scored_orgs.push(org);
            }
            (Some(scored), Some(at)) => report.notes.push(format!(
                "rfm_scores of {org} not compared: {} purchase/refund events since the recomputation at {at}",
                raw - scored
            )),
            _ => report
                .notes
                .push(format!("rfm_scores of {org} not compared: never recomputed")),
        }
    }

    for table in &tables {
        if NOT_COMPARED.contains(&table.as_str()) {
            report.notes.push(format!(
                "{table} not compared: it records when recomputations ran"
            ));
            continue;
        }
        let columns: Vec<String> = sqlx::query_scalar(
            "SELECT quote_ident(column_name::text) FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
        )
        .bind(schema)
        .bind(table)
        .fetch_all(pool)
        .await?
        .into_iter()
        .filter(|c: &String| !NOT_COMPARED_COLUMNS.contains(&(table.as_str(), c.as_str())))
        .collect();
        let columns = columns.join(", ");
        let filter = match table.as_str() {
            "rfm_scores" => "org_id = ANY($1)",
            "parked_events" => "aggregate_type <> '' AND cardinality($1::text[]) >= 0",
            _ => "cardinality($1::text[]) >= 0",
        };
        let select = |side: &str| format!("SELECT {columns} FROM {side}.{table} WHERE {filter}");
        let rows: Vec<(String, String)> = sqlx::query_as(&format!(
            "SELECT 'only in live', row_to_json(d)::text FROM ({} EXCEPT ALL {}) d \
             UNION ALL SELECT 'only in replay', row_to_json(d)::text FROM ({} EXCEPT ALL {}) d",
            select(live),
            select(replay),
            select(replay),
            select(live)
        ))
        .bind(&scored_orgs)
        .fetch_all(pool)
        .await
        .with_context(|| format!("comparing {table}"))?;
        let count = |side: &str| format!("SELECT count(*) FROM ({}) c", select(side));
        let live_rows: i64 = sqlx::query_scalar(&count(live))
            .bind(&scored_orgs)
            .fetch_one(pool)
            .await?;
        let replay_rows: i64 = sqlx::query_scalar(&count(replay))
            .bind(&scored_orgs)
            .fetch_one(pool)
            .await?;
        report.tables.push(TableSummary {
            table: table.clone(),
            live_rows,
            replay_rows,
            differences: rows.len(),
        });
        report
            .differences
            .extend(rows.into_iter().map(|(side, row)| Difference {
                table: table.clone(),
                side,
                row,
            }));
    }

    report.differences.extend(check_invariants(pool, live).await?);
    Ok(report)
}

/// The ledger rules of SPEC §4 on the read models of `schema`: per org Σ balances = liability,
/// every journal entry has two postings summing to 0, every balance = Σ its member postings.
pub async fn check_invariants(pool: &PgPool, schema: &str) -> anyhow::Result<Vec<Difference>> {
    check_schema_name(schema)?;
    let checks = [
        (
            "invariant: liability = sum of balances",
            format!(
                "SELECT row_to_json(d)::text FROM (SELECT org_id, l.points AS liability, b.balances \
                 FROM {schema}.org_liability l FULL JOIN \
                 (SELECT org_id, sum(balance)::bigint AS balances FROM {schema}.member_balances GROUP BY org_id) b \
                 USING (org_id) WHERE l.points IS DISTINCT FROM coalesce(b.balances, 0)) d"
            ),
        ),
        (
            "invariant: journal entry balanced",
            format!(
                "SELECT row_to_json(d)::text FROM (SELECT j.org_id, j.member_id, j.sequence, \
                 coalesce(sum(p.delta), 0) AS sum, count(p.delta) AS postings \
                 FROM {schema}.journal_entries j LEFT JOIN {schema}.postings p USING (org_id, member_id, sequence) \
                 GROUP BY j.org_id, j.member_id, j.sequence \
                 HAVING coalesce(sum(p.delta), 0) <> 0 OR count(p.delta) <> 2) d"
            ),
        ),
        (
            "invariant: balance = member postings",
            format!(
                "SELECT row_to_json(d)::text FROM (SELECT org_id, member_id, b.balance, p.posted \
                 FROM {schema}.member_balances b FULL JOIN \
                 (SELECT org_id, member_id, sum(delta)::bigint AS posted FROM {schema}.postings \
                  WHERE account = 'member_points' GROUP BY org_id, member_id) p USING (org_id, member_id) \
                 WHERE b.balance IS DISTINCT FROM coalesce(p.posted, 0)) d"
            ),
        ),
    ];
    let mut out = Vec::new();
    for (name, sql) in checks {
        let rows: Vec<String> = sqlx::query_scalar(&sql)
            .fetch_all(pool)
            .await
            .with_context(|| format!("checking {name}"))?;
        out.extend(rows.into_iter().map(|row| Difference {
            table: name.to_owned(),
            side: "invariant".to_owned(),
            row,
        }));
    }
    Ok(out)
}

/// A member's account as the event store had recorded it at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AsOf {
    pub org_id: String,
    pub member_id: Uuid,
    pub at: DateTime<Utc>,
    /// Member events folded (the longest prefix of the history committed at or before `at`).
    pub events: usize,
    pub balance: i64,
    pub lifetime_earned: i64,
    pub redeemed: i64,
    pub expired: i64,
    pub clawed_back: i64,
    pub adjusted: i64,
    pub tier: String,
    pub multiplier_bps: u32,
    /// Points earned by purchases in the program's qualification window ending at `at`.
    pub qualifying_points: i64,
    pub next_expiry_points: Option<i64>,
    pub next_expiry_at: Option<DateTime<Utc>>,
    /// The program version in force at `at`.
    pub program_version: u64,
}

/// The member's balance and tier at `at`, folding `domain::Member` over the events the store
/// had *committed* by then (`events.committed_at`, the committing transaction's time), in
/// sequence order; the fold stops at the first event committed later. Committed time, not the
/// business time of purchases: an offline terminal's purchase printed before `at` but sent
/// after it was not part of the account at `at`, and the balance is only defined along the
/// sequence. `None` when the member was not enrolled at `at`.
pub async fn as_of(
    pool: &PgPool,
    org_id: &str,
    member_id: Uuid,
    at: DateTime<Utc>,
) -> anyhow::Result<Option<AsOf>> {
    let fold = |aggregate_type: &'static str, aggregate_id: String| async move {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM public.events WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence"
        ))
        .bind(aggregate_type)
        .bind(&aggregate_id)
        .fetch_all(pool)
        .await
        .with_context(|| format!("reading the events of {aggregate_type} {aggregate_id}"))?;
        let mut decoded = Vec::new();
        for row in &rows {
            let event = stored_event_from_row(row)?;
            if event.committed_at > at {
                break;
            }
            decoded
                .push(decode(&event).with_context(|| format!("event {} of {aggregate_id}", event.sequence))?);
        }
        anyhow::Ok(decoded)
    };
    let mut program = domain::Program::default();
    for event in fold("program", org_id.to_owned()).await? {
        if let Decoded::Program(_, event) = event {
            program.apply(event);
        }
    }
    let mut member = domain::Member::default();
    let events = fold("member", format!("{org_id}/{member_id}")).await?;
    let count = events.len();
    for event in events {
        if let Decoded::Member(_, event) = event {
            member.apply(event);
        }
    }
    if !member.is_enrolled() {
        return Ok(None);
    }
    let window = program
        .config
        .as_ref()
        .map_or(365, |c| c.qualification_window_days);
    let next = member.next_expiry();
    Ok(Some(AsOf {
        org_id: org_id.to_owned(),
        member_id,
        at,
        events: count,
        balance: member.balance,
        lifetime_earned: member.lifetime_earned,
        redeemed: member.redeemed,
        expired: member.expired,
        clawed_back: member.clawed_back,
        adjusted: member.adjusted,
        qualifying_points: member.qualifying_points(at, window),
        tier: member.tier.name.clone(),
        multiplier_bps: member.tier.multiplier_bps,
        next_expiry_points: next.map(|(p, _)| p),
        next_expiry_at: next.map(|(_, t)| t),
        program_version: program.version,
    }))
}
