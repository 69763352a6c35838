//! The comparison: the live read models under one snapshot held for the whole audit (their
//! fingerprints and the ledger rules taken while the replay runs), compared with the replay table
//! by table, two at a time: the replay's fingerprint against the live one, and only where they
//! differ a copy of the live table under the snapshot and a hash aggregate naming the rows.

use std::collections::HashMap;

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _};
use sqlx::{Connection as _, PgConnection, PgPool, Postgres, Transaction};

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

/// Tables the replay itself reads from the live side (what it has seen, what was parked, when
/// RFM was last scored): copied before the fold. The others are read where they are, under the
/// snapshot, and copied only when their fingerprints differ.
pub(super) const READ_BY_REPLAY: &[&str] = &["projection_checkpoints", "parked_events", "rfm_orgs"];

/// The live read models as of one moment while the projector goes on: the snapshot exported by
/// a repeatable-read transaction held open for the whole audit (the holder), which every
/// live-side statement imports (fingerprints, ledger rules and the copies a row-by-row comparison
/// needs). Nothing written after it is visible to it, the replay included: a comparison naming
/// rows joins the replay with a copy of the live table made under the snapshot.
pub(super) struct LiveSnapshot {
    id: String,
}

/// The transaction whose snapshot a [`LiveSnapshot`] imports: valid while it is open.
pub(super) type SnapshotHolder = Transaction<'static, Postgres>;

impl LiveSnapshot {
    pub(super) async fn take(pool: &PgPool) -> anyhow::Result<(SnapshotHolder, Self)> {
        let mut holder = pool.begin().await.context("beginning the snapshot")?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *holder)
            .await?;
        let id = sqlx::query_scalar("SELECT pg_export_snapshot()")
            .fetch_one(&mut *holder)
            .await
            .context("exporting the snapshot of the live read models")?;
        Ok((holder, Self { id }))
    }

    /// A transaction on `conn` that sees the live read models as of the snapshot.
    async fn begin<'c>(&self, conn: &'c mut PgConnection) -> anyhow::Result<Transaction<'c, Postgres>> {
        let mut tx = conn.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!("SET TRANSACTION SNAPSHOT '{}'", self.id))
            .execute(&mut *tx)
            .await
            .context("importing the snapshot of the live read models")?;
        Ok(tx)
    }

    /// Copies `tables` of `schema` as of the snapshot into the scratch schema `live`,
    /// [`AT_ONCE`] at a time.
    pub(super) async fn copy(
        &self,
        pool: &PgPool,
        schema: &str,
        live: &str,
        tables: &[&str],
    ) -> anyhow::Result<()> {
        // Futures made by an async fn, not a closure: a closure's borrowed argument would make
        // the audit's future impossible to prove `Send` for a spawned task.
        let copies: Vec<_> = tables
            .iter()
            .map(|table| self.copy_table(pool, schema, live, table))
            .collect();
        futures::stream::iter(copies)
            .buffer_unordered(AT_ONCE)
            .try_collect::<()>()
            .await
    }

    async fn copy_table(&self, pool: &PgPool, schema: &str, live: &str, table: &str) -> anyhow::Result<()> {
        let mut conn = pool.acquire().await.context("acquiring a connection")?;
        self.copy_on(&mut conn, schema, live, table).await
    }

    /// Copies one table as of the snapshot, on `conn`, unless an earlier comparison did.
    async fn copy_on(
        &self,
        conn: &mut PgConnection,
        schema: &str,
        live: &str,
        table: &str,
    ) -> anyhow::Result<()> {
        let mut tx = self.begin(conn).await?;
        sqlx::query(&format!(
            "CREATE UNLOGGED TABLE IF NOT EXISTS {live}.{table} AS TABLE {schema}.{table}"
        ))
        .execute(&mut *tx)
        .await
        .with_context(|| format!("copying {schema}.{table}"))?;
        tx.commit().await.context("snapshotting the live read models")
    }
}

/// A table to compare, with the columns compared.
pub(super) struct Comparable {
    table: String,
    columns: Vec<String>,
}

impl Comparable {
    /// The rows compared: of `rfm_scores` only those of the orgs (`$1`) whose scores are
    /// current; of `parked_events` those of readable messages.
    fn filter(&self) -> &'static str {
        match self.table.as_str() {
            "rfm_scores" => "org_id = ANY($1)",
            "parked_events" => "aggregate_type <> '' AND cardinality($1::text[]) >= 0",
            _ => "cardinality($1::text[]) >= 0",
        }
    }

    /// Whether which rows are compared depends on the orgs rescored after the replay.
    fn after_rescoring(&self) -> bool {
        self.table == "rfm_scores"
    }
}

/// The tables of `schema` to compare and their columns; a note for each table left out.
pub(super) async fn comparable_tables(
    pool: &PgPool,
    schema: &str,
    tables: &[String],
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<Comparable>> {
    let columns: Vec<(String, Vec<String>)> = sqlx::query_as(
        "SELECT table_name::text, array_agg(quote_ident(column_name::text) ORDER BY ordinal_position) \
         FROM information_schema.columns WHERE table_schema = $1 GROUP BY table_name",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .context("listing the read models' columns")?;
    let mut comparable = Vec::new();
    for table in tables {
        if NOT_COMPARED.contains(&table.as_str()) {
            notes.push(format!(
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
        comparable.push(Comparable {
            table: table.clone(),
            columns,
        });
    }
    Ok(comparable)
}

/// A side of a table: its row count and the exact sum of its rows' seeded hashes, as text.
type Fingerprint = (i64, String);

/// What the live side gives the comparison, computed under the snapshot while the replay runs.
pub(super) struct LiveSide {
    fingerprints: HashMap<String, Fingerprint>,
    pub(super) invariants: Vec<Difference>,
}

/// The live fingerprints of `tables` (those whose rows compared do not depend on the
/// rescoring) and the ledger rules, under the snapshot: the rules on one connection, the
/// fingerprints one after another on the others ([`AT_ONCE`] statements at a time).
pub(super) async fn live_side(
    pool: &PgPool,
    snapshot: &LiveSnapshot,
    schema: &str,
    tables: &[Comparable],
    seed: i64,
) -> anyhow::Result<LiveSide> {
    // Futures made by async fns, not closures: see `LiveSnapshot::copy`.
    let fingerprints: Vec<_> = tables
        .iter()
        .filter(|t| !t.after_rescoring())
        .map(|table| live_fingerprint(pool, snapshot, schema, table, seed))
        .collect();
    let fingerprints = futures::stream::iter(fingerprints)
        .buffer_unordered((AT_ONCE - 1).max(1))
        .try_collect::<HashMap<String, Fingerprint>>();
    let (invariants, fingerprints) = tokio::try_join!(live_invariants(pool, snapshot, schema), fingerprints)?;
    Ok(LiveSide {
        fingerprints,
        invariants,
    })
}

async fn live_fingerprint(
    pool: &PgPool,
    snapshot: &LiveSnapshot,
    schema: &str,
    table: &Comparable,
    seed: i64,
) -> anyhow::Result<(String, Fingerprint)> {
    let mut conn = pool.acquire().await.context("acquiring a connection")?;
    let mut tx = snapshot.begin(&mut conn).await?;
    let print = fingerprint(&mut tx, schema, table, &[], seed).await?;
    tx.commit().await?;
    Ok((table.table.clone(), print))
}

async fn live_invariants(
    pool: &PgPool,
    snapshot: &LiveSnapshot,
    schema: &str,
) -> anyhow::Result<Vec<Difference>> {
    let mut conn = pool.acquire().await.context("acquiring a connection")?;
    let mut tx = snapshot.begin(&mut conn).await?;
    let found = invariants_in(&mut tx, schema).await?;
    tx.commit().await?;
    Ok(found)
}

/// One side's fingerprint of `table` in `side` (a schema): its row count and the sum of its
/// rows' 64-bit hashes, seeded at random per audit so that no one can make rows to match a
/// known sum; one scan without a hash table. A row's hash is `hash_record_extended` hashed once
/// more: that function adds up its columns' hashes linearly, so values swapped between rows
/// would leave the sum unchanged. Equal fingerprints mean equal tables (a difference escapes
/// only if the hashes of the differing rows sum to exactly 0, about one chance in 2^64).
async fn fingerprint(
    conn: &mut PgConnection,
    side: &str,
    table: &Comparable,
    scored_orgs: &[String],
    seed: i64,
) -> anyhow::Result<Fingerprint> {
    let list = table.columns.join(", ");
    sqlx::query_as(&format!(
        "SELECT count(*), coalesce(sum(hashint8extended(hash_record_extended(ROW({list}), $2), $2)), 0)::text \
         FROM {side}.{name} WHERE {filter}",
        name = table.table,
        filter = table.filter(),
    ))
    .bind(scored_orgs)
    .bind(seed)
    .fetch_one(conn)
    .await
    .with_context(|| format!("fingerprinting {side}.{}", table.table))
}

/// Where a comparison finds each side.
#[derive(Clone, Copy)]
pub(super) struct Sides<'a> {
    pub(super) snapshot: &'a LiveSnapshot,
    /// The live read models.
    pub(super) schema: &'a str,
    /// The scratch schema of copies of live tables.
    pub(super) live: &'a str,
    pub(super) replay: &'a str,
    /// The fingerprints' seed.
    pub(super) seed: i64,
}

/// Compares every table of `tables` in the replay with the live side, adding a summary per
/// table and every difference to `report`: the replay's fingerprint against the live one (taken
/// by [`live_side`], or now under the snapshot for `rfm_scores`, of `scored_orgs` only); where
/// they differ, the live table is copied under the snapshot and the rows named.
pub(super) async fn compare_tables(
    pool: &PgPool,
    sides: Sides<'_>,
    tables: &[Comparable],
    live_side: &LiveSide,
    scored_orgs: &[String],
    report: &mut AuditReport,
) -> anyhow::Result<()> {
    let comparisons: Vec<_> = tables
        .iter()
        .map(|table| {
            compare_table(
                pool,
                sides,
                table,
                live_side.fingerprints.get(&table.table),
                scored_orgs,
            )
        })
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

/// One table: the fingerprints, and where they differ the exact comparison, which names the
/// differing rows: a hash aggregate over both sides, each distinct row with how many times it
/// is in the live table and in the replay; rows whose counts differ are the differences, that
/// many times.
async fn compare_table(
    pool: &PgPool,
    at: Sides<'_>,
    table: &Comparable,
    live_print: Option<&Fingerprint>,
    scored_orgs: &[String],
) -> anyhow::Result<(TableSummary, Vec<Difference>)> {
    let mut conn = pool.acquire().await.context("acquiring a connection")?;
    let conn = &mut *conn;
    let started = std::time::Instant::now();
    let live_print = match live_print {
        Some(print) => print.clone(),
        None => {
            let mut tx = at.snapshot.begin(conn).await?;
            let print = fingerprint(&mut tx, at.schema, table, scored_orgs, at.seed).await?;
            tx.commit().await?;
            print
        }
    };
    let replay_print = fingerprint(conn, at.replay, table, scored_orgs, at.seed).await?;
    let same = live_print == replay_print;
    let differences = if same {
        Vec::new()
    } else {
        at.snapshot
            .copy_on(conn, at.schema, at.live, &table.table)
            .await?;
        differences(conn, at.live, at.replay, table, scored_orgs).await?
    };
    tracing::debug!(table = table.table, rows = live_print.0, same, elapsed = ?started.elapsed(), "compared");
    let summary = TableSummary {
        table: table.table.clone(),
        live_rows: live_print.0,
        replay_rows: replay_print.0,
        differences: differences.len(),
    };
    Ok((summary, differences))
}

/// The rows of `table` that are not in both sides as many times, named as JSON, in order.
async fn differences(
    conn: &mut PgConnection,
    live: &str,
    replay: &str,
    table: &Comparable,
    scored_orgs: &[String],
) -> anyhow::Result<Vec<Difference>> {
    let (columns, filter) = (&table.columns, table.filter());
    let table = table.table.as_str();
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

/// The ledger rules of SPEC §4 on the read models of `schema`, in the transaction of `conn`:
/// per org Σ balances = liability, every journal entry has two postings summing to 0, every
/// balance = Σ its member postings.
async fn invariants_in(conn: &mut PgConnection, schema: &str) -> anyhow::Result<Vec<Difference>> {
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
    // Whole-table joins and aggregates: enough memory to keep them off disk (for the
    // transaction only).
    sqlx::query("SELECT set_config('work_mem', '512MB', true)")
        .execute(&mut *conn)
        .await?;
    let mut out = Vec::new();
    for (name, sql) in checks {
        let started = std::time::Instant::now();
        let rows: Vec<String> = sqlx::query_scalar(&sql)
            .fetch_all(&mut *conn)
            .await
            .with_context(|| format!("checking {name}"))?;
        tracing::debug!(name, elapsed = ?started.elapsed(), "checked");
        out.extend(rows.into_iter().map(|row| Difference {
            table: name.to_owned(),
            side: "invariant".to_owned(),
            row,
        }));
    }
    Ok(out)
}
