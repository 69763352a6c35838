//! The credentials of a request, cached per process: API keys by hash, and each org's signing
//! secrets, so that authenticating a request costs no database round trip once warm.
//!
//! A cache of credentials is only safe if revocation reaches it at once. Every change of
//! `api_keys` or `signing_secrets` is announced by a trigger on the channel
//! [`CHANNEL`] (migration 0010); a task of each [`Credentials`] listens and empties the cache on
//! every notification. Notifications are delivered when the revoking transaction commits, so a
//! revoked key or secret is refused within the time it takes Postgres to deliver one (well
//! under a second). While the listening connection is down, nothing is cached (every request
//! goes to the database), and the cache is emptied again when it is back, since notifications
//! sent meanwhile are lost.
//!
//! A lookup that raced with an invalidation (it read the database before the change committed
//! and finished after the notification) must not put its stale answer back: each lookup notes
//! the cache's generation before reading and stores its answer only if no invalidation happened
//! since.
//!
//! Only keys that exist are cached, at most [`MAX_KEYS`]; unknown keys always reach the
//! database, so guessing keys cannot fill memory.
//!
//! Metrics: `credentials_cache_total{kind="key"|"secrets", outcome="hit"|"miss"}`,
//! `credentials_cache_invalidations_total`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use sqlx::PgPool;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::customer_token::{self, Customer, TokenError};
use crate::keys::{self, ApiKey, Role};
use crate::signing_secrets::{self, OrgSecret, Pepper};

/// The channel the migration's triggers notify on.
pub const CHANNEL: &str = "loyalty_credentials";
/// Most API keys kept (a cache full of keys is emptied, then refilled by use).
pub const MAX_KEYS: usize = 10_000;
/// Most orgs whose secrets are kept.
pub const MAX_ORGS: usize = 10_000;

/// API keys and signing secrets, cached, invalidated by LISTEN/NOTIFY. Cheap to clone.
#[derive(Clone)]
pub struct Credentials {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    pepper: Pepper,
    keys: Mutex<HashMap<String, ApiKey>>,
    secrets: Mutex<HashMap<String, Arc<Vec<OrgSecret>>>>,
    /// Bumped by every invalidation.
    generation: AtomicU64,
    /// Whether the cache may be used: the listener is subscribed.
    listening: AtomicBool,
    _stop_listener: DropGuard,
}

impl Credentials {
    /// Credentials read from `pool`, secrets derived with `pepper`; starts listening for
    /// changes (the task ends when the last clone is dropped). Must run inside a Tokio runtime.
    pub fn new(pool: PgPool, pepper: Pepper) -> Self {
        let stop = CancellationToken::new();
        let inner = Arc::new(Inner {
            pool,
            pepper,
            keys: Mutex::new(HashMap::new()),
            secrets: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            listening: AtomicBool::new(false),
            _stop_listener: stop.clone().drop_guard(),
        });
        tokio::spawn(crate::notify::listen(
            inner.pool.clone(),
            CHANNEL,
            Arc::downgrade(&inner),
            stop,
        ));
        Self { inner }
    }

    /// The database pool the credentials are read from.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The pepper signing secrets are derived with.
    pub fn pepper(&self) -> &Pepper {
        &self.inner.pepper
    }

    /// Whether changes are being listened for (the cache is in use).
    pub fn is_listening(&self) -> bool {
        self.inner.listening.load(Ordering::Acquire)
    }

    /// The key `bearer` stands for, or `None` if it is unknown or revoked.
    pub async fn authenticate(&self, bearer: &str) -> anyhow::Result<Option<ApiKey>> {
        let hash = keys::hash_key(bearer);
        let generation = self.inner.generation.load(Ordering::Acquire);
        if self.is_listening() {
            if let Some(key) = lock(&self.inner.keys).get(&hash) {
                metrics::counter!("credentials_cache_total", "kind" => "key", "outcome" => "hit")
                    .increment(1);
                return Ok(Some(key.clone()));
            }
        }
        metrics::counter!("credentials_cache_total", "kind" => "key", "outcome" => "miss").increment(1);
        let key = keys::authenticate(&self.inner.pool, bearer).await?;
        if let Some(key) = &key {
            self.store(&self.inner.keys, generation, MAX_KEYS, hash, key.clone());
        }
        Ok(key)
    }

    /// Every signing secret of `org` (active first, newest first; revoked ones too, so that a
    /// token signed by one is refused as such).
    pub async fn org_secrets(&self, org: &str) -> anyhow::Result<Arc<Vec<OrgSecret>>> {
        let generation = self.inner.generation.load(Ordering::Acquire);
        if self.is_listening() {
            if let Some(secrets) = lock(&self.inner.secrets).get(org) {
                metrics::counter!("credentials_cache_total", "kind" => "secrets", "outcome" => "hit")
                    .increment(1);
                return Ok(Arc::clone(secrets));
            }
        }
        metrics::counter!("credentials_cache_total", "kind" => "secrets", "outcome" => "miss").increment(1);
        let secrets = Arc::new(signing_secrets::load(&self.inner.pool, &self.inner.pepper, org).await?);
        self.store(
            &self.inner.secrets,
            generation,
            MAX_ORGS,
            org.to_owned(),
            Arc::clone(&secrets),
        );
        Ok(secrets)
    }

    /// The customer a `token` presented with the publishable key `key` names. The outer error
    /// is a failure to read the secrets; the inner one why the token is refused.
    pub async fn customer(&self, key: &ApiKey, token: &str) -> anyhow::Result<Result<Customer, TokenError>> {
        debug_assert_eq!(key.role, Role::Publishable);
        let secrets = self.org_secrets(&key.org_id).await?;
        let verified = customer_token::verify(token, &key.org_id, &secrets, Utc::now());
        let outcome = match &verified {
            Ok(_) => "ok",
            Err(error) => error.reason(),
        };
        metrics::counter!("customer_tokens_total", "outcome" => outcome).increment(1);
        Ok(verified)
    }

    fn store<V>(&self, map: &Mutex<HashMap<String, V>>, generation: u64, max: usize, name: String, value: V) {
        if !self.is_listening() {
            return;
        }
        let mut map = lock(map);
        // Checked under the lock: an invalidation clears the maps after bumping the generation.
        if self.inner.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if map.len() >= max {
            map.clear();
        }
        map.insert(name, value);
    }
}

impl Inner {
    fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        lock(&self.keys).clear();
        lock(&self.secrets).clear();
        metrics::counter!("credentials_cache_invalidations_total").increment(1);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves a map, not a broken invariant.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl crate::notify::Subscriber for Inner {
    fn changed(&self, _: Option<&str>) {
        self.invalidate();
    }

    fn listening(&self, on: bool) {
        self.listening.store(on, Ordering::Release);
    }
}
