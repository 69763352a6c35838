//! What the measured window cost: CPU time of the platform's processes (from `/proc`, read with
//! the `procfs` crate) and the
//! database work (from `pg_stat_database` and the WAL position), so a report can say where the
//! time of a command goes, per command.
//!
//! A watched process counts with its children: for Postgres, pass the postmaster's pid and the
//! backends (live ones, and those that exited, through the postmaster's `cutime`) are included.
//! Linux only; on a system without `/proc` the CPU part is empty.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::Serialize;
use sqlx::PgPool;

/// A process to account for: `name=pid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    pub name: String,
    pub pid: u32,
}

impl std::str::FromStr for Watched {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let (name, pid) = s
            .split_once('=')
            .with_context(|| format!("`{s}` is not <name>=<pid>"))?;
        let pid = pid
            .trim()
            .parse()
            .with_context(|| format!("`{pid}` in `{s}` is not a process id"))?;
        if name.trim().is_empty() {
            bail!("`{s}` has no name before '='");
        }
        Ok(Watched {
            name: name.trim().to_owned(),
            pid,
        })
    }
}

/// CPU ticks of one process: its own (`utime + stime`), those of its children it reaped
/// (`cutime + cstime`), and its parent.
struct Ticks {
    pid: i32,
    own: u64,
    reaped: u64,
    parent: i32,
}

fn ticks(process: &procfs::process::Process) -> Option<Ticks> {
    let stat = process.stat().ok()?;
    Some(Ticks {
        pid: stat.pid,
        own: stat.utime + stat.stime,
        reaped: u64::try_from(stat.cutime + stat.cstime).unwrap_or(0),
        parent: stat.ppid,
    })
}

fn ticks_of(pid: u32) -> Option<Ticks> {
    ticks(&procfs::process::Process::new(i32::try_from(pid).ok()?).ok()?)
}

/// Ticks used so far by `pid`, its reaped children and its live children.
fn ticks_with_children(pid: u32, all: &[Ticks]) -> Option<u64> {
    let process = ticks_of(pid)?;
    let live: u64 = all
        .iter()
        .filter(|child| child.parent == process.pid)
        .map(|child| child.own)
        .sum();
    Some(process.own + process.reaped + live)
}

fn all_processes() -> Vec<Ticks> {
    let Ok(processes) = procfs::process::all_processes() else {
        return Vec::new();
    };
    processes.filter_map(|process| ticks(&process.ok()?)).collect()
}

/// CPU ticks per watched name (plus `loadgen` itself) at one moment.
fn cpu_sample(watched: &[Watched]) -> BTreeMap<String, u64> {
    let all = all_processes();
    let mut sample = BTreeMap::new();
    for w in watched {
        if let Some(ticks) = ticks_with_children(w.pid, &all) {
            sample.insert(w.name.clone(), ticks);
        }
    }
    if let Some(me) = ticks_of(std::process::id()) {
        sample.insert("loadgen".to_owned(), me.own);
    }
    sample
}

#[derive(Debug, Clone, Copy, Default, sqlx::FromRow)]
struct DbSample {
    xact_commit: i64,
    xact_rollback: i64,
    tup_inserted: i64,
    tup_updated: i64,
    tup_deleted: i64,
    tup_fetched: i64,
    wal_bytes: i64,
}

async fn db_sample(pool: &PgPool) -> anyhow::Result<DbSample> {
    sqlx::query_as(
        "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, tup_fetched, \
                pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint AS wal_bytes \
         FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(pool)
    .await
    .context("reading pg_stat_database")
}

/// Rows inserted, updated and deleted so far, per table of the database.
async fn table_writes(pool: &PgPool) -> anyhow::Result<BTreeMap<String, i64>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT schemaname || '.' || relname, n_tup_ins + n_tup_upd + n_tup_del \
         FROM pg_stat_user_tables",
    )
    .fetch_all(pool)
    .await
    .context("reading pg_stat_user_tables")?;
    Ok(rows.into_iter().collect())
}

/// A snapshot taken at the start of the measured window.
pub struct Start {
    at: Instant,
    cpu: BTreeMap<String, u64>,
    db: Option<DbSample>,
    tables: Option<BTreeMap<String, i64>>,
}

/// Takes the start snapshot.
pub async fn start(watched: &[Watched], pool: Option<&PgPool>) -> Start {
    let (db, tables) = match pool {
        Some(pool) => (db_sample(pool).await.ok(), table_writes(pool).await.ok()),
        None => (None, None),
    };
    Start {
        at: Instant::now(),
        cpu: cpu_sample(watched),
        db,
        tables,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CpuUse {
    pub cpu_seconds: f64,
    /// Average cores busy over the window.
    pub cores: f64,
    pub ms_per_command: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DbUse {
    pub transactions_per_command: f64,
    pub rows_written_per_command: f64,
    pub rows_read_per_command: f64,
    /// WAL written per command, bytes: server-wide, so other databases' writes count too.
    pub wal_bytes_per_command: f64,
    /// Rows inserted, updated or deleted per command, by table (tables without writes left
    /// out). Postgres publishes these counters up to a second late, so they are approximate.
    pub rows_written_by_table: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResourceReport {
    pub seconds: f64,
    pub commands: u64,
    pub cpu: BTreeMap<String, CpuUse>,
    pub db: Option<DbUse>,
}

impl ResourceReport {
    pub fn render(&self) -> String {
        let mut out = format!(
            "resources over {:.1} s, {} commands (CPU ms per command, average cores busy):\n",
            self.seconds, self.commands
        );
        let total: f64 = self.cpu.values().map(|c| c.ms_per_command).sum();
        for (name, cpu) in &self.cpu {
            out.push_str(&format!(
                "  {name:<16} {:>7.3} ms/command  {:>5.2} cores\n",
                cpu.ms_per_command, cpu.cores
            ));
        }
        out.push_str(&format!("  {:<16} {total:>7.3} ms/command\n", "total"));
        if let Some(db) = &self.db {
            out.push_str(&format!(
                "  database: {:.2} transactions, {:.1} rows written, {:.1} rows read, {:.0} WAL bytes per command\n",
                db.transactions_per_command,
                db.rows_written_per_command,
                db.rows_read_per_command,
                db.wal_bytes_per_command
            ));
            let tables: Vec<String> = db
                .rows_written_by_table
                .iter()
                .map(|(table, rows)| format!("{table} {rows}"))
                .collect();
            if !tables.is_empty() {
                out.push_str(&format!(
                    "  rows written per command by table: {}\n",
                    tables.join(", ")
                ));
            }
        }
        out
    }
}

/// Takes the end snapshot and reports the use per command.
pub async fn finish(
    start: Start,
    watched: &[Watched],
    pool: Option<&PgPool>,
    commands: u64,
) -> ResourceReport {
    let elapsed = start.at.elapsed().max(Duration::from_millis(1));
    let cpu_end = cpu_sample(watched);
    let per_command = |x: f64| if commands > 0 { x / commands as f64 } else { 0.0 };
    let ticks_per_second = procfs::ticks_per_second() as f64;
    let cpu = cpu_end
        .iter()
        .filter_map(|(name, end)| {
            let ticks = end.checked_sub(*start.cpu.get(name)?)?;
            let seconds = ticks as f64 / ticks_per_second;
            Some((
                name.clone(),
                CpuUse {
                    cpu_seconds: round(seconds, 2),
                    cores: round(seconds / elapsed.as_secs_f64(), 2),
                    ms_per_command: round(per_command(seconds * 1000.0), 3),
                },
            ))
        })
        .collect();
    let db = match (pool, start.db) {
        (Some(pool), Some(before)) => db_sample(pool).await.ok().map(|after| {
            let d = |f: fn(&DbSample) -> i64| per_command((f(&after) - f(&before)) as f64);
            DbUse {
                transactions_per_command: round(d(|s| s.xact_commit + s.xact_rollback), 2),
                rows_written_per_command: round(d(|s| s.tup_inserted + s.tup_updated + s.tup_deleted), 1),
                rows_read_per_command: round(d(|s| s.tup_fetched), 1),
                wal_bytes_per_command: round(d(|s| s.wal_bytes), 0),
                rows_written_by_table: BTreeMap::new(),
            }
        }),
        _ => None,
    };
    let db = match (db, pool, start.tables) {
        (Some(mut db), Some(pool), Some(before)) => {
            if let Ok(after) = table_writes(pool).await {
                db.rows_written_by_table = after
                    .into_iter()
                    .filter_map(|(table, rows)| {
                        let written = rows - before.get(&table).copied().unwrap_or(0);
                        (written > 0).then(|| (table, round(per_command(written as f64), 2)))
                    })
                    .collect();
            }
            Some(db)
        }
        (db, _, _) => db,
    };
    ResourceReport {
        seconds: round(elapsed.as_secs_f64(), 1),
        commands,
        cpu,
        db,
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watched_processes_parse() {
        assert_eq!(
            "postgres=42".parse::<Watched>().unwrap(),
            Watched {
                name: "postgres".into(),
                pid: 42
            }
        );
        assert!("postgres".parse::<Watched>().is_err());
        assert!("=42".parse::<Watched>().is_err());
        assert!("pg=x".parse::<Watched>().is_err());
    }

    #[test]
    fn the_own_process_is_accounted() {
        let before = cpu_sample(&[]);
        // Burn a little CPU so the counter moves.
        let mut x = 0u64;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let after = cpu_sample(&[Watched {
            name: "me".into(),
            pid: std::process::id(),
        }]);
        assert!(after["loadgen"] >= before["loadgen"]);
        assert!(after.contains_key("me"));
    }
}
