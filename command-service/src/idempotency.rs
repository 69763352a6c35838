//! `Idempotency-Key` handling (SPEC §7): the same key with the same request returns the original
//! response; the same key with a different request gets 409.
//!
//! Two ways to keep the promise, by the kind of command:
//!
//! **Member commands** (enrol, purchase, refund, redeem, adjust) store their answer *with their
//! events*: the record, completed with the exact response body, is written by the statement that
//! appends the events (`store`), and only if the key is free — so the events and the answer commit
//! together or not at all, and a command costs one transaction. Nothing is reserved first:
//! - a retry of a request that committed appends nothing (every member command is idempotent on
//!   its business ids) and finds the stored answer, which it replays byte for byte;
//! - two requests with one key race like any two commands: on one member they queue on the
//!   member (in one process) or meet at the optimistic lock, and the second appends nothing and
//!   replays the first; on different members the second one's append finds the key taken and
//!   writes nothing (`KeyRecord` below), then answers from the record: replay, or 409
//!   `idempotency_key_reused` for a different request;
//! - a crash before the commit left nothing; after it, the answer is there for the retry.
//!
//! A member command that appends nothing (a duplicate, a refusal) stores or replays its answer
//! afterwards (`settle`, `found`).
//!
//! **Every other write** (program, locations, promotions, jobs, keys) *reserves* the key before
//! the command runs (a row with a lease) and *completes* it with the response afterwards; a
//! request whose command fails releases its reservation: it changed nothing, so a retry is simply
//! evaluated again. The lease is short (`IDEMPOTENCY_LEASE_SECS`, 3 s by default) and renewed
//! every third of it while the command runs, so a reservation outlives its request by at most one
//! lease: a terminal retrying after a crash gets its answer within a lease of the service being
//! back. Renewals are cheap: most commands end before the first one, and they go through this
//! module's `synchronous_commit = off` connections.
//!
//! Crash windows of a reservation, and why each is safe:
//! - reserved, nothing else: a retry within the lease gets 409 `request_in_progress` (with
//!   `Retry-After: 1`); after the lease it takes the reservation over and runs the command.
//!   Nothing was applied.
//! - reserved and events committed, response not stored (crash, or the store failed after the
//!   append): after the lease a retry runs the command again. Every command is idempotent on its
//!   business ids, so it appends nothing the second time, and the command layer answers with the
//!   events recorded under this idempotency key.
//! - completed: replayed byte for byte.
//! - the request is alive but its renewals did not land in time (a stalled pool, a Postgres
//!   restart): a retry takes the key over while the first request still runs. Both run the
//!   command; the optimistic lock on the aggregate lets one append, and the other finds its
//!   business id recorded and appends nothing. The retry holds the lease, so its response is the
//!   one stored and replayed; the first request's `complete` finds its lease gone and stores
//!   nothing, and its own answer reports the same events (those recorded under the key).
//!
//! A member command meeting a live reservation of its key (a request of the reserving kind with
//! the same key and body, or a row left by an earlier version of the service) appends nothing and
//! answers 409 `request_in_progress` until the lease runs out, then takes the key over.

use std::sync::LazyLock;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

/// Longest `Idempotency-Key` accepted.
pub const MAX_KEY_LEN: usize = 255;

/// Checks an `Idempotency-Key` header value: 1 to 255 visible ASCII characters.
pub fn validate_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        Err("must not be empty")
    } else if key.len() > MAX_KEY_LEN {
        Err("must be at most 255 characters")
    } else if !key.bytes().all(|b| b.is_ascii_graphic()) {
        Err("must be visible ASCII characters without spaces")
    } else {
        Ok(())
    }
}

/// The fingerprint of a request: method, path and body with object keys sorted, so that a
/// retry that re-serializes the same JSON differently still matches.
pub fn request_hash(method: &str, path: &str, body: &Value) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update(b"\n");
    hasher.update(path.as_bytes());
    hasher.update(b"\n");
    hasher.update(canonical_json(body).as_bytes());
    format!("{:x}", hasher.finalize())
}

fn canonical_json(value: &Value) -> String {
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                out.push('{');
                for (i, (key, value)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(key.clone()).to_string());
                    out.push(':');
                    write(value, out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// A reservation held by this request.
#[derive(Debug, Clone)]
pub struct Lease {
    org_id: String,
    key: String,
    lease_id: Uuid,
}

/// What reserving a key found.
#[derive(Debug)]
pub enum Reservation {
    /// This request holds the key and runs the command.
    Acquired(Lease),
    /// The key already completed with this response.
    Replay { status: u16, body: String },
    /// Another request with the same key and body is running.
    InProgress,
    /// The key was used for a different request.
    Reused,
}

/// A completed record, written by the statement that appends a member command's events.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub org_id: String,
    pub key: String,
    pub request_hash: String,
    pub key_id: Uuid,
    pub status: i16,
    /// The exact response body, replayed to every retry.
    pub body: String,
}

/// When an existing record may be taken over by the row being inserted: it is a reservation whose
/// lease ran out (its request died) and the same request asks again (a different one could find
/// the first one's events already committed). Otherwise the key is taken: completed, reserved
/// by a live lease, or used for another request.
const FREE_TO_TAKE_OVER: &str = "\
    command_idempotency_keys.status_code IS NULL \
    AND command_idempotency_keys.locked_until < now() \
    AND command_idempotency_keys.request_hash = EXCLUDED.request_hash";

/// Reserves a key (`$1` org, `$2` key, `$3` request hash, `$4` key id, `$5` lease id, `$6` lease
/// in seconds) unless it is taken; returns the lease id only when it reserved.
static RESERVE_IF_FREE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO command_idempotency_keys \
             (org_id, idempotency_key, request_hash, key_id, lease_id, locked_until) \
         VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6)) \
         ON CONFLICT (org_id, idempotency_key) DO UPDATE \
             SET key_id = EXCLUDED.key_id, lease_id = EXCLUDED.lease_id, \
                 locked_until = EXCLUDED.locked_until \
             WHERE {FREE_TO_TAKE_OVER} \
         RETURNING lease_id"
    )
});

/// The completion of the rows to write whose key is free (`FREE_TO_TAKE_OVER`); follows them.
static UNLESS_TAKEN: LazyLock<String> = LazyLock::new(|| {
    format!(
        "ON CONFLICT (org_id, idempotency_key) DO UPDATE \
             SET key_id = EXCLUDED.key_id, status_code = EXCLUDED.status_code, \
                 response_body = EXCLUDED.response_body, completed_at = EXCLUDED.completed_at, \
                 lease_id = NULL, locked_until = NULL \
             WHERE {FREE_TO_TAKE_OVER}"
    )
});

const COMPLETE_INTO: &str = "\
INSERT INTO command_idempotency_keys \
    (org_id, idempotency_key, request_hash, key_id, status_code, response_body, completed_at)";

/// Writes one completed record (`$1` org, `$2` key, `$3` request hash, `$4` key id, `$5` status,
/// `$6` body) unless its key is taken; returns a row only when it wrote.
static COMPLETE_IF_FREE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{COMPLETE_INTO} VALUES ($1, $2, $3, $4, $5, $6, now()) {} RETURNING 1",
        *UNLESS_TAKEN
    )
});

/// Writes the completed records of the arrays `$1`–`$6` (as `COMPLETE_IF_FREE`'s parameters)
/// whose key is free; a `RETURNING` clause may follow.
pub static COMPLETE_ALL_IF_FREE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{COMPLETE_INTO} \
         SELECT a.org_id, a.key, a.request_hash, a.key_id, a.status, a.body, now() \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[], $5::smallint[], $6::text[]) \
             AS a(org_id, key, request_hash, key_id, status, body) \
         {}",
        *UNLESS_TAKEN
    )
});

/// The idempotency records of the command API.
#[derive(Clone)]
pub struct Idempotency {
    pool: PgPool,
    lease: Duration,
}

impl Idempotency {
    /// Keeps its records through its own connections to `pool`'s database, with
    /// `synchronous_commit = off`: none of these writes needs its own WAL flush.
    /// - A reservation matters only if the command's events commit, and that synchronous commit
    ///   flushes the WAL up to and past the reservation's commit record.
    /// - A completed response or a release lost in a crash is the "response not stored" /
    ///   "reserved, nothing else" window above, which is already safe.
    ///
    /// So a command costs one synchronous commit (its events) instead of three.
    pub fn new(pool: &PgPool, lease: Duration) -> Self {
        let options = pool
            .connect_options()
            .as_ref()
            .clone()
            .options([("synchronous_commit", "off")]);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(pool.options().get_max_connections())
            .acquire_timeout(pool.options().get_acquire_timeout())
            .connect_lazy_with(options);
        Self { pool, lease }
    }

    /// Reserves `key` of `org` for a request with fingerprint `request_hash`.
    pub async fn reserve(
        &self,
        org_id: &str,
        key: &str,
        request_hash: &str,
        key_id: Uuid,
    ) -> anyhow::Result<Reservation> {
        let lease_id = Uuid::new_v4();
        let lease_secs = self.lease.as_secs_f64();
        let acquired: Option<Uuid> = sqlx::query_scalar(&RESERVE_IF_FREE)
            .bind(org_id)
            .bind(key)
            .bind(request_hash)
            .bind(key_id)
            .bind(lease_id)
            .bind(lease_secs)
            .fetch_optional(&self.pool)
            .await
            .context("reserving an idempotency key")?;
        if acquired.is_some() {
            return Ok(Reservation::Acquired(Lease {
                org_id: org_id.to_owned(),
                key: key.to_owned(),
                lease_id,
            }));
        }

        self.found(org_id, key, request_hash)
            .await
            .map(|found| found.unwrap_or(Reservation::InProgress))
    }

    /// What holds `key` of `org` for a request with fingerprint `request_hash`, if anything:
    /// its stored answer, another request, or a live reservation. Never `Acquired`.
    pub async fn found(
        &self,
        org_id: &str,
        key: &str,
        request_hash: &str,
    ) -> anyhow::Result<Option<Reservation>> {
        let existing: Option<(String, Option<i16>, Option<String>)> = sqlx::query_as(
            "SELECT request_hash, status_code, response_body FROM command_idempotency_keys \
             WHERE org_id = $1 AND idempotency_key = $2",
        )
        .bind(org_id)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .context("reading an idempotency key")?;
        Ok(match existing {
            None => None,
            Some((hash, _, _)) if hash != request_hash => Some(Reservation::Reused),
            Some((_, Some(status), Some(body))) => Some(Reservation::Replay {
                status: u16::try_from(status).context("stored status code out of range")?,
                body,
            }),
            Some(_) => Some(Reservation::InProgress),
        })
    }

    /// Stores the answer of a member command that appended nothing (a duplicate, or a command
    /// that changed nothing) unless the key is taken; returns what holds it then.
    pub async fn settle(&self, record: &KeyRecord) -> anyhow::Result<Option<Reservation>> {
        let stored = sqlx::query(&COMPLETE_IF_FREE)
            .bind(&record.org_id)
            .bind(&record.key)
            .bind(&record.request_hash)
            .bind(record.key_id)
            .bind(record.status)
            .bind(&record.body)
            .fetch_optional(&self.pool)
            .await
            .context("storing an idempotent response")?;
        if stored.is_some() {
            return Ok(None);
        }
        // Taken: by what? (Freed in between, by a reservation's release: the client retries.)
        self.found(&record.org_id, &record.key, &record.request_hash)
            .await
            .map(|found| Some(found.unwrap_or(Reservation::InProgress)))
    }

    /// How long a reservation lasts unless renewed.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Extends a running request's reservation by a full lease (long commands such as jobs keep
    /// their key while they run).
    pub async fn renew(&self, lease: &Lease) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE command_idempotency_keys SET locked_until = now() + make_interval(secs => $4) \
             WHERE org_id = $1 AND idempotency_key = $2 AND lease_id = $3 AND status_code IS NULL",
        )
        .bind(&lease.org_id)
        .bind(&lease.key)
        .bind(lease.lease_id)
        .bind(self.lease.as_secs_f64())
        .execute(&self.pool)
        .await
        .context("renewing an idempotency lease")?;
        Ok(())
    }

    /// Stores the response of a successful request.
    pub async fn complete(&self, lease: &Lease, status: u16, body: &str) -> anyhow::Result<()> {
        let status = i16::try_from(status).context("status code out of range")?;
        let updated = sqlx::query(
            "UPDATE command_idempotency_keys \
             SET status_code = $4, response_body = $5, completed_at = now(), \
                 lease_id = NULL, locked_until = NULL \
             WHERE org_id = $1 AND idempotency_key = $2 AND lease_id = $3",
        )
        .bind(&lease.org_id)
        .bind(&lease.key)
        .bind(lease.lease_id)
        .bind(status)
        .bind(body)
        .execute(&self.pool)
        .await
        .context("storing an idempotent response")?;
        if updated.rows_affected() == 0 {
            // Our lease ran out and a retry took the key over; it stores its own (equivalent)
            // response.
            tracing::warn!(key = %lease.key, "idempotency lease lost before the response was stored");
        }
        Ok(())
    }

    /// Gives up a reservation whose request failed (and so changed nothing).
    pub async fn release(&self, lease: &Lease) -> anyhow::Result<()> {
        sqlx::query(
            "DELETE FROM command_idempotency_keys \
             WHERE org_id = $1 AND idempotency_key = $2 AND lease_id = $3 AND status_code IS NULL",
        )
        .bind(&lease.org_id)
        .bind(&lease.key)
        .bind(lease.lease_id)
        .execute(&self.pool)
        .await
        .context("releasing an idempotency key")?;
        Ok(())
    }

    /// Deletes completed records older than `retention`; returns how many.
    ///
    /// A retry after that is evaluated again, which the commands' own idempotency makes safe.
    pub async fn purge(&self, retention: Duration) -> anyhow::Result<u64> {
        let deleted = sqlx::query(
            "DELETE FROM command_idempotency_keys \
             WHERE completed_at < now() - make_interval(secs => $1)",
        )
        .bind(retention.as_secs_f64())
        .execute(&self.pool)
        .await
        .context("purging old idempotency keys")?;
        Ok(deleted.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_hash_ignores_key_order_and_whitespace() {
        let a: Value = serde_json::from_str(r#"{"b": 1, "a": {"y": [1, 2], "x": "é"}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":{"x":"é","y":[1,2]},"b":1}"#).unwrap();
        assert_eq!(request_hash("POST", "/p", &a), request_hash("POST", "/p", &b));
    }

    #[test]
    fn the_hash_covers_method_path_and_values() {
        let body = json!({"amount_minor": 100});
        let base = request_hash("POST", "/v1/orgs/a/members", &body);
        assert_ne!(base, request_hash("PUT", "/v1/orgs/a/members", &body));
        assert_ne!(base, request_hash("POST", "/v1/orgs/b/members", &body));
        assert_ne!(
            base,
            request_hash("POST", "/v1/orgs/a/members", &json!({"amount_minor": 101}))
        );
        // A number and the same digits as a string are different requests.
        assert_ne!(
            base,
            request_hash("POST", "/v1/orgs/a/members", &json!({"amount_minor": "100"}))
        );
    }

    #[test]
    fn keys_are_checked() {
        assert!(validate_key("pos-42:2024-05-01T10:00:00Z#7").is_ok());
        assert!(validate_key("").is_err());
        assert!(validate_key("has space").is_err());
        assert!(validate_key("tab\there").is_err());
        assert!(validate_key("ünicode").is_err());
        assert!(validate_key(&"k".repeat(255)).is_ok());
        assert!(validate_key(&"k".repeat(256)).is_err());
    }
}
