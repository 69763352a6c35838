//! Audits from the event store alone (SPEC §6 "Replay for audits").
//!
//! [`audit`] rebuilds every read model from the `events` table into a scratch schema, with the
//! same per-event code as the live consumer ([`apply_event`]), and compares it with a
//! consistent snapshot of the live read models, table by table (one hash aggregate per table
//! counting each row on both sides). The rebuild is a fold: events streamed aggregate by
//! aggregate, member rows kept in memory, complete aggregates appended to unlogged, index-free
//! tables whose keys are checked at the end; if Postgres refuses anything there, the replay
//! starts again through the live batch path, which parks exactly the culprit. It replays exactly the events the live
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
use futures::TryStreamExt as _;
use serde::Serialize;
use sqlx::{PgConnection, PgPool, Row as _};
use std::collections::HashMap;
use uuid::Uuid;

use crate::batch::{
    aggregate_of, apply_event, check_schema_name, gap_error, is_poison, parked, Aggregate, Projector,
};
use crate::event::{decode, stored_event_from_row, ApplyError, Decoded, Incoming, MemberKey, EVENT_COLUMNS};
use crate::state::{MemberState, Writes};
use crate::store::{self, Mode};
use domain::wire::StoredEvent;

/// Events per transaction of the batch replay.
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

    // A consistent snapshot of the live side: one repeatable-read transaction.
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("CREATE SCHEMA {live}"))
        .execute(&mut *tx)
        .await?;
    for table in &tables {
        sqlx::query(&format!(
            "CREATE UNLOGGED TABLE {live}.{table} AS TABLE {schema}.{table}"
        ))
        .execute(&mut *tx)
        .await
        .with_context(|| format!("copying {schema}.{table}"))?;
    }
    tx.commit().await.context("snapshotting the live read models")?;

    create_replay_tables(pool, schema, replay, &tables, true).await?;

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

    let snapshot = started.elapsed();
    report.events_replayed = match fold_replay(pool, schema, live, replay, &tables).await {
        Ok(events) => events,
        Err(error) if is_poison(&error) || error.chain().any(|cause| cause.is::<Refused>()) => {
            // Postgres refuses some row: only the batch path can tell which event, and park it
            // exactly as the live side did. Start again on that path.
            report.notes.push(format!(
                "the fast replay was refused by Postgres ({error:#}): replayed through the live batch path"
            ));
            sqlx::query(&format!("DROP SCHEMA {replay} CASCADE"))
                .execute(pool)
                .await
                .context("dropping the refused replay")?;
            create_replay_tables(pool, schema, replay, &tables, false).await?;
            batch_replay(pool, live, replay).await?
        }
        Err(error) => return Err(error),
    };

    let replayed = started.elapsed();
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

    // Hash aggregates of whole tables: enough memory to keep them off disk.
    let mut compare = pool.begin().await.context("beginning the comparison")?;
    sqlx::query("SELECT set_config('work_mem', '512MB', true)")
        .execute(&mut *compare)
        .await?;
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
        .fetch_all(&mut *compare)
        .await?
        .into_iter()
        .filter(|c: &String| !NOT_COMPARED_COLUMNS.contains(&(table.as_str(), c.as_str())))
        .collect();
        let list = columns.join(", ");
        let outer: Vec<String> = columns.iter().map(|c| format!("audit_d.{c}")).collect();
        let outer = outer.join(", ");
        let filter = match table.as_str() {
            "rfm_scores" => "org_id = ANY($1)",
            "parked_events" => "aggregate_type <> '' AND cardinality($1::text[]) >= 0",
            _ => "cardinality($1::text[]) >= 0",
        };
        // One hash aggregate over both sides: each distinct row with (live count - replay
        // count); the rows where that is not 0 are the differences, that many times.
        let select = |side: &str, sign: i32| {
            format!("SELECT {list}, {sign} AS audit_side FROM {side}.{table} WHERE {filter}")
        };
        let rows: Vec<(String, String, i64)> = sqlx::query_as(&format!(
            "WITH audit_d AS (SELECT {list}, sum(audit_side)::bigint AS audit_net FROM ({} UNION ALL {}) u \
             GROUP BY {list} HAVING sum(audit_side) <> 0) \
             SELECT CASE WHEN audit_d.audit_net > 0 THEN 'only in live' ELSE 'only in replay' END, \
             row_to_json(audit_r)::text, abs(audit_d.audit_net) \
             FROM audit_d CROSS JOIN LATERAL (SELECT {outer}) audit_r ORDER BY 1, 2",
            select(live, 1),
            select(replay, -1),
        ))
        .bind(&scored_orgs)
        .fetch_all(&mut *compare)
        .await
        .with_context(|| format!("comparing {table}"))?;
        let rows: Vec<(String, String)> = rows
            .into_iter()
            .flat_map(|(side, row, n)| std::iter::repeat_n((side, row), usize::try_from(n).unwrap_or(0)))
            .collect();
        let count = |side: &str| format!("SELECT count(*) FROM {side}.{table} WHERE {filter}");
        let (live_rows, replay_rows): (i64, i64) =
            sqlx::query_as(&format!("SELECT ({}), ({})", count(live), count(replay)))
                .bind(&scored_orgs)
                .fetch_one(&mut *compare)
                .await
                .with_context(|| format!("counting {table}"))?;
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

    compare.commit().await?;
    let compared = started.elapsed();
    report.differences.extend(check_invariants(pool, live).await?);
    tracing::debug!(?snapshot, ?replayed, ?compared, total = ?started.elapsed(), "audit timings");
    Ok(report)
}

/// Tables the fold upserts (per-org rows) or the RFM recomputation writes: they keep their
/// indexes while the fold loads.
const KEEP_INDEXES: &[&str] = &[
    "rfm_scores",
    "rfm_segment_transitions",
    "org_liability",
    "rfm_orgs",
    "programs",
    "program_tiers",
    "program_rewards",
    "program_stamp_cards",
    "program_locations",
];

/// Creates the scratch tables of the replay, like the live ones. Unlogged: they are thrown
/// away. For the fold (`bare`), the tables it only appends to have no indexes: their keys are
/// checked once loaded ([`check_unique`]), as the live inserts check them, and nothing needs
/// their indexes after.
async fn create_replay_tables(
    pool: &PgPool,
    schema: &str,
    replay: &str,
    tables: &[String],
    bare: bool,
) -> anyhow::Result<()> {
    sqlx::query(&format!("CREATE SCHEMA {replay}"))
        .execute(pool)
        .await?;
    for table in tables {
        let like = if bare && !KEEP_INDEXES.contains(&table.as_str()) {
            "INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED"
        } else {
            "INCLUDING ALL"
        };
        sqlx::query(&format!(
            "CREATE UNLOGGED TABLE {replay}.{table} (LIKE {schema}.{table} {like})"
        ))
        .execute(pool)
        .await
        .with_context(|| format!("creating {replay}.{table}"))?;
    }
    Ok(())
}

/// A row the live path's Postgres would have refused (a duplicate key).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

/// The uniqueness the live tables' primary keys enforce, checked on the loaded replay tables
/// (a hash aggregate per table, much cheaper than building the indexes).
async fn check_unique(
    conn: &mut PgConnection,
    schema: &str,
    replay: &str,
    tables: &[String],
) -> anyhow::Result<()> {
    sqlx::query("SELECT set_config('work_mem', '512MB', false)")
        .execute(&mut *conn)
        .await?;
    for table in tables.iter().filter(|t| !KEEP_INDEXES.contains(&t.as_str())) {
        let keys: Vec<Vec<String>> = sqlx::query_scalar(
            "SELECT array_agg(quote_ident(a.attname::text) ORDER BY k.ord) \
             FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid \
             CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord) \
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum \
             WHERE t.relnamespace = $1::regnamespace AND t.relname = $2 AND c.contype IN ('p', 'u') \
             GROUP BY c.oid ORDER BY c.oid",
        )
        .bind(schema)
        .bind(table)
        .fetch_all(&mut *conn)
        .await
        .with_context(|| format!("reading the keys of {schema}.{table}"))?;
        for key in keys {
            let key = key.join(", ");
            let duplicate: Option<String> = sqlx::query_scalar(&format!(
                "SELECT row_to_json(d)::text FROM (SELECT {key} FROM {replay}.{table} \
                 GROUP BY {key} HAVING count(*) > 1 LIMIT 1) d"
            ))
            .fetch_optional(&mut *conn)
            .await
            .with_context(|| format!("checking the keys of the replay of {table}"))?;
            if let Some(duplicate) = duplicate {
                return Err(Refused(format!("duplicate key in {table}: {duplicate}")).into());
            }
        }
    }
    sqlx::query("RESET work_mem").execute(&mut *conn).await?;
    Ok(())
}

/// Events per flush of the fold (whole aggregates: a flush ends at an aggregate boundary).
const FOLD_CHUNK: usize = 20_000;
/// Events per message from the reader to the fold.
const READ_CHUNK: usize = 1_000;

type Chunk = Vec<(StoredEvent, Result<Decoded, ApplyError>)>;

/// The replay as one fold: the events the live side has seen, streamed aggregate by aggregate
/// in sequence order (decoded by the reader task), applied by [`apply_event`] exactly as a
/// live batch applies them, to member rows held in memory; complete aggregates are written
/// with [`store::flush`] in [`Mode::Append`] by a writer task (while the fold goes on), in
/// transactions that need no durability. Postgres checks each row as in the live path (types,
/// `CHECK`s, and at the end uniqueness): any refusal fails the fold with that error.
///
/// Equivalent to the batch replay because what an event does depends only on the earlier
/// events of its aggregate (every read model row belongs to one member or one program, or
/// is a sum over them), and the batch path loads every row an event reads.
async fn fold_replay(
    pool: &PgPool,
    schema: &str,
    live: &str,
    replay: &str,
    tables: &[String],
) -> anyhow::Result<usize> {
    let started = std::time::Instant::now();
    let (events_tx, mut events) = tokio::sync::mpsc::channel::<Chunk>(16);
    let reader = AbortOnDrop(tokio::spawn(read_for_fold(
        pool.clone(),
        live.to_owned(),
        events_tx,
    )));
    let (flush_tx, flushes) = tokio::sync::mpsc::channel(1);
    let writer = AbortOnDrop(tokio::spawn(write_folded(
        pool.clone(),
        replay.to_owned(),
        flushes,
    )));

    let mut members: HashMap<MemberKey, MemberState> = HashMap::new();
    let mut blocked: HashMap<Aggregate, i64> = HashMap::new();
    let mut writes = Writes::default();
    let mut current: Option<(Aggregate, i64)> = None;
    let (mut read, mut in_chunk) = (0, 0);
    'fold: while let Some(chunk) = events.recv().await {
        for (event, decoded) in chunk {
            read += 1;
            let aggregate = aggregate_of(&event);
            let expected = match &mut current {
                Some((open, expected)) if *open == aggregate => expected,
                _ => {
                    // The previous aggregate is complete.
                    if in_chunk >= FOLD_CHUNK {
                        let done = (std::mem::take(&mut members), std::mem::take(&mut writes));
                        blocked.clear();
                        in_chunk = 0;
                        if flush_tx.send(done).await.is_err() {
                            break 'fold;
                        }
                    }
                    &mut current.insert((aggregate.clone(), 1)).1
                }
            };
            in_chunk += 1;
            // The batch planner's checks, in its order: behind a parked event, redelivery, gap.
            if blocked
                .get(&aggregate)
                .is_some_and(|root| event.sequence >= *root)
            {
                apply_event(&mut members, &mut blocked, &mut writes, &event, decoded);
                continue;
            }
            if event.sequence < *expected {
                continue;
            }
            if event.sequence > *expected {
                let error = gap_error(*expected, event.sequence);
                writes.parked.push(parked(&event, error, None));
                blocked.insert(aggregate, event.sequence);
                continue;
            }
            *expected = event.sequence + 1;
            apply_event(&mut members, &mut blocked, &mut writes, &event, decoded);
        }
    }
    flush_tx.send((members, writes)).await.ok();
    drop(flush_tx);
    drop(events);
    // The writer's error first: a refused row is what the caller must see.
    join(writer).await?;
    join(reader).await?;

    let loaded = started.elapsed();
    let mut conn = pool.acquire().await.context("acquiring a connection")?;
    sqlx::query("SELECT set_config('search_path', $1, false)")
        .bind(replay)
        .execute(&mut *conn)
        .await?;
    let finished = async {
        store::write_rfm_members(&mut conn).await?;
        check_unique(&mut conn, schema, replay, tables).await
    }
    .await;
    sqlx::query("RESET search_path").execute(&mut *conn).await?;
    finished?;
    tracing::debug!(events = read, ?loaded, total = ?started.elapsed(), "fold replay timings");
    Ok(read)
}

async fn join(task: AbortOnDrop<anyhow::Result<()>>) -> anyhow::Result<()> {
    let mut task = task;
    (&mut task.0).await.context("a replay task panicked")?
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Streams the events to replay, whole aggregates in sequence order, decoded.
async fn read_for_fold(
    pool: PgPool,
    live: String,
    out: tokio::sync::mpsc::Sender<Chunk>,
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await.context("beginning the replay's read")?;
    // Both sides are read in primary-key order and merged: no sort, rows stream at once.
    sqlx::query("SELECT set_config('enable_sort', 'off', true), set_config('enable_hashjoin', 'off', true)")
        .execute(&mut *tx)
        .await?;
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM public.events e \
         JOIN {live}.audit_limits l USING (aggregate_type, aggregate_id) \
         WHERE e.sequence <= l.max_sequence ORDER BY e.aggregate_type, e.aggregate_id, e.sequence"
    );
    let mut rows = sqlx::query(&sql).fetch(&mut *tx);
    let mut chunk = Vec::with_capacity(READ_CHUNK);
    while let Some(row) = rows.try_next().await.context("reading the event store")? {
        let event = stored_event_from_row(&row).context("decoding an events row")?;
        let decoded = decode(&event);
        chunk.push((event, decoded));
        if chunk.len() == READ_CHUNK {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(READ_CHUNK));
            if out.send(full).await.is_err() {
                return Ok(());
            }
        }
    }
    if !chunk.is_empty() {
        out.send(chunk).await.ok();
    }
    Ok(())
}

/// Writes the fold's complete aggregates into the replay schema.
async fn write_folded(
    pool: PgPool,
    replay: String,
    mut chunks: tokio::sync::mpsc::Receiver<(HashMap<MemberKey, MemberState>, Writes)>,
) -> anyhow::Result<()> {
    while let Some((members, writes)) = chunks.recv().await {
        let mut tx = pool.begin().await.context("beginning a replay write")?;
        // Throwaway tables: a crash loses nothing the audit would keep.
        sqlx::query(
            "SELECT set_config('search_path', $1, true), set_config('synchronous_commit', 'off', true)",
        )
        .bind(&replay)
        .execute(&mut *tx)
        .await?;
        store::flush(&mut tx, &members, &writes, Mode::Append).await?;
        tx.commit().await.context("committing a replay write")?;
    }
    Ok(())
}

/// The replay through the live consumer's own batches (fallback for batches Postgres refuses
/// included), in global order.
async fn batch_replay(pool: &PgPool, live: &str, replay: &str) -> anyhow::Result<usize> {
    let replayer = Projector::new(pool.clone(), replay)?;
    let mut replayed = 0;
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
        replayed += batch.received;
    }

    Ok(replayed)
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
        balance: member.points.balance,
        lifetime_earned: member.points.lifetime_earned,
        redeemed: member.points.redeemed,
        expired: member.points.expired,
        clawed_back: member.points.clawed_back,
        adjusted: member.points.adjusted,
        qualifying_points: member.qualifying_points(at, window),
        tier: member.tier.name.clone(),
        multiplier_bps: member.tier.multiplier_bps,
        next_expiry_points: next.map(|(p, _)| p),
        next_expiry_at: next.map(|(_, t)| t),
        program_version: program.version,
    }))
}
