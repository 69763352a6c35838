//! The comparison: a consistent snapshot of the live read models, compared with the replay
//! table by table, two tables at a time (a fingerprint of each side, and where they differ a
//! hash aggregate naming the differing rows), and the ledger rules checked on the snapshot.

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _};
use sqlx::{Connection as _, PgConnection, PgPool};
use uuid::Uuid;

use super::{AuditReport, Difference, TableSummary, AT_ONCE};
use crate::check_schema_name;

/// Tables whose rows depend on when things ran, not on the log.
const NOT_COMPARED: &[&str] = &["rfm_segment_transitions"];
/// Columns left out of the comparison, per table.
const NOT_COMPARED_COLUMNS: &[(&str, &str)] = &[
    ("parked_events", "parked_at"),
    ("rfm_orgs", "scored_version"),
    ("rfm_orgs", "scored_at"),
];

/// Copies the live read models of `schema` into the scratch schema `live`: a consistent
/// snapshot while the projector goes on. The copy is the snapshot (a snapshot held open would
/// not see the replay, written after it); each table is copied in a transaction importing one
/// repeatable-read snapshot, [`AT_ONCE`] at a time.
pub(super) async fn snapshot_live(
    pool: &PgPool,
    schema: &str,
    live: &str,
    tables: &[String],
) -> anyhow::Result<()> {
    sqlx::query(&format!("CREATE SCHEMA {live}"))
        .execute(pool)
        .await?;
    let mut holder = pool.begin().await.context("beginning the snapshot")?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *holder)
        .await?;
    let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut *holder)
        .await
        .context("exporting the snapshot of the live read models")?;
    // Futures made by an async fn, not a closure: a closure's borrowed argument would make the
    // audit's future impossible to prove `Send` for a spawned task.
    let copies: Vec<_> = tables
        .iter()
        .map(|table| copy_table(pool, &snapshot, schema, live, table))
        .collect();
    futures::stream::iter(copies)
        .buffer_unordered(AT_ONCE)
        .try_collect::<()>()
        .await?;
    holder.commit().await?;
    Ok(())
}

/// Copies one table as of the exported `snapshot`.
async fn copy_table(
    pool: &PgPool,
    snapshot: &str,
    schema: &str,
    live: &str,
    table: &str,
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("SET TRANSACTION SNAPSHOT '{snapshot}'"))
        .execute(&mut *tx)
        .await
        .context("importing the snapshot of the live read models")?;
    sqlx::query(&format!(
        "CREATE UNLOGGED TABLE {live}.{table} AS TABLE {schema}.{table}"
    ))
    .execute(&mut *tx)
    .await
    .with_context(|| format!("copying {schema}.{table}"))?;
    tx.commit().await.context("snapshotting the live read models")
}

/// Compares every table of `live` and `replay` (laid out like `schema`), adding a summary per
/// table and every difference to `report`. `rfm_scores` only of `scored_orgs`.
pub(super) async fn compare_tables(
    pool: &PgPool,
    schema: &str,
    live: &str,
    replay: &str,
    tables: &[String],
    scored_orgs: &[String],
    report: &mut AuditReport,
) -> anyhow::Result<()> {
    let columns: Vec<(String, Vec<String>)> = sqlx::query_as(
        "SELECT table_name::text, array_agg(quote_ident(column_name::text) ORDER BY ordinal_position) \
         FROM information_schema.columns WHERE table_schema = $1 GROUP BY table_name",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .context("listing the read models' columns")?;
    let mut compared = Vec::new();
    for table in tables {
        if NOT_COMPARED.contains(&table.as_str()) {
            report.notes.push(format!(
                "{table} not compared: it records when recomputations ran"
            ));
            continue;
        }
        let columns = columns
            .iter()
            .find(|(t, _)| t == table)
            .map(|(_, c)| c.clone())
            .with_context(|| format!("no columns for {schema}.{table}"))?
            .into_iter()
            .filter(|c| !NOT_COMPARED_COLUMNS.contains(&(table.as_str(), c.as_str())))
            .collect::<Vec<_>>();
        compared.push((table, columns));
    }
    // The fingerprints' seed: unknown before the audit runs.
    let seed = Uuid::new_v4().as_u64_pair().0.cast_signed();
    let comparisons: Vec<_> = compared
        .into_iter()
        .map(|(table, columns)| compare_table(pool, live, replay, table, columns, scored_orgs, seed))
        .collect();
    let results: Vec<(TableSummary, Vec<Difference>)> = futures::stream::iter(comparisons)
        .buffered(AT_ONCE)
        .try_collect()
        .await?;
    for (summary, differences) in results {
        report.tables.push(summary);
        report.differences.extend(differences);
    }
    Ok(())
}

/// One table. First each side's fingerprint: its row count and the sum of its rows' 64-bit
/// hashes, seeded at random per audit so that no one can make rows to match a known sum; one
/// scan per side without a hash table. A row's hash is `hash_record_extended` hashed once more:
/// that function adds up its columns' hashes linearly, so values swapped between rows would
/// leave the sum unchanged. Equal fingerprints mean equal tables (a difference escapes only if
/// the hashes of the differing rows sum to exactly 0, about one chance in 2^64). Otherwise the
/// exact comparison names the differing rows: a hash aggregate over both sides, each distinct
/// row with how many times it is in the live table and in the replay; rows whose counts differ
/// are the differences, that many times.
async fn compare_table(
    pool: &PgPool,
    live: &str,
    replay: &str,
    table: &str,
    columns: Vec<String>,
    scored_orgs: &[String],
    seed: i64,
) -> anyhow::Result<(TableSummary, Vec<Difference>)> {
    let mut conn = pool.acquire().await.context("acquiring a connection")?;
    let conn = &mut *conn;
    let started = std::time::Instant::now();
    let list = columns.join(", ");
    let filter = match table {
        "rfm_scores" => "org_id = ANY($1)",
        "parked_events" => "aggregate_type <> '' AND cardinality($1::text[]) >= 0",
        _ => "cardinality($1::text[]) >= 0",
    };
    let fingerprint = |side: &str| {
        format!(
            "SELECT count(*), coalesce(sum(hashint8extended(hash_record_extended(ROW({list}), $2), $2)), 0) \
             AS audit_sum FROM {side}.{table} WHERE {filter}"
        )
    };
    let (live_rows, replay_rows, same): (i64, i64, bool) = sqlx::query_as(&format!(
        "SELECT l.count, r.count, l.count = r.count AND l.audit_sum = r.audit_sum FROM ({}) l, ({}) r",
        fingerprint(live),
        fingerprint(replay),
    ))
    .bind(scored_orgs)
    .bind(seed)
    .fetch_one(&mut *conn)
    .await
    .with_context(|| format!("fingerprinting {table}"))?;
    let differences = if same {
        Vec::new()
    } else {
        differences(conn, live, replay, table, &columns, filter, scored_orgs).await?
    };
    tracing::debug!(table, rows = live_rows, same, elapsed = ?started.elapsed(), "compared");
    let summary = TableSummary {
        table: table.to_owned(),
        live_rows,
        replay_rows,
        differences: differences.len(),
    };
    Ok((summary, differences))
}

/// The rows of `table` that are not in both sides as many times, named as JSON, in order.
async fn differences(
    conn: &mut PgConnection,
    live: &str,
    replay: &str,
    table: &str,
    columns: &[String],
    filter: &str,
    scored_orgs: &[String],
) -> anyhow::Result<Vec<Difference>> {
    // Enough memory to keep the aggregate of a whole table off disk, for this transaction only.
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT set_config('work_mem', '512MB', true)")
        .execute(&mut *tx)
        .await?;
    let list = columns.join(", ");
    let named: Vec<String> = columns.iter().map(|c| format!("audit_d.{c}")).collect();
    let named = named.join(", ");
    let select = |side: &str, sign: i32| {
        format!("SELECT {list}, {sign} AS audit_side FROM {side}.{table} WHERE {filter}")
    };
    let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
        "SELECT row_to_json(audit_r)::text, audit_d.audit_net \
         FROM (SELECT {list}, sum(audit_side) AS audit_net FROM ({} UNION ALL {}) u \
               GROUP BY {list} HAVING sum(audit_side) <> 0) audit_d \
         CROSS JOIN LATERAL (SELECT {named}) audit_r",
        select(live, 1),
        select(replay, -1),
    ))
    .bind(scored_orgs)
    .fetch_all(&mut *tx)
    .await
    .with_context(|| format!("comparing {table}"))?;
    tx.commit().await?;
    let mut differences: Vec<Difference> = rows
        .into_iter()
        .flat_map(|(row, net)| {
            let side = if net > 0 { "only in live" } else { "only in replay" };
            let difference = Difference {
                table: table.to_owned(),
                side: side.to_owned(),
                row,
            };
            std::iter::repeat_n(
                difference,
                usize::try_from(net.unsigned_abs()).unwrap_or(usize::MAX),
            )
        })
        .collect();
    differences.sort_by(|a, b| (&a.side, &a.row).cmp(&(&b.side, &b.row)));
    Ok(differences)
}

/// The ledger rules of SPEC §4 on the read models of `schema`: per org Σ balances = liability,
/// every journal entry has two postings summing to 0, every balance = Σ its member postings.
pub async fn check_invariants(conn: &mut PgConnection, schema: &str) -> anyhow::Result<Vec<Difference>> {
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
                // Postings summed per entry first: one hash aggregate and one hash join (joined
                // first, the planner sorts both tables, each worker all the postings).
                "SELECT row_to_json(d)::text FROM (SELECT j.org_id, j.member_id, j.sequence, \
                 coalesce(p.sum, 0) AS sum, coalesce(p.postings, 0) AS postings \
                 FROM {schema}.journal_entries j LEFT JOIN \
                 (SELECT org_id, member_id, sequence, sum(delta) AS sum, count(*) AS postings \
                  FROM {schema}.postings GROUP BY org_id, member_id, sequence) p USING (org_id, member_id, sequence) \
                 WHERE coalesce(p.sum, 0) <> 0 OR coalesce(p.postings, 0) <> 2) d"
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
    let mut tx = conn.begin().await?;
    // Whole-table joins and aggregates: enough memory to keep them off disk.
    sqlx::query("SELECT set_config('work_mem', '512MB', true)")
        .execute(&mut *tx)
        .await?;
    let mut out = Vec::new();
    for (name, sql) in checks {
        let started = std::time::Instant::now();
        let rows: Vec<String> = sqlx::query_scalar(&sql)
            .fetch_all(&mut *tx)
            .await
            .with_context(|| format!("checking {name}"))?;
        tracing::debug!(name, elapsed = ?started.elapsed(), "checked");
        out.extend(rows.into_iter().map(|row| Difference {
            table: name.to_owned(),
            side: "invariant".to_owned(),
            row,
        }));
    }
    tx.commit().await?;
    Ok(out)
}
