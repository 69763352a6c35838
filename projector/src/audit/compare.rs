//! The comparison: a consistent snapshot of the live read models, compared with the replay
//! table by table (one hash aggregate per table counting each row on both sides), and the
//! ledger rules checked on the snapshot.

use anyhow::Context as _;
use sqlx::PgPool;

use super::{AuditReport, Difference, TableSummary};
use crate::check_schema_name;

/// Tables whose rows depend on when things ran, not on the log.
const NOT_COMPARED: &[&str] = &["rfm_segment_transitions"];
/// Columns left out of the comparison, per table.
const NOT_COMPARED_COLUMNS: &[(&str, &str)] = &[
    ("parked_events", "parked_at"),
    ("rfm_orgs", "scored_version"),
    ("rfm_orgs", "scored_at"),
];

/// Copies the live read models of `schema` into the scratch schema `live`, in one
/// repeatable-read transaction: a consistent snapshot while the projector goes on.
pub(super) async fn snapshot_live(
    pool: &PgPool,
    schema: &str,
    live: &str,
    tables: &[String],
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("CREATE SCHEMA {live}"))
        .execute(&mut *tx)
        .await?;
    for table in tables {
        sqlx::query(&format!(
            "CREATE UNLOGGED TABLE {live}.{table} AS TABLE {schema}.{table}"
        ))
        .execute(&mut *tx)
        .await
        .with_context(|| format!("copying {schema}.{table}"))?;
    }
    tx.commit().await.context("snapshotting the live read models")?;
    Ok(())
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
    // Hash aggregates of whole tables: enough memory to keep them off disk.
    let mut compare = pool.begin().await.context("beginning the comparison")?;
    sqlx::query("SELECT set_config('work_mem', '512MB', true)")
        .execute(&mut *compare)
        .await?;
    for table in tables {
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
        .bind(scored_orgs)
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
                .bind(scored_orgs)
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
    Ok(())
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
