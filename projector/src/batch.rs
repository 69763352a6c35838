//! Applying a batch of events in one Postgres transaction, exactly once per event.
//!
//! Per aggregate, the checkpoint (`projection_checkpoints.last_sequence`) says which events
//! are in the read models; it is written in the same transaction as the rows, so:
//! - an event at or below the checkpoint is a redelivery and changes nothing;
//! - an event above `checkpoint + 1` means the stream skipped some: the missing ones are read
//!   from the `events` table and applied first, so nothing is applied out of order;
//! - an event that cannot be applied is parked (`parked_events`, with its error) and every
//!   later event of its aggregate is parked behind it (`blocked_by`) until an operator retries
//!   them ([`Projector::retry_parked`]); other aggregates go on.
//!
//! A batch (of `SPLIT_FROM` events or more) is split by aggregate into [`PARTITIONS`] parts
//! applied side by side, each in its own transaction on its own connection: an aggregate's events are all in one part, so each
//! part keeps its aggregates' order and checkpoints as a single batch would, and the parts'
//! member rows are disjoint. The only rows two parts both write are per org (liability, RFM
//! versions, promotion and achievement counts), written last (`read_models::flush`). One
//! transaction was the projector's ceiling: a batch's Postgres work runs on one backend, hence
//! one core, and the projector fell behind the write path. A part that fails is retried by the
//! redelivery of the whole batch; what the other part committed is then skipped by the
//! checkpoints.
//!
//! Each part takes a transaction-level advisory lock of its own per read-model schema, so two
//! projector processes on the same schema never interleave their batches of one aggregate; a
//! smaller batch, applied whole, and the retry path take every part's lock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use domain::wire::StoredEvent;
use domain::MemberEvent;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use crate::chain::Chain;
use crate::check_schema_name;
use crate::event::{stored_event_from_row, ApplyError, Incoming, EVENT_COLUMNS};
use crate::progress::{self, aggregate_of, blocked_error, gap_error, parked, parked_incoming, Aggregate};
use crate::read_models::{self, apply_program, EventMeta, MemberState, Mode, ReadModel, Writes};
use crate::rfm_schedule::RfmTrigger;
use domain::codec::{decode, CodecError, Decoded};
use domain::MemberKey;

/// What a batch did.
#[derive(Debug, Default, Clone)]
pub struct BatchReport {
    /// Inputs received (stream messages or store rows).
    pub received: usize,
    /// Events applied (including those read from the store to fill gaps).
    pub applied: usize,
    /// Inputs already applied before (redeliveries): no effect.
    pub duplicates: usize,
    /// Events read from the `events` table because the stream had not delivered them.
    pub gap_filled: usize,
    /// Events newly parked (failed, or waiting behind a failed one of the same aggregate).
    pub parked: usize,
    /// Events applied per read model.
    pub read_models: BTreeMap<ReadModel, u64>,
    /// `committed_at` of every applied stream delivery, for the lag metric.
    pub committed_at: Vec<DateTime<Utc>>,
    /// Purchase and refund events applied per org: what the RFM scores are behind by.
    pub rfm_orgs: BTreeMap<String, i64>,
}

impl BatchReport {
    fn add(&mut self, other: BatchReport) {
        self.received += other.received;
        self.applied += other.applied;
        self.duplicates += other.duplicates;
        self.gap_filled += other.gap_filled;
        self.parked += other.parked;
        for (model, n) in other.read_models {
            *self.read_models.entry(model).or_default() += n;
        }
        self.committed_at.extend(other.committed_at);
        for (org, n) in other.rfm_orgs {
            *self.rfm_orgs.entry(org).or_default() += n;
        }
    }
}

/// The events `from..=to` of one aggregate, from the event store.
pub(crate) async fn load_range(
    conn: &mut PgConnection,
    aggregate: &Aggregate,
    from: i64,
    to: i64,
) -> anyhow::Result<Vec<StoredEvent>> {
    let rows = sqlx::query(&format!(
        "SELECT {EVENT_COLUMNS} FROM public.events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence BETWEEN $3 AND $4 ORDER BY sequence"
    ))
    .bind(&aggregate.0)
    .bind(&aggregate.1)
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await
    .with_context(|| format!("reading events {from}..={to} of {} {}", aggregate.0, aggregate.1))?;
    rows.iter()
        .map(stored_event_from_row)
        .collect::<Result<_, _>>()
        .context("decoding an events row")
}

/// Applies `incoming` to the read models of the transaction's `search_path`. The caller owns
/// the transaction (and the lock): nothing is visible until it commits.
pub async fn apply_batch(conn: &mut PgConnection, incoming: &[Incoming]) -> anyhow::Result<BatchReport> {
    let mut report = BatchReport {
        received: incoming.len(),
        ..Default::default()
    };
    let mut writes = Writes::default();
    let aggregates: BTreeSet<Aggregate> = incoming
        .iter()
        .filter_map(|i| match i {
            Incoming::Event { event, .. } => Some(aggregate_of(event)),
            Incoming::Unreadable { .. } => None,
        })
        .collect();
    let (checkpoints, mut blocked) = progress::load(conn, &aggregates).await?;

    // Order of application: per aggregate strictly by sequence, without gaps.
    let mut next: HashMap<Aggregate, i64> = HashMap::new();
    let mut plan: Vec<(StoredEvent, bool)> = Vec::with_capacity(incoming.len());
    for input in incoming {
        let (event, from_store) = match input {
            Incoming::Event { event, from_store } => (event, *from_store),
            Incoming::Unreadable { error, .. } => {
                writes.progress.parked.push(parked_incoming(input, error.clone()));
                continue;
            }
        };
        let aggregate = aggregate_of(event);
        if let Some(root) = blocked.get(&aggregate) {
            if event.sequence >= *root {
                let error = blocked_error(*root);
                writes.progress.parked.push(parked(event, error, Some(*root)));
                continue;
            }
        }
        let expected = next
            .entry(aggregate.clone())
            .or_insert_with(|| checkpoints.get(&aggregate).copied().unwrap_or(0) + 1);
        if event.sequence < *expected {
            report.duplicates += 1;
            continue;
        }
        if event.sequence > *expected {
            let missing = load_range(conn, &aggregate, *expected, event.sequence - 1).await?;
            if i64::try_from(missing.len()).ok() != Some(event.sequence - *expected) {
                writes
                    .progress
                    .parked
                    .push(parked(event, gap_error(*expected, event.sequence), None));
                blocked.insert(aggregate, event.sequence);
                continue;
            }
            report.gap_filled += missing.len();
            plan.extend(missing.into_iter().map(|e| (e, true)));
        }
        *expected = event.sequence + 1;
        plan.push((event.clone(), from_store));
    }

    let decoded: Vec<Result<Decoded, CodecError>> = plan.iter().map(|(e, _)| decode(e)).collect();
    let t_plan = std::time::Instant::now();
    let mut member_keys = BTreeSet::new();
    // Lots are read only for the members an event of the batch takes from, as far as it takes.
    let mut lots_taken = BTreeMap::<_, read_models::balance::LotsTaken>::new();
    // Purchases the batch records are loaded too: a transaction id recorded in an earlier
    // batch is then refused exactly as within one batch (and as in the audit's fold).
    let mut purchases = BTreeSet::new();
    for d in decoded.iter().flatten() {
        if let Decoded::Member(key, event) = d {
            member_keys.insert(key.clone());
            if let Some(take) = domain::member::takes_from_lots(event) {
                lots_taken.entry(key.clone()).or_default().add(take);
            }
            if let MemberEvent::PurchaseRefunded { transaction_id, .. }
            | MemberEvent::PurchaseRecorded { transaction_id, .. } = event
            {
                purchases.insert((key.clone(), transaction_id.clone()));
            }
        }
    }
    let member_keys: Vec<_> = member_keys.into_iter().collect();
    let purchases: Vec<_> = purchases.into_iter().collect();
    let mut members = read_models::load_members(conn, &member_keys, &lots_taken, &purchases).await?;
    let t_load = std::time::Instant::now();

    for ((event, from_store), decoded) in plan.iter().zip(decoded) {
        if apply_event(&mut members, &mut blocked, &mut writes, event, decoded) {
            report.applied += 1;
            if !from_store {
                report.committed_at.push(event.committed_at);
            }
        }
    }
    let t_apply = std::time::Instant::now();
    report.parked =
        usize::try_from(read_models::flush(conn, &members, &writes, Mode::Upsert, &member_keys).await?)
            .unwrap_or(usize::MAX);
    tracing::debug!(
        size = incoming.len(),
        load = ?(t_load - t_plan),
        apply = ?(t_apply - t_load),
        flush = ?t_apply.elapsed(),
        "batch timings"
    );
    report.read_models = std::mem::take(&mut writes.applied);
    report.rfm_orgs = writes.rfm.orgs.clone();
    Ok(report)
}

/// Applies one event, in its aggregate's order, to the member rows and `writes`: the one
/// place where the live batches and the audit's fold decide what an event does. An event of
/// a blocked aggregate (at or after its parked sequence) waits behind it; an event that cannot
/// be applied is parked and blocks its aggregate. Returns `true` if the event was applied.
pub(crate) fn apply_event(
    members: &mut HashMap<MemberKey, MemberState>,
    blocked: &mut HashMap<Aggregate, i64>,
    writes: &mut Writes,
    event: &StoredEvent,
    decoded: Result<Decoded, CodecError>,
) -> bool {
    let aggregate = aggregate_of(event);
    if let Some(root) = blocked.get(&aggregate).filter(|root| event.sequence >= **root) {
        let error = blocked_error(*root);
        writes.progress.parked.push(parked(event, error, Some(*root)));
        return false;
    }
    let meta = EventMeta {
        sequence: event.sequence,
        global_position: event.global_position,
        committed_at: event.committed_at,
    };
    let result = match decoded {
        Err(error) => Err(ApplyError::from(error)),
        Ok(Decoded::Member(key, member_event)) => {
            let state = members.entry(key.clone()).or_default();
            state.apply(&key, &meta, &member_event, writes)
        }
        Ok(Decoded::Program(org, program_event)) => apply_program(&org, &program_event, writes),
        Ok(Decoded::Other) => Ok(()),
    };
    match result {
        Ok(()) => {
            writes
                .progress
                .checkpoints
                .insert(aggregate, (event.sequence, event.global_position));
            true
        }
        Err(error) => {
            tracing::warn!(
                aggregate_type = %event.aggregate_type,
                aggregate_id = %event.aggregate_id,
                sequence = event.sequence,
                %error,
                "event cannot be applied: parked"
            );
            writes
                .progress
                .parked
                .push(parked(event, error.to_string(), None));
            blocked.insert(aggregate, event.sequence);
            false
        }
    }
}

/// `true` for a Postgres error that the same input will raise again (bad data, a violated
/// constraint): retrying cannot help, the input must be parked. Anything else (connection
/// lost, timeout, serialization failure) is worth retrying.
pub fn is_poison(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<sqlx::Error>()
            .and_then(|e| e.as_database_error())
            .and_then(|e| e.code())
            .is_some_and(|code| code.starts_with("22") || code.starts_with("23"))
    })
}

/// Parts of a batch applied side by side (module docs). Part of the lock keys: every projector
/// process on one schema must use the same value.
pub const PARTITIONS: usize = 2;

/// Smaller batches are applied whole, in one transaction holding every part's lock: a batch
/// costs a handful of round trips whatever its size, and at low rates, where batches hold a
/// handful of events, splitting them doubled that for nothing.
const SPLIT_FROM: usize = 64;

/// The part of a batch an input belongs to: by aggregate, with a hash that does not depend on
/// the build (FNV-1a), so that every process puts an aggregate under the same lock.
fn partition_of(input: &Incoming) -> usize {
    let Incoming::Event { event, .. } = input else {
        return 0;
    };
    let hash = event
        .aggregate_type
        .bytes()
        .chain([0])
        .chain(event.aggregate_id.bytes())
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    usize::try_from(hash % PARTITIONS as u64).unwrap_or(0)
}

/// Begins a transaction on the read models of `schema`, holding the projector locks of the
/// batch parts `parts` (all of them: `0..PARTITIONS`).
pub async fn begin(
    pool: &PgPool,
    schema: &str,
    parts: Range<usize>,
) -> anyhow::Result<Transaction<'static, Postgres>> {
    check_schema_name(schema)?;
    let mut tx = pool.begin().await.context("beginning a transaction")?;
    // A batch only looks rows up by key, a few thousand at a time, in tables that grow without
    // bound: a hash or merge join would read a whole table per batch (the planner prices index
    // probes too high for that), a nested loop over the keys probes the primary keys.
    // The locks in ascending order, whoever takes them: two transactions never wait for each
    // other's. One statement: every round trip of a batch waits for a busy core.
    sqlx::query(
        "SELECT set_config('search_path', $1, true), set_config('enable_hashjoin', 'off', true), \
         set_config('enable_mergejoin', 'off', true), \
         (SELECT count(pg_advisory_xact_lock(hashtext($2 || ':' || part))) \
          FROM generate_series($3::int, $4::int) part)",
    )
    .bind(schema)
    .bind(format!("loyalty-projector:{schema}"))
    .bind(i32::try_from(parts.start).context("part out of range")?)
    .bind(i32::try_from(parts.end).context("part out of range")? - 1)
    .execute(&mut *tx)
    .await
    .context("setting up a batch's transaction and taking the projector locks")?;
    Ok(tx)
}

/// Applies batches to the read models of one schema (`rm` for the live consumer).
#[derive(Debug, Clone)]
pub struct Projector {
    pool: PgPool,
    schema: String,
    rfm: Option<RfmTrigger>,
}

impl Projector {
    pub fn new(pool: PgPool, schema: impl Into<String>) -> anyhow::Result<Self> {
        let schema = schema.into();
        check_schema_name(&schema)?;
        Ok(Self {
            pool,
            schema,
            rfm: None,
        })
    }

    /// The same projector telling `trigger` about the RFM data of every committed batch.
    pub fn with_rfm_trigger(self, trigger: RfmTrigger) -> Self {
        Self {
            rfm: Some(trigger),
            ..self
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Applies `incoming`, its parts side by side, each in one transaction (module docs). If
    /// Postgres refuses a part for a reason that would recur (bad data), its inputs are applied
    /// one by one so that only the culprit is parked. Errors returned are worth retrying (the
    /// caller leaves the messages unacked; a part that committed is skipped when they come
    /// again).
    pub async fn process(&self, incoming: Vec<Incoming>) -> anyhow::Result<BatchReport> {
        let results = if incoming.len() < SPLIT_FROM {
            vec![self.process_part(0..PARTITIONS, &incoming).await]
        } else {
            let mut parts: Vec<Vec<Incoming>> = (0..PARTITIONS).map(|_| Vec::new()).collect();
            for input in incoming {
                parts[partition_of(&input)].push(input);
            }
            futures::future::join_all(
                parts
                    .iter()
                    .enumerate()
                    .filter(|(_, part)| !part.is_empty())
                    .map(|(k, part)| self.process_part(k..k + 1, part)),
            )
            .await
        };
        let mut report = BatchReport::default();
        for result in results {
            report.add(result?);
        }
        if let Some(trigger) = &self.rfm {
            trigger.changed(&report.rfm_orgs);
        }
        Ok(report)
    }

    /// Applies `incoming` (all of the parts `parts`) in one transaction.
    async fn process_part(&self, parts: Range<usize>, incoming: &[Incoming]) -> anyhow::Result<BatchReport> {
        match self.process_in_tx(parts.clone(), incoming).await {
            Ok(report) => Ok(report),
            Err(error) if is_poison(&error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    size = incoming.len(),
                    "batch refused: applying one by one"
                );
                let mut total = BatchReport::default();
                for input in incoming {
                    total.add(self.process_one(parts.clone(), input).await?);
                }
                Ok(total)
            }
            Err(error) => Err(error),
        }
    }

    async fn process_in_tx(&self, parts: Range<usize>, incoming: &[Incoming]) -> anyhow::Result<BatchReport> {
        let mut tx = begin(&self.pool, &self.schema, parts).await?;
        let report = apply_batch(&mut tx, incoming).await?;
        tx.commit().await.context("committing a batch")?;
        Ok(report)
    }

    async fn process_one(&self, parts: Range<usize>, input: &Incoming) -> anyhow::Result<BatchReport> {
        match self
            .process_in_tx(parts.clone(), std::slice::from_ref(input))
            .await
        {
            Err(error) if is_poison(&error) => {
                let message = format!("{error:#}");
                tracing::error!(error = %message, "event refused by Postgres: parked");
                let mut tx = begin(&self.pool, &self.schema, parts).await?;
                let progress = progress::Progress {
                    parked: vec![parked_incoming(input, message)],
                    ..Default::default()
                };
                let mut chain = Chain::new();
                let parked = progress::flush(&mut chain, &progress, Mode::Upsert);
                let returned = chain.execute(&mut tx).await?;
                tx.commit().await.context("committing a parked event")?;
                let parked = parked.map_or(0, |n| n.of(&returned));
                Ok(BatchReport {
                    received: 1,
                    parked: usize::try_from(parked).unwrap_or(usize::MAX),
                    ..Default::default()
                })
            }
            other => other,
        }
    }

    /// Retries the parked events of every blocked aggregate, in order, from the event store
    /// (after a fix of the projector). Per aggregate, in one transaction: the events from the
    /// checkpoint up to the last parked one are applied in order; if one fails again, it and
    /// the rest are parked again (with the new error) and the aggregate stays blocked.
    pub async fn retry_parked(&self) -> anyhow::Result<RetryReport> {
        let mut conn = self.pool.acquire().await.context("acquiring a connection")?;
        let aggregates: Vec<(String, String, i64, i64)> = sqlx::query_as(&format!(
            "SELECT p.aggregate_type, p.aggregate_id, coalesce(c.last_sequence, 0), max(p.sequence) \
             FROM {schema}.parked_events p LEFT JOIN {schema}.projection_checkpoints c \
             USING (aggregate_type, aggregate_id) WHERE p.aggregate_type <> '' \
             GROUP BY p.aggregate_type, p.aggregate_id, c.last_sequence ORDER BY 1, 2",
            schema = self.schema
        ))
        .fetch_all(&mut *conn)
        .await
        .context("listing parked aggregates")?;
        drop(conn);
        let mut report = RetryReport::default();
        for (aggregate_type, aggregate_id, checkpoint, last) in aggregates {
            let aggregate = (aggregate_type, aggregate_id);
            let mut tx = begin(&self.pool, &self.schema, 0..PARTITIONS).await?;
            sqlx::query("DELETE FROM parked_events WHERE aggregate_type = $1 AND aggregate_id = $2")
                .bind(&aggregate.0)
                .bind(&aggregate.1)
                .execute(&mut *tx)
                .await
                .context("clearing parked events for a retry")?;
            let events = load_range(&mut tx, &aggregate, checkpoint + 1, last).await?;
            let incoming: Vec<Incoming> = events
                .into_iter()
                .map(|event| Incoming::Event {
                    event,
                    from_store: true,
                })
                .collect();
            let batch = apply_batch(&mut tx, &incoming).await;
            match batch {
                Ok(batch) if batch.parked == 0 => {
                    tx.commit().await.context("committing a retry")?;
                    report.unblocked.push(aggregate);
                    report.applied += batch.applied;
                }
                Ok(_) => {
                    tx.commit().await.context("committing a retry")?;
                    report.still_parked.push(aggregate);
                }
                Err(error) => {
                    tx.rollback().await.ok();
                    tracing::warn!(error = format!("{error:#}"), "retry of a parked aggregate failed");
                    report.still_parked.push(aggregate);
                }
            }
        }
        Ok(report)
    }
}

/// What [`Projector::retry_parked`] did.
#[derive(Debug, Default, Clone)]
pub struct RetryReport {
    pub applied: usize,
    pub unblocked: Vec<(String, String)>,
    pub still_parked: Vec<(String, String)>,
}
