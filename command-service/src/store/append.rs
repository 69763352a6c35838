//! Appending events, with group commit.
//!
//! One statement appends the new events of any number of commands, from arrays (`APPEND`), and
//! completes the `Idempotency-Key` record of each command that is a request whose answer is
//! stored with its events (`idempotency::KeyRecord`): a command's events go in only if its
//! record could be written, so an answer and its events commit together or not at all.
//!
//! Concurrent commands share that statement, hence one transaction and one WAL flush: a worker
//! (or a few, `APPEND_WORKERS`) takes every append waiting when it is free (up to a batch's
//! bound) while the previous statement commits, so batches grow with the load and an idle
//! service adds no wait.
//!
//! A command whose events write a row other commands write too (`Contended`: a draw on a
//! promotion budget) is appended by a statement of its own, started at once beside the batches,
//! as it would be without group commit: those draws queue on the row's lock, not in a batch,
//! and no batch waits for them.
//!
//! A batch commits whole or not at all, but a command's outcome is its own: when the batch's
//! statement is refused (one command lost the optimistic lock, or hit a trigger's rule on
//! `external_id`, a transaction id or a promotion budget; two shared a key), every command of
//! the batch is appended again on its own, so the others commit and each gets its own answer.
//! A failure that is not the database refusing the statement (a lost connection) leaves the
//! batch's outcome unknown: every command of it is told so, as a single append would be, and
//! a retry finds what committed (every command is idempotent on its business ids and its key).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use anyhow::Context as _;
use cqrs_es::{Aggregate, DomainEvent, EventEnvelope};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Mutex};

use super::{Constraint, SQLSTATE_BUDGET_CHANGED, SQLSTATE_EXTERNAL_ID_TAKEN, SQLSTATE_TRANSACTION_CLAIMED};
use crate::idempotency::{KeyRecord, COMPLETE_ALL_IF_FREE};

/// Whether an event's append writes a row that concurrent commands write too (a promotion
/// budget): its command is then appended by a statement of its own, since in a shared statement
/// the second write of the row would be refused and take the whole batch down with it.
pub trait Contended {
    fn contended(&self) -> bool {
        false
    }
}

impl Contended for domain::MemberEvent {
    fn contended(&self) -> bool {
        self.draws_on_a_budget()
    }
}

impl Contended for domain::ProgramEvent {}

/// How commands are grouped into one statement.
#[derive(Debug, Clone, Copy)]
pub struct GroupCommit {
    /// Statements in flight at once, each a batch.
    pub workers: usize,
    /// Most commands in one statement (1: no grouping).
    pub max_batch: usize,
}

/// Why an append did not happen (or may not have).
#[derive(Debug)]
pub(super) enum PersistFailure {
    /// Another writer appended these sequence numbers first.
    Conflict,
    /// The request's key was taken: completed, reserved, or used for another request.
    KeyTaken,
    Constraint(Constraint),
    Other(anyhow::Error),
}

/// The new events of one command (and its request's answer), as the columns `APPEND` unnests.
/// Payloads and metadata are the text of their JSON values, exactly what postgres-es stores.
#[derive(Debug)]
pub(super) struct Append {
    aggregate_type: String,
    aggregate_id: String,
    sequences: Vec<i64>,
    types: Vec<String>,
    versions: Vec<String>,
    payloads: Vec<String>,
    metadata: Vec<String>,
    answer: Option<KeyRecord>,
    /// Appended by a statement of its own (`Contended`).
    alone: bool,
}

impl Append {
    pub(super) fn new<A: Aggregate>(
        envelopes: &[EventEnvelope<A>],
        answer: Option<KeyRecord>,
    ) -> anyhow::Result<Self>
    where
        A::Event: Contended,
    {
        let mut append = Self {
            aggregate_type: A::TYPE.to_owned(),
            aggregate_id: envelopes
                .first()
                .map(|envelope| envelope.aggregate_id.clone())
                .context("an append without events")?,
            sequences: Vec::with_capacity(envelopes.len()),
            types: Vec::with_capacity(envelopes.len()),
            versions: Vec::with_capacity(envelopes.len()),
            payloads: Vec::with_capacity(envelopes.len()),
            metadata: Vec::with_capacity(envelopes.len()),
            answer,
            alone: envelopes.iter().any(|envelope| envelope.payload.contended()),
        };
        for envelope in envelopes {
            append
                .sequences
                .push(i64::try_from(envelope.sequence).context("sequence out of range")?);
            append.types.push(envelope.payload.event_type());
            append.versions.push(envelope.payload.event_version());
            append
                .payloads
                .push(serde_json::to_value(&envelope.payload)?.to_string());
            append
                .metadata
                .push(serde_json::to_value(&envelope.metadata)?.to_string());
        }
        Ok(append)
    }
}

struct Pending {
    append: Append,
    reply: oneshot::Sender<Result<(), PersistFailure>>,
}

/// Appends commands' events in group commits (module docs); shared by the aggregate stores.
#[derive(Clone)]
pub struct Appender {
    queue: mpsc::UnboundedSender<Pending>,
}

impl Appender {
    /// Starts `group.workers` workers appending through `pool`; they stop when the last clone
    /// of the appender is dropped.
    pub fn new(pool: PgPool, group: GroupCommit) -> Self {
        let (queue, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..group.workers.max(1) {
            tokio::spawn(work(pool.clone(), receiver.clone(), group.max_batch.max(1)));
        }
        Self { queue }
    }

    /// Appends `append` (with the others waiting) and answers for it alone.
    pub(super) async fn append(&self, append: Append) -> Result<(), PersistFailure> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending { append, reply })
            .map_err(|_| PersistFailure::Other(anyhow::anyhow!("the appender stopped")))?;
        answer
            .await
            .map_err(|_| PersistFailure::Other(anyhow::anyhow!("the appender dropped an append")))?
    }
}

/// A worker: takes what is waiting, commits it, answers each, again.
async fn work(pool: PgPool, receiver: Arc<Mutex<mpsc::UnboundedReceiver<Pending>>>, max_batch: usize) {
    loop {
        let mut batch = Vec::new();
        {
            let mut receiver = receiver.lock().await;
            if receiver.recv_many(&mut batch, max_batch).await == 0 {
                return;
            }
        }
        let (alone, shared): (Vec<Pending>, Vec<Pending>) =
            batch.into_iter().partition(|pending| pending.append.alone);
        // A contended append waits on its row's lock, not for a worker: it runs on its own and
        // the worker goes on with the shared batch and the next one. Awaited with the batch,
        // each org's budget draws went out one round at a time, and with one worker that was
        // 599 promoted purchases/s against 832 with four.
        for pending in alone {
            metrics::histogram!("command_append_batch_size").record(1.0);
            let pool = pool.clone();
            tokio::spawn(async move { commit(&pool, vec![pending]).await });
        }
        if !shared.is_empty() {
            metrics::histogram!("command_append_batch_size").record(shared.len() as f64);
            commit(&pool, shared).await;
        }
    }
}

async fn commit(pool: &PgPool, batch: Vec<Pending>) {
    let (appends, replies): (Vec<Append>, Vec<_>) = batch
        .into_iter()
        .map(|pending| (pending.append, pending.reply))
        .unzip();
    match execute(pool, &appends).await {
        Ok(appended) => {
            for (append, reply) in appends.iter().zip(replies) {
                let _ = reply.send(outcome(&appended, append));
            }
        }
        Err(error) if appends.len() == 1 => {
            if let Some(reply) = replies.into_iter().next() {
                let _ = reply.send(Err(failure(error)));
            }
        }
        Err(error) if error.as_database_error().is_some() => {
            // Refused because of one of them (or several): each on its own, for its own answer.
            metrics::counter!("command_append_batch_splits_total").increment(1);
            let alone = appends.iter().map(|append| async move {
                match execute(pool, std::slice::from_ref(append)).await {
                    Ok(appended) => outcome(&appended, append),
                    Err(error) => Err(failure(error)),
                }
            });
            let outcomes = futures::future::join_all(alone).await;
            for (outcome, reply) in outcomes.into_iter().zip(replies) {
                let _ = reply.send(outcome);
            }
        }
        Err(error) => {
            let error = format!("{error:#}");
            for reply in replies {
                let _ = reply.send(Err(PersistFailure::Other(anyhow::anyhow!(
                    "appending a batch of events: {error}"
                ))));
            }
        }
    }
}

/// What a statement that went through means for `append`, from how many events each aggregate
/// got: only a command with an answer appends nothing without an error, when its key was taken.
fn outcome(appended: &HashMap<String, i64>, append: &Append) -> Result<(), PersistFailure> {
    if appended.get(&append.aggregate_id).is_some_and(|&n| n > 0) {
        Ok(())
    } else {
        Err(PersistFailure::KeyTaken)
    }
}

/// Runs `APPEND` for `appends`; answers how many events each aggregate got.
async fn execute(pool: &PgPool, appends: &[Append]) -> Result<HashMap<String, i64>, sqlx::Error> {
    let mut keys = KeyColumns::default();
    let mut events = EventColumns::default();
    for append in appends {
        if let Some(answer) = &append.answer {
            keys.push(answer);
        }
        events.push(append);
    }
    let rows: Vec<(String, i64)> = sqlx::query_as(&APPEND)
        .bind(keys.orgs)
        .bind(keys.keys)
        .bind(keys.hashes)
        .bind(keys.key_ids)
        .bind(keys.statuses)
        .bind(keys.bodies)
        .bind(events.aggregate_types)
        .bind(events.aggregate_ids)
        .bind(events.sequences)
        .bind(events.types)
        .bind(events.versions)
        .bind(events.payloads)
        .bind(events.metadata)
        .bind(events.key_orgs)
        .bind(events.keys)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().collect())
}

#[derive(Default)]
struct KeyColumns {
    orgs: Vec<String>,
    keys: Vec<String>,
    hashes: Vec<String>,
    key_ids: Vec<uuid::Uuid>,
    statuses: Vec<i16>,
    bodies: Vec<String>,
}

impl KeyColumns {
    fn push(&mut self, record: &KeyRecord) {
        self.orgs.push(record.org_id.clone());
        self.keys.push(record.key.clone());
        self.hashes.push(record.request_hash.clone());
        self.key_ids.push(record.key_id);
        self.statuses.push(record.status);
        self.bodies.push(record.body.clone());
    }
}

#[derive(Default)]
struct EventColumns {
    aggregate_types: Vec<String>,
    aggregate_ids: Vec<String>,
    sequences: Vec<i64>,
    types: Vec<String>,
    versions: Vec<String>,
    payloads: Vec<String>,
    metadata: Vec<String>,
    /// The key each event's answer is stored under (`None`: no answer to wait for).
    key_orgs: Vec<Option<String>>,
    keys: Vec<Option<String>>,
}

impl EventColumns {
    fn push(&mut self, append: &Append) {
        let n = append.sequences.len();
        self.aggregate_types
            .extend(std::iter::repeat_n(append.aggregate_type.clone(), n));
        self.aggregate_ids
            .extend(std::iter::repeat_n(append.aggregate_id.clone(), n));
        self.sequences.extend_from_slice(&append.sequences);
        self.types.extend_from_slice(&append.types);
        self.versions.extend_from_slice(&append.versions);
        self.payloads.extend_from_slice(&append.payloads);
        self.metadata.extend_from_slice(&append.metadata);
        let answer = append.answer.as_ref();
        self.key_orgs
            .extend(std::iter::repeat_n(answer.map(|a| a.org_id.clone()), n));
        self.keys
            .extend(std::iter::repeat_n(answer.map(|a| a.key.clone()), n));
    }
}

/// The answers (`idempotency::COMPLETE_ALL_IF_FREE`, `$1`–`$6`), then the events (`$7`–`$15`),
/// each only if its answer was written or it has none, in the order given (so `global_position`
/// follows the sequences). Answers how many events each aggregate got.
static APPEND: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH answers AS ({} RETURNING org_id, idempotency_key), \
         appended AS ( \
             INSERT INTO events \
                 (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             SELECT e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, e.event_version, \
                    e.payload::json, e.metadata::json \
             FROM unnest($7::text[], $8::text[], $9::bigint[], $10::text[], $11::text[], \
                         $12::text[], $13::text[], $14::text[], $15::text[]) \
                 WITH ORDINALITY AS e(aggregate_type, aggregate_id, sequence, event_type, \
                                      event_version, payload, metadata, key_org, key, n) \
             WHERE e.key IS NULL \
                OR EXISTS (SELECT FROM answers a \
                           WHERE a.org_id = e.key_org AND a.idempotency_key = e.key) \
             ORDER BY e.n \
             RETURNING aggregate_id) \
         SELECT aggregate_id, count(*) FROM appended GROUP BY aggregate_id",
        *COMPLETE_ALL_IF_FREE
    )
});

/// What a refused statement of one command means for it.
fn failure(error: sqlx::Error) -> PersistFailure {
    let database = error.as_database_error();
    let code = database
        .and_then(|error| error.code())
        .map(|code| code.into_owned());
    match code.as_deref() {
        // The primary key (aggregate_type, aggregate_id, sequence).
        Some("23505") if database.and_then(|error| error.constraint()) == Some("events_pkey") => {
            PersistFailure::Conflict
        }
        Some(SQLSTATE_EXTERNAL_ID_TAKEN) => PersistFailure::Constraint(Constraint::ExternalIdTaken),
        Some(SQLSTATE_TRANSACTION_CLAIMED) => PersistFailure::Constraint(Constraint::TransactionClaimed),
        Some(SQLSTATE_BUDGET_CHANGED) => PersistFailure::Constraint(Constraint::BudgetChanged),
        _ => PersistFailure::Other(anyhow::Error::from(error).context("appending events")),
    }
}
