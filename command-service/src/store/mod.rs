//! The command executor: load an aggregate, decide on a copy, append the new events, on the
//! postgres-es event table in event-store mode (SPEC §5: its snapshot and aggregate-store modes
//! apply new events twice).
//!
//! Events are loaded through postgres-es's repository, and appended by a statement of our own
//! (`append`) instead of its `persist` (a transaction of one `INSERT` per event, three round trips
//! and more): a command's events in one multi-row insert with, for a request, its
//! `Idempotency-Key` record completed with the answer, so the events and the answer commit
//! together (see `idempotency`); concurrent commands share the statement (group commit).
//!
//! Loading a member with a long history stays cheap thanks to an in-process cache of
//! `(aggregate, last sequence)` per aggregate id: a command reads only the events newer than the
//! cached sequence (`get_last_events`), and usually none at all, because
//!
//! - a decision that appends events is verified by the optimistic lock: the store's primary key
//!   `(aggregate_type, aggregate_id, sequence)` refuses the insert when another process appended
//!   first; the executor then reloads the aggregate and decides again (bounded, with jitter);
//! - a decision that appends nothing (a rejected command, or a duplicate the aggregate ignores)
//!   is not verified by any write, so it is only returned once the cache was caught up with the
//!   store during this execution.
//!
//! An aggregate read by every command of others (an org's program, read by each purchase) is
//! not even asked for newer events: its store is [`announced`](AggregateStore::announced), a
//! trigger notifies each append, and the notified slot is dropped (`common::notify`). While the
//! notifications are not received, it is read as above.
//!
//! Commands on one aggregate are serialized inside the process by a per-aggregate async mutex
//! (the cache slot itself), so concurrent requests on one member queue up instead of failing each
//! other's optimistic lock; across processes the lock and the retry take over.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use backon::{BackoffBuilder as _, ExponentialBackoff, ExponentialBuilder};
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::PersistedEventRepository;
use cqrs_es::{Aggregate, EventEnvelope};
use domain::codec::{Codec, Decodable};
use lru::LruCache;
use postgres_es::PostgresEventRepository;
use sqlx::PgPool;
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::idempotency::KeyRecord;

mod append;

use append::{Append, PersistFailure};
pub use append::{Appender, Contended, GroupCommit};

/// Metadata stored with every event of a command (org, command, idempotency key, key id,
/// request id).
pub type Metadata = HashMap<String, String>;

/// SQLSTATE raised by the `events` insert trigger when an enrolment's `external_id` is taken.
pub const SQLSTATE_EXTERNAL_ID_TAKEN: &str = "LY001";
/// SQLSTATE raised by the `events` insert trigger when a purchase's `transaction_id` was
/// already credited to another member of the org.
pub const SQLSTATE_TRANSACTION_CLAIMED: &str = "LY002";
/// SQLSTATE raised by the `events` insert trigger when a purchase drew on a promotion budget
/// whose remainder changed since it was read (migration 0006): decide again on a fresh read.
pub const SQLSTATE_BUDGET_CHANGED: &str = "LY003";

/// The channel the `events` insert trigger of migration 0014 notifies, with the org's id, when
/// a program event is appended.
pub const PROGRAM_CHANNEL: &str = "loyalty_program_changed";

/// A rule spanning aggregates that the store refused to break (see migrations 0003 and 0006).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Constraint {
    ExternalIdTaken,
    TransactionClaimed,
    /// A promotion budget the decision drew on changed before the append: the command must be
    /// decided again with the budgets read afresh (not an error of the request).
    BudgetChanged,
}

/// Why a command was not executed.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E: std::error::Error> {
    /// The aggregate refused the command; nothing was appended.
    #[error(transparent)]
    Rejected(E),
    /// The store refused the events because of a rule spanning aggregates; nothing was appended.
    #[error("the event store refused the events: {0:?}")]
    Constraint(Constraint),
    /// Other writers kept winning the optimistic lock; nothing was appended by this command.
    #[error("gave up after {attempts} optimistic-lock conflicts")]
    Contention { attempts: u32 },
    /// The request's `Idempotency-Key` was taken (answered, reserved, or used for another
    /// request) when the events were to be appended with its answer; nothing was appended.
    #[error("the Idempotency-Key is taken")]
    KeyTaken,
    /// The store failed; whether the events were appended is unknown (a retry will tell, since
    /// every command is idempotent on its business ids).
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// The outcome of an executed command.
#[derive(Debug)]
pub struct Committed<A: Aggregate, R> {
    /// The events appended, with their sequence numbers; empty when the command changed nothing.
    pub events: Vec<EventEnvelope<A>>,
    /// What the caller's `summarize` made of the aggregate after the command (the aggregate
    /// itself is not cloned: with a long history that would cost more than the command).
    pub summary: R,
    /// The aggregate's last sequence number after the command.
    pub sequence: usize,
    /// The answer stored with the events under the request's `Idempotency-Key`, if the caller
    /// gave one (`answer`) and the command appended events.
    pub answered: Option<KeyRecord>,
}

/// How often and how patiently a command is retried on optimistic-lock conflicts.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in total, the first one included.
    pub max_attempts: u32,
    /// Upper bound of the first back-off; doubled per conflict.
    pub base_backoff: Duration,
    /// Upper bound of every back-off.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            base_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(100),
        }
    }
}

impl RetryPolicy {
    /// Deciding a purchase again after a promotion budget it drew on changed (LY003): up to 20
    /// attempts, short waits (the draws on one budget are serialized by its row lock anyway).
    pub const BUDGET: RetryPolicy = RetryPolicy {
        max_attempts: 20,
        base_backoff: Duration::from_millis(2),
        max_backoff: Duration::from_millis(50),
    };

    /// The waits between attempts, at most `max_attempts - 1`: exponential from about
    /// `base_backoff`, below `max_backoff`, each with a random part so that processes that
    /// collided do not collide again in lockstep. (The jitter adds up to the wait itself, hence
    /// the halved bounds.)
    pub(crate) fn backoff(&self) -> ExponentialBackoff {
        ExponentialBuilder::default()
            .with_min_delay(self.base_backoff / 2)
            .with_max_delay(self.max_backoff / 2)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .build()
    }
}

struct Slot<A> {
    aggregate: A,
    sequence: usize,
    /// Whether `aggregate` is exactly the store's events up to `sequence`. False before the
    /// first load, and from the moment a decision applied events that are not committed yet
    /// until they are: a slot left untrusted (a failed append, a cancelled command) is rebuilt
    /// from the store before it is used again.
    trusted: bool,
}

impl<A: Default> Default for Slot<A> {
    fn default() -> Self {
        Self {
            aggregate: A::default(),
            sequence: 0,
            trusted: false,
        }
    }
}

type SlotRef<A> = Arc<Mutex<Slot<A>>>;

/// The cached aggregates of a store.
struct Slots<A> {
    map: SyncMutex<LruCache<String, SlotRef<A>>>,
    /// Whether every append of this aggregate type is announced to the store
    /// ([`AggregateStore::announced`]) right now: a trusted slot is then up to date, and
    /// [`AggregateStore::load`] uses it without asking the store.
    listening: AtomicBool,
}

impl<A> Slots<A> {
    fn map(&self) -> std::sync::MutexGuard<'_, LruCache<String, SlotRef<A>>> {
        self.map.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A notification names an aggregate that another writer appended to: its slot is dropped (a
/// command holding it finishes on it, as with an evicted slot), and the next load reads it
/// afresh.
impl<A: Send + 'static> common::notify::Subscriber for Slots<A> {
    fn changed(&self, id: Option<&str>) {
        match id {
            Some(id) => {
                self.map().pop(id);
            }
            None => self.map().clear(),
        }
    }

    fn listening(&self, on: bool) {
        self.listening.store(on, Ordering::Release);
    }
}

/// Executes commands of one aggregate type against the event store, with the cache described in
/// the module docs.
pub struct AggregateStore<A: Aggregate> {
    repo: PostgresEventRepository,
    appender: Appender,
    slots: Arc<Slots<A>>,
    retry: RetryPolicy,
    _stop_listener: Option<DropGuard>,
}

impl<A> AggregateStore<A>
where
    A: Aggregate<Services = ()>,
    A::Event: Decodable + Contended,
    A::Command: Clone,
{
    /// A store loading from `pool`, appending through `appender`, caching at most `capacity`
    /// aggregates (least recently used evicted).
    pub fn new(pool: PgPool, appender: Appender, capacity: NonZeroUsize, retry: RetryPolicy) -> Self {
        Self {
            repo: PostgresEventRepository::new(pool),
            appender,
            slots: Arc::new(Slots {
                map: SyncMutex::new(LruCache::new(capacity)),
                listening: AtomicBool::new(false),
            }),
            retry,
            _stop_listener: None,
        }
    }

    /// The same store, told of every append of its aggregate type by the notifications on
    /// `channel` (payload: the aggregate id), so that [`load`](Self::load) answers from the
    /// cache without a round trip while they are received, and reads the store as before while
    /// they are not. A change made by another process is seen once its notification arrived
    /// (Postgres delivers it at commit). Must run inside a Tokio runtime.
    pub fn announced(self, pool: PgPool, channel: &'static str) -> Self
    where
        A: 'static,
    {
        let stop = CancellationToken::new();
        tokio::spawn(common::notify::listen(
            pool,
            channel,
            Arc::downgrade(&self.slots),
            stop.clone(),
        ));
        Self {
            _stop_listener: Some(stop.drop_guard()),
            ..self
        }
    }

    /// The cache slot of `id`, locked: the caller is the only one in this process working on
    /// this aggregate until the guard is dropped (commands on one aggregate queue here).
    ///
    /// An evicted slot may still be held by a running command while a new slot is created for
    /// the next one; the two then race through the optimistic lock like two processes, which is
    /// correct, only slower.
    async fn lock(&self, id: &str) -> OwnedMutexGuard<Slot<A>> {
        let slot = self
            .slots
            .map()
            .get_or_insert(id.to_owned(), SlotRef::default)
            .clone();
        slot.lock_owned().await
    }

    /// Brings the slot up to date with the store: applies the events appended after its
    /// sequence, or rebuilds it from the first event when it is not trusted. Returns how many
    /// events were applied.
    async fn catch_up(&self, id: &str, slot: &mut Slot<A>) -> anyhow::Result<usize> {
        if !slot.trusted {
            *slot = Slot::default();
        }
        let events = self
            .repo
            .get_last_events::<A>(id, slot.sequence)
            .await
            .map_err(|error| anyhow!(error))
            .with_context(|| format!("loading events of {} {id} after {}", A::TYPE, slot.sequence))?;
        let count = events.len();
        for event in events {
            // Through the one codec, so an old event version is upcast here as everywhere else.
            let payload: A::Event = Codec::default()
                .decode_payload(&event.event_type, &event.event_version, event.payload)
                .with_context(|| {
                    format!(
                        "decoding {} {} event {} #{}",
                        A::TYPE,
                        id,
                        event.event_type,
                        event.sequence
                    )
                })?;
            slot.aggregate.apply(payload);
            slot.sequence = event.sequence;
        }
        slot.trusted = true;
        Ok(count)
    }

    /// `inspect(aggregate, last sequence)` on the current state of aggregate `id` (sequence 0:
    /// no events yet); for an [`announced`](Self::announced) store, as of the last
    /// notification.
    pub async fn load<R>(&self, id: &str, inspect: impl FnOnce(&A, usize) -> R) -> anyhow::Result<R> {
        let mut slot = self.lock(id).await;
        let source = if slot.trusted && self.slots.listening.load(Ordering::Acquire) {
            "cache"
        } else {
            self.catch_up(id, &mut slot).await?;
            "store"
        };
        metrics::counter!("command_aggregate_loads_total", "aggregate" => A::TYPE, "source" => source)
            .increment(1);
        Ok(inspect(&slot.aggregate, slot.sequence))
    }

    /// Executes `command` on aggregate `id`, appends its events with `metadata`, and returns
    /// them with `summarize(aggregate after the command)`.
    ///
    /// `answer(events, summary)` is the request's completed `Idempotency-Key` record, if the
    /// command is a request whose answer is stored with its events: it is appended in the same
    /// statement, only if the key is free (`ExecuteError::KeyTaken` otherwise, and nothing is
    /// appended). It is not asked when the command appends nothing.
    ///
    /// The decision is made on the cached aggregate itself, not on a copy: the domain writes
    /// no event unless the whole command is accepted, so a refusal leaves it untouched, and
    /// events that fail to commit leave the slot untrusted, to be rebuilt from the store.
    pub async fn execute<R>(
        &self,
        id: &str,
        command: A::Command,
        metadata: &Metadata,
        summarize: impl Fn(&A) -> R,
        answer: impl Fn(&[EventEnvelope<A>], &R) -> anyhow::Result<Option<KeyRecord>>,
    ) -> Result<Committed<A, R>, ExecuteError<A::Error>> {
        let mut slot = self.lock(id).await;
        let mut fresh = false;
        if !slot.trusted {
            self.catch_up(id, &mut slot).await?;
            fresh = true;
        }
        let mut conflicts = 0;
        let mut backoff = self.retry.backoff();
        loop {
            let sink = EventSink::default();
            let decided = slot.aggregate.handle(command.clone(), &(), &sink).await;
            let events = sink.collect().await;

            if decided.is_err() && !events.is_empty() {
                // The domain broke its own contract (events written, then an error): the
                // cached state has applied them, so it can no longer be trusted.
                slot.trusted = false;
                tracing::error!(
                    aggregate = A::TYPE,
                    id,
                    "a refused command wrote events to the sink"
                );
            }
            if decided.is_err() || events.is_empty() {
                if !fresh {
                    fresh = true;
                    if self.catch_up(id, &mut slot).await? > 0 {
                        continue;
                    }
                }
                return match decided {
                    Err(error) => Err(ExecuteError::Rejected(error)),
                    Ok(()) => Ok(Committed {
                        events: Vec::new(),
                        summary: summarize(&slot.aggregate),
                        sequence: slot.sequence,
                        answered: None,
                    }),
                };
            }

            // From here until the append is confirmed, the slot holds uncommitted events.
            slot.trusted = false;
            let envelopes: Vec<EventEnvelope<A>> = events
                .into_iter()
                .zip(slot.sequence + 1..)
                .map(|(payload, sequence)| EventEnvelope {
                    aggregate_id: id.to_owned(),
                    sequence,
                    payload,
                    metadata: metadata.clone(),
                })
                .collect();
            let summary = summarize(&slot.aggregate);
            let answered = answer(&envelopes, &summary)?;
            match self.persist(&envelopes, answered.as_ref()).await {
                Ok(()) => {
                    slot.sequence += envelopes.len();
                    slot.trusted = true;
                    return Ok(Committed {
                        events: envelopes,
                        summary,
                        sequence: slot.sequence,
                        answered,
                    });
                }
                Err(PersistFailure::KeyTaken) => return Err(ExecuteError::KeyTaken),
                Err(PersistFailure::Conflict) => {
                    conflicts += 1;
                    metrics::counter!("command_optimistic_lock_conflicts_total", "aggregate" => A::TYPE)
                        .increment(1);
                    let Some(pause) = backoff.next() else {
                        metrics::counter!("command_optimistic_lock_exhausted_total", "aggregate" => A::TYPE)
                            .increment(1);
                        return Err(ExecuteError::Contention { attempts: conflicts });
                    };
                    tracing::debug!(
                        aggregate = A::TYPE,
                        id,
                        conflicts,
                        "optimistic-lock conflict, retrying"
                    );
                    tokio::time::sleep(pause).await;
                    // Another process appended first: rebuild (the slot is untrusted) and decide
                    // again on the state that includes its events.
                    self.catch_up(id, &mut slot).await?;
                    fresh = true;
                }
                Err(PersistFailure::Constraint(constraint)) => {
                    return Err(ExecuteError::Constraint(constraint));
                }
                Err(PersistFailure::Other(error)) => {
                    // The commit may or may not have happened; the untrusted slot is rebuilt
                    // from the store by the next command either way.
                    return Err(ExecuteError::Store(error));
                }
            }
        }
    }

    /// Appends `envelopes` (and `answered`, if any) atomically, in a group commit.
    async fn persist(
        &self,
        envelopes: &[EventEnvelope<A>],
        answered: Option<&KeyRecord>,
    ) -> Result<(), PersistFailure> {
        let append = Append::new(envelopes, answered.cloned()).map_err(PersistFailure::Other)?;
        self.appender.append(append).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_grows() {
        let policy = RetryPolicy {
            max_attempts: 40,
            ..RetryPolicy::default()
        };
        assert_eq!(policy.backoff().count(), 39);
        for pause in policy.backoff() {
            assert!(pause < policy.max_backoff);
        }
        let first_cap = policy.base_backoff * 2;
        for _ in 0..100 {
            assert!(policy.backoff().next().is_some_and(|pause| pause < first_cap));
        }
    }
}
