//! The replay: every read model rebuilt from the event store into a scratch schema, from
//! exactly the events the live side has seen, with the live consumer's own per-event code.
//!
//! The fast path is a fold ([`fold_replay`]); if Postgres refuses anything there (a row at once,
//! or a duplicate key looked for when the comparison differs), the replay starts again through
//! the live batch path ([`batch_replay`]), which parks exactly the culprit as the live side did.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use domain::wire::StoredEvent;
use futures::{StreamExt as _, TryStreamExt as _};
use sqlx::{PgPool, Row as _};
use tokio_util::task::AbortOnDropHandle;

use super::AT_ONCE;
use crate::batch::{apply_event, is_poison, Projector};
use crate::event::{stored_event_from_row, Incoming, EVENT_COLUMNS};
use crate::progress::{aggregate_of, gap_error, parked, Aggregate};
use crate::read_models::{self, rfm, MemberState, Mode, Writes};
use domain::codec::{decode_text, CodecError, Decoded};
use domain::MemberKey;

/// Events per transaction of the batch replay.
const REPLAY_BATCH: i64 = 5_000;

/// Restricts the replay to what the live side has seen: per aggregate up to its checkpoint or
/// last parked event (`{live}.audit_limits`). Returns how many events of the store are past
/// that (not yet applied live).
pub(super) async fn limit_to_live(pool: &PgPool, live: &str) -> anyhow::Result<i64> {
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
    Ok(behind)
}

/// How the replay was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Replayed {
    /// By the fold, whose rows' keys are not checked (a comparison without differences proves
    /// them unique: they equal the live rows, which their primary keys keep unique);
    /// [`duplicate_key`] checks them.
    Fold,
    /// By the live batch path, Postgres checking every row.
    Batches,
}

/// Replays into `replay` (tables made by [`create_tables`] with `bare`): the fold, or if
/// Postgres refuses it, the live batch path (with a note saying so). Returns the events read.
pub(super) async fn replay(
    pool: &PgPool,
    schema: &str,
    live: &str,
    replay: &str,
    tables: &[String],
    notes: &mut Vec<String>,
) -> anyhow::Result<(usize, Replayed)> {
    match fold_replay(pool, live, replay).await {
        Ok(events) => Ok((events, Replayed::Fold)),
        Err(error) if is_poison(&error) => {
            let refused = format!("the fast replay was refused by Postgres ({error:#})");
            let events = replay_through_batches(pool, schema, live, replay, tables, refused, notes).await?;
            Ok((events, Replayed::Batches))
        }
        Err(error) => Err(error),
    }
}

/// Replays again into `replay`, through the live batch path: Postgres refused a row of the
/// fold (`why`), and only that path can tell which event, and park it exactly as the live side
/// did.
pub(super) async fn replay_through_batches(
    pool: &PgPool,
    schema: &str,
    live: &str,
    replay: &str,
    tables: &[String],
    why: String,
    notes: &mut Vec<String>,
) -> anyhow::Result<usize> {
    notes.push(format!("{why}: replayed through the live batch path"));
    sqlx::query(&format!("DROP SCHEMA {replay} CASCADE"))
        .execute(pool)
        .await
        .context("dropping the refused replay")?;
    create_tables(pool, schema, replay, tables, false).await?;
    batch_replay(pool, live, replay).await
}

/// Recomputes the replay's RFM scores as of the live recomputation, for the orgs whose live
/// scores are current; the others get a note. Returns the orgs whose scores are comparable.
pub(super) async fn rescore_rfm(
    pool: &PgPool,
    live: &str,
    replay: &str,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<String>> {
    type OrgTuple = (String, i64, Option<i64>, Option<DateTime<Utc>>);
    let orgs: Vec<OrgTuple> = sqlx::query_as(&format!(
        "SELECT org_id, raw_version, scored_version, scored_at FROM {live}.rfm_orgs ORDER BY org_id"
    ))
    .fetch_all(pool)
    .await?;
    let mut current = Vec::new();
    for (org, raw, scored, at) in orgs {
        match (scored, at) {
            (Some(scored), Some(at)) if scored == raw => current.push((org, at)),
            (Some(scored), Some(at)) => notes.push(format!(
                "rfm_scores of {org} not compared: {} purchase/refund events since the recomputation at {at}",
                raw - scored
            )),
            _ => notes.push(format!("rfm_scores of {org} not compared: never recomputed")),
        }
    }
    // Each pass reads its org's purchases. The fold leaves the replay's `purchases` without
    // indexes, and writes them aggregate by aggregate, so org after org: a BRIN index (one
    // pass over the table, no sort) lets each pass read its org's block ranges, not the whole
    // table (64 orgs: 4.7 s of the 29 s audit of the run of `3715acd`, BENCHMARKS.md). The
    // planner takes it only with the column's statistics (a sample: tens of milliseconds).
    if current.len() > 1 {
        sqlx::raw_sql(&format!(
            "CREATE INDEX IF NOT EXISTS audit_purchases_org ON {replay}.purchases USING brin (org_id); \
             ANALYZE {replay}.purchases (org_id)"
        ))
        .execute(pool)
        .await
        .context("indexing the replay's purchases by org")?;
    }
    // One SQL pass per org, on rows no other org's pass touches: side by side.
    let passes: Vec<_> = current
        .into_iter()
        .map(|(org, at)| rescore(pool, replay, org, at))
        .collect();
    futures::stream::iter(passes)
        .buffered(AT_ONCE)
        .try_collect()
        .await
}

async fn rescore(pool: &PgPool, replay: &str, org: String, at: DateTime<Utc>) -> anyhow::Result<String> {
    rfm::recompute(pool, replay, &org, at).await?;
    Ok(org)
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
    "program_promotions",
    "promotion_stats",
    "promotion_daily",
    "achievement_unlocks_weekly",
];

/// Creates the scratch tables of the replay, like the live ones. Unlogged: they are thrown
/// away. For the fold (`bare`), the tables it only appends to have no indexes: their keys are
/// checked only when the comparison finds differences ([`duplicate_key`]), and nothing needs
/// their indexes after.
pub(super) async fn create_tables(
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

/// The first duplicate key of the fold's tables, as the live tables' primary and unique keys
/// would have refused it (a hash aggregate per table, much cheaper than building the indexes).
pub(super) async fn duplicate_key(
    pool: &PgPool,
    schema: &str,
    replay: &str,
    tables: &[String],
) -> anyhow::Result<Option<String>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT set_config('work_mem', '512MB', true)")
        .execute(&mut *tx)
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
        .fetch_all(&mut *tx)
        .await
        .with_context(|| format!("reading the keys of {schema}.{table}"))?;
        for key in keys {
            let key = key.join(", ");
            let duplicate: Option<String> = sqlx::query_scalar(&format!(
                "SELECT row_to_json(d)::text FROM (SELECT {key} FROM {replay}.{table} \
                 GROUP BY {key} HAVING count(*) > 1 LIMIT 1) d"
            ))
            .fetch_optional(&mut *tx)
            .await
            .with_context(|| format!("checking the keys of the replay of {table}"))?;
            if let Some(duplicate) = duplicate {
                return Ok(Some(format!("duplicate key in {table}: {duplicate}")));
            }
        }
    }
    tx.commit().await?;
    Ok(None)
}

/// Events per flush of the fold (whole aggregates: a flush ends at an aggregate boundary).
const FOLD_CHUNK: usize = 20_000;
/// Writers of the fold's complete aggregates, side by side: with one, the fold waited for it
/// a third of the time (BENCHMARKS.md). Their rows are disjoint (whole aggregates) but for the
/// per-org sums, which [`read_models::flush`] writes last and in key order, as live batches
/// side by side do.
const WRITERS: usize = 2;
/// Events per message from the reader to the fold.
const READ_CHUNK: usize = 1_000;

/// Events as the fold reads them: without their payload's `Value` (decoded from the text, which
/// is kept for the rows of events parked).
type Chunk = Vec<(StoredEvent, Result<Decoded, CodecError>, String)>;

/// Complete aggregates folded, for a writer; the writers share one queue.
type Folded = (HashMap<MemberKey, MemberState>, Writes);

/// The replay as one fold: the events the live side has seen, streamed aggregate by aggregate
/// in sequence order (decoded by the reader task), applied by [`apply_event`] exactly as a
/// live batch applies them, to member rows held in memory; complete aggregates are written
/// with [`read_models::flush`] in [`Mode::Append`] by [`WRITERS`] writer tasks (while the fold
/// goes on), in transactions that need no durability. Postgres checks each row's types and
/// `CHECK`s as in the live path: any refusal fails the fold with that error (keys:
/// [`Replayed::Fold`]).
///
/// Equivalent to the batch replay because what an event does depends only on the earlier
/// events of its aggregate (every read model row belongs to one member or one program, or
/// is a sum over them), and the batch path loads every row an event reads.
async fn fold_replay(pool: &PgPool, live: &str, replay: &str) -> anyhow::Result<usize> {
    let started = Instant::now();
    let (events_tx, mut events) = tokio::sync::mpsc::channel::<Chunk>(16);
    let reader = AbortOnDropHandle::new(tokio::spawn(read_for_fold(
        pool.clone(),
        live.to_owned(),
        events_tx,
    )));
    let (flush_tx, flushes) = async_channel::bounded::<Folded>(1);
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            AbortOnDropHandle::new(tokio::spawn(write_folded(
                pool.clone(),
                replay.to_owned(),
                flushes.clone(),
            )))
        })
        .collect();

    let mut members: HashMap<MemberKey, MemberState> = HashMap::new();
    let mut blocked: HashMap<Aggregate, i64> = HashMap::new();
    let mut writes = Writes::default();
    let mut current: Option<(Aggregate, i64)> = None;
    let (mut read, mut in_chunk) = (0, 0);
    // What the fold waited for: the reader, the writers (the audit's debug timings).
    let (mut wait_read, mut wait_write) = (Duration::ZERO, Duration::ZERO);
    'fold: loop {
        let waiting = Instant::now();
        let Some(chunk) = events.recv().await else { break };
        wait_read += waiting.elapsed();
        for (event, decoded, payload) in chunk {
            read += 1;
            let parked_before = writes.progress.parked.len();
            let aggregate = aggregate_of(&event);
            let expected = match &mut current {
                Some((open, expected)) if *open == aggregate => expected,
                _ => {
                    // The previous aggregate is complete.
                    if in_chunk >= FOLD_CHUNK {
                        let done = (std::mem::take(&mut members), std::mem::take(&mut writes));
                        blocked.clear();
                        in_chunk = 0;
                        let waiting = Instant::now();
                        if flush_tx.send(done).await.is_err() {
                            break 'fold;
                        }
                        wait_write += waiting.elapsed();
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
            } else if event.sequence < *expected {
                continue;
            } else if event.sequence > *expected {
                let error = gap_error(*expected, event.sequence);
                writes.progress.parked.push(parked(&event, error, None));
                blocked.insert(aggregate, event.sequence);
            } else {
                *expected = event.sequence + 1;
                apply_event(&mut members, &mut blocked, &mut writes, &event, decoded);
            }
            // A parked event keeps its payload as the live side stores it (from its `Value`).
            for row in &mut writes.progress.parked[parked_before..] {
                row.payload = serde_json::from_str::<serde_json::Value>(&payload)
                    .map_or_else(|_| payload.clone(), |value| value.to_string());
            }
        }
    }
    flush_tx.send((members, writes)).await.ok();
    drop(flush_tx);
    drop(events);
    // The writers' errors first: a refused row is what the caller must see.
    for writer in writers {
        join(writer).await?;
    }
    join(reader).await?;

    let loaded = started.elapsed();
    let mut conn = pool.acquire().await.context("acquiring a connection")?;
    sqlx::query("SELECT set_config('search_path', $1, false)")
        .bind(replay)
        .execute(&mut *conn)
        .await?;
    let finished = rfm::write_members(&mut conn).await;
    sqlx::query("RESET search_path").execute(&mut *conn).await?;
    finished?;
    tracing::debug!(events = read, ?wait_read, ?wait_write, ?loaded, total = ?started.elapsed(), "fold replay timings");
    Ok(read)
}

async fn join(task: AbortOnDropHandle<anyhow::Result<()>>) -> anyhow::Result<()> {
    task.await.context("a replay task panicked")?
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
    // The payload as text, decoded straight into the typed event: parsing it into a `Value`
    // first (and dropping that) was a third of the audit's CPU. The row's payload and metadata
    // are JSON `null`s, which the fold does not read.
    let sql = format!(
        "SELECT e.event_id, e.global_position, e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, \
         e.event_version, 'null'::json AS payload, 'null'::json AS metadata, e.committed_at, \
         e.payload::text AS payload_text FROM public.events e \
         JOIN {live}.audit_limits l USING (aggregate_type, aggregate_id) \
         WHERE e.sequence <= l.max_sequence ORDER BY e.aggregate_type, e.aggregate_id, e.sequence"
    );
    let mut rows = sqlx::query(&sql).fetch(&mut *tx);
    let mut chunk = Vec::with_capacity(READ_CHUNK);
    while let Some(row) = rows.try_next().await.context("reading the event store")? {
        let event = stored_event_from_row(&row).context("decoding an events row")?;
        let payload: String = row.try_get("payload_text")?;
        let decoded = decode_text(&event, &payload);
        chunk.push((event, decoded, payload));
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
    chunks: async_channel::Receiver<Folded>,
) -> anyhow::Result<()> {
    let written = write_chunks(&pool, &replay, &chunks).await;
    if written.is_err() {
        // Whatever the error, what the fold still folds is thrown away: it stops at its next
        // chunk, as with one writer.
        chunks.close();
    }
    written
}

async fn write_chunks(
    pool: &PgPool,
    replay: &str,
    chunks: &async_channel::Receiver<Folded>,
) -> anyhow::Result<()> {
    while let Ok((members, writes)) = chunks.recv().await {
        let mut tx = pool.begin().await.context("beginning a replay write")?;
        // Throwaway tables: a crash loses nothing the audit would keep.
        sqlx::query(
            "SELECT set_config('search_path', $1, true), set_config('synchronous_commit', 'off', true)",
        )
        .bind(replay)
        .execute(&mut *tx)
        .await?;
        read_models::flush(&mut tx, &members, &writes, Mode::Append, &[]).await?;
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
        let batch = replayer.process(incoming).await?;
        replayed += batch.received;
    }

    Ok(replayed)
}
