//! Running a what-if simulation (SPEC §9) against the event store: one org's log streamed once
//! in log order from a consistent snapshot, decoded by the one codec and folded by the pure
//! [`domain::simulation::Simulator`] on a blocking thread while the next rows are read; and the
//! reports kept in `simulations`. Nothing is written to the event store or the read models.
//! Shared by the command API (`POST /v1/orgs/{org}/program/simulations`) and
//! `projector simulate`.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use domain::codec::{decode_member, decode_program};
use domain::member::MemberEvent;
use domain::simulation::{Draft, Logged, Report, Simulator};
use domain::{MemberKey, ProgramConfig, ProgramEvent};
use futures::TryStreamExt as _;
use serde::Serialize;
use sqlx::{PgPool, Row as _};
use tokio::sync::mpsc;
use uuid::Uuid;

/// Events decoded per message from the reader to the fold.
const CHUNK: usize = 2_048;

/// One decoded event of the log.
enum Entry {
    Program(ProgramEvent),
    Member {
        member_id: Uuid,
        event: MemberEvent,
        recorded_at: DateTime<Utc>,
        command: Option<String>,
    },
}

/// What a simulation was asked.
#[derive(Debug, Clone)]
pub struct Request {
    pub org_id: String,
    pub draft: Draft,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// A stored report: the request, when it ran and what it found.
#[derive(Debug, Clone, Serialize)]
pub struct StoredReport {
    pub simulation_id: Uuid,
    pub org_id: String,
    pub created_at: DateTime<Utc>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    #[serde(flatten)]
    pub report: Report,
}

/// How many member and program events of `org_id` were recorded before `to` (for a progress
/// bar).
pub async fn count_events(pool: &PgPool, org_id: &str, to: DateTime<Utc>) -> anyhow::Result<u64> {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE (aggregate_id = $1 OR aggregate_id LIKE $2) AND committed_at < $3",
    )
    .bind(org_id)
    .bind(format!("{org_id}/%"))
    .bind(to)
    .fetch_one(pool)
    .await
    .context("counting the org's events")?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Runs `request` over the log; `progress` is told how many events were folded so far.
/// `configure` may adjust the simulator before the fold (e.g. keep per-member points).
pub async fn run(
    pool: &PgPool,
    request: &Request,
    configure: impl FnOnce(Simulator) -> Simulator,
    progress: impl Fn(u64) + Send + 'static,
) -> anyhow::Result<(Report, Simulator)> {
    let simulator = configure(Simulator::new(
        &request.org_id,
        request.draft.clone(),
        request.from,
        request.to,
    ));
    let (tx, mut rx) = mpsc::channel::<Vec<Entry>>(4);
    let fold = tokio::task::spawn_blocking(move || {
        let mut simulator = simulator;
        let mut folded = 0u64;
        while let Some(chunk) = rx.blocking_recv() {
            folded += chunk.len() as u64;
            for entry in chunk {
                match entry {
                    Entry::Program(event) => simulator.feed_program(event),
                    Entry::Member {
                        member_id,
                        event,
                        recorded_at,
                        command,
                    } => simulator.feed_member(
                        member_id,
                        event,
                        Logged {
                            recorded_at,
                            command: command.as_deref(),
                        },
                    ),
                }
            }
            progress(folded);
        }
        simulator
    });
    let read = read_log(pool, request, tx).await;
    let simulator = fold.await.context("the simulation's fold panicked")?;
    read?;
    let report = simulator.report();
    Ok((report, simulator))
}

/// Streams the org's log from one snapshot, in log order, decoded, in chunks.
async fn read_log(pool: &PgPool, request: &Request, tx: mpsc::Sender<Vec<Entry>>) -> anyhow::Result<()> {
    let mut conn = pool.begin().await.context("opening the simulation's snapshot")?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *conn)
        .await
        .context("opening the simulation's snapshot")?;
    let mut rows = sqlx::query(
        "SELECT aggregate_type, aggregate_id, event_type, event_version, payload, \
         metadata ->> 'idempotency_key' AS key, metadata ->> 'command' AS command, \
         metadata ->> 'recorded_at' AS recorded_at, committed_at \
         FROM events WHERE (aggregate_id = $1 OR aggregate_id LIKE $2) AND committed_at < $3 \
         ORDER BY global_position",
    )
    .bind(&request.org_id)
    .bind(format!("{}/%", request.org_id))
    .bind(request.to)
    .fetch(&mut *conn);
    let mut chunk = Vec::with_capacity(CHUNK);
    while let Some(row) = rows.try_next().await.context("reading the org's events")? {
        let aggregate_type: &str = row.try_get("aggregate_type")?;
        let event_type: &str = row.try_get("event_type")?;
        let event_version: &str = row.try_get("event_version")?;
        let payload: serde_json::Value = row.try_get("payload")?;
        let entry = match aggregate_type {
            "program" => Entry::Program(
                decode_program(event_type, event_version, payload).context("decoding a program event")?,
            ),
            "member" => {
                let aggregate_id: &str = row.try_get("aggregate_id")?;
                let key = MemberKey::parse(aggregate_id).context("a member event's aggregate id")?;
                let committed_at: DateTime<Utc> = row.try_get("committed_at")?;
                let recorded_at = row
                    .try_get::<Option<&str>, _>("recorded_at")?
                    .and_then(|at| at.parse().ok())
                    .unwrap_or(committed_at);
                let command = match (
                    row.try_get::<Option<&str>, _>("key")?,
                    row.try_get::<Option<&str>, _>("command")?,
                ) {
                    (Some(key), Some(command)) => Some(format!("{command} {key}")),
                    _ => None,
                };
                Entry::Member {
                    member_id: key.member_id,
                    event: decode_member(event_type, event_version, payload)
                        .context("decoding a member event")?,
                    recorded_at,
                    command,
                }
            }
            _ => continue,
        };
        chunk.push(entry);
        if chunk.len() == CHUNK
            && tx
                .send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)))
                .await
                .is_err()
        {
            anyhow::bail!("the simulation's fold stopped");
        }
    }
    if !chunk.is_empty() {
        let _ = tx.send(chunk).await;
    }
    Ok(())
}

/// Keeps a report with its draft; its id.
pub async fn store(
    pool: &PgPool,
    request: &Request,
    draft: Option<&ProgramConfig>,
    report: &Report,
) -> anyhow::Result<StoredReport> {
    let simulation_id = Uuid::new_v4();
    let created_at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO simulations (org_id, simulation_id, window_from, window_to, draft, report) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at",
    )
    .bind(&request.org_id)
    .bind(simulation_id)
    .bind(request.from)
    .bind(request.to)
    .bind(sqlx::types::Json(draft))
    .bind(sqlx::types::Json(report))
    .fetch_one(pool)
    .await
    .context("storing the simulation report")?;
    Ok(StoredReport {
        simulation_id,
        org_id: request.org_id.clone(),
        created_at,
        from: request.from,
        to: request.to,
        report: report.clone(),
    })
}
