//! Members' rows kept in the projector between batches, so that a batch reads from Postgres
//! only the members it has not just written.
//!
//! The read of a batch's members was a sixth of the projector's statement time at 32 terminals
//! (BENCHMARKS.md), and most of what it read, the rows the previous batches of the same
//! members had just written, the projector already held in memory.
//!
//! A cached state is trusted only when the member's checkpoint, read by the batch under its
//! projector lock, is the sequence the state was cached at. Every writer of a member's rows
//! (this process, another projector process on the same schema, `projector retry-parked`)
//! advances that checkpoint in the same transaction, so a state cached before any other
//! writer's commit no longer matches and is read again. A state is cached only after its
//! batch committed; a batch that fails leaves the cache as it was, still matching the rows.
//!
//! What is cached is the state exactly as [`crate::read_models::load_members`] would read it
//! back ([`MemberState::as_loaded`]): the purchases a batch names and the lots it takes from
//! are still read by every batch. A member whose state cannot be put in that form (its next
//! expiry is only known to Postgres) is dropped from the cache and read next time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context as _;
use domain::codec::Decodable as _;
use domain::{MemberEvent, MemberKey};
use lru::LruCache;
use sqlx::PgPool;

use crate::batch::{begin, PARTITIONS};
use crate::read_models::{self, MemberState};

/// A member's state as of a checkpoint, or `None` to forget the member.
pub(crate) type CacheUpdate = (MemberKey, i64, Option<MemberState>);

/// The most recently written members' states (module docs). Clones share one cache.
#[derive(Clone)]
pub struct MemberCache {
    inner: Arc<Mutex<LruCache<MemberKey, (i64, MemberState)>>>,
    hits: Arc<AtomicU64>,
}

impl std::fmt::Debug for MemberCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberCache").field("len", &self.len()).finish()
    }
}

impl MemberCache {
    /// A cache of at most `capacity` members (`None` for 0: no cache).
    pub fn new(capacity: usize) -> Option<Self> {
        let capacity = NonZeroUsize::new(capacity)?;
        Some(Self {
            inner: Arc::new(Mutex::new(LruCache::new(capacity))),
            hits: Arc::default(),
        })
    }

    /// How many members are cached.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many times a batch used a cached state instead of reading the member.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// The cached members still at the checkpoint they were cached at whose state is not what
    /// a batch would read from `schema` now: `(member, cached, read)`. Empty unless a writer
    /// changed a member's rows without advancing its checkpoint, or [`MemberState::as_loaded`]
    /// is wrong; a check for tests and operators, it reads every cached member.
    pub async fn differences(
        &self,
        pool: &PgPool,
        schema: &str,
    ) -> anyhow::Result<Vec<(MemberKey, MemberState, MemberState)>> {
        let cached: BTreeMap<MemberKey, (i64, MemberState)> =
            self.lock().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut tx = begin(pool, schema, 0..PARTITIONS).await?;
        let aggregates: BTreeSet<_> = cached
            .keys()
            .map(|k| (MemberEvent::AGGREGATE_TYPE.to_owned(), k.aggregate_id()))
            .collect();
        let (checkpoints, _) = crate::progress::load(&mut tx, &aggregates).await?;
        let current: Vec<MemberKey> = cached
            .iter()
            .filter(|(k, (at, _))| {
                checkpoints.get(&(MemberEvent::AGGREGATE_TYPE.to_owned(), k.aggregate_id())) == Some(at)
            })
            .map(|(k, _)| k.clone())
            .collect();
        let read =
            read_models::load_members(&mut tx, HashMap::new(), &current, &BTreeMap::new(), &[]).await?;
        tx.rollback()
            .await
            .context("ending the check of the members' cache")?;
        Ok(current
            .into_iter()
            .filter_map(|k| {
                let cached = &cached[&k].1;
                let read = read.get(&k).cloned().unwrap_or_default();
                (*cached != read).then(|| (k, cached.clone(), read))
            })
            .collect())
    }

    /// The cached states of `members` whose checkpoint (`checkpoint_of`, as the batch read it)
    /// is the one they were cached at.
    pub(crate) fn valid<'a>(
        &self,
        members: impl Iterator<Item = &'a MemberKey>,
        checkpoint_of: impl Fn(&MemberKey) -> Option<i64>,
    ) -> HashMap<MemberKey, MemberState> {
        let mut cache = self.lock();
        let mut found = HashMap::new();
        let mut misses = 0_u64;
        for member in members {
            match (cache.get(member), checkpoint_of(member)) {
                (Some((cached_at, state)), Some(checkpoint)) if *cached_at == checkpoint => {
                    found.insert(member.clone(), state.clone());
                }
                _ => misses += 1,
            }
        }
        drop(cache);
        self.hits.fetch_add(found.len() as u64, Ordering::Relaxed);
        metrics::counter!("projector_member_cache_hits_total").increment(found.len() as u64);
        metrics::counter!("projector_member_cache_misses_total").increment(misses);
        found
    }

    /// Records the states of a committed batch.
    pub(crate) fn store(&self, updates: Vec<CacheUpdate>) {
        if updates.is_empty() {
            return;
        }
        let mut cache = self.lock();
        for (member, checkpoint, state) in updates {
            match state {
                Some(state) => {
                    cache.put(member, (checkpoint, state));
                }
                None => {
                    cache.pop(&member);
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<MemberKey, (i64, MemberState)>> {
        // The cache holds no invariant a panic could break halfway: every entry is whole.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
