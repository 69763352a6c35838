//! Projection lag: the time from a command's acknowledgement (its reply carries the member's
//! new `balance`) until the read model shows that balance.
//!
//! A background task keeps the latest acknowledged balance per member and looks all pending
//! members up every `poll_interval`, in one of two places ([`LagSource`]):
//!
//! - `db` (the default): one query on the read-model tables (`member_directory` joined with
//!   `member_balances`, exactly what the query service reads), cheap enough not to disturb a
//!   benchmark on a small machine;
//! - `graphql`: the query service itself, batched with aliases (one request per org and batch),
//!   which adds the GraphQL round trip and its CPU to every sample.
//!
//! A sample is taken when a lookup shows the acknowledged balance; the time the lookup's answer
//! arrived is used, so every sample is an upper bound that includes up to one poll interval and
//! one lookup round trip.
//!
//! Only acknowledgements that change a member's balance are tracked (an unchanged balance is
//! visible before the projection catches up), except enrolments (the member is absent until
//! projected). When a newer acknowledgement for the same member arrives before the older one was
//! seen, the older one is dropped and counted as superseded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::future::join_all;
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::api::Api;
use crate::stats::{Latencies, LatencySummary};

/// One acknowledged write whose effect should become visible in the read model.
#[derive(Debug, Clone, Copy)]
pub struct Ack {
    /// Index of the org in the run's org list.
    pub org: usize,
    pub member: Uuid,
    pub balance: i64,
    pub acked_at: Instant,
    /// False for acknowledgements outside the measured window: tracked (so a later sample is
    /// not fooled by them) but not recorded.
    pub measured: bool,
}

/// Where the read model is looked at.
#[derive(Debug, Clone)]
pub enum LagSource {
    /// The read-model tables in `schema`.
    Db { pool: PgPool, schema: String },
    /// The query service's GraphQL API, with each org's storefront key.
    Graphql { api: Api, keys: Vec<String> },
}

impl LagSource {
    fn name(&self) -> &'static str {
        match self {
            LagSource::Db { .. } => "read-model tables",
            LagSource::Graphql { .. } => "GraphQL",
        }
    }
}

#[derive(Debug, Clone)]
pub struct LagConfig {
    pub poll_interval: Duration,
    /// Members per GraphQL request.
    pub batch: usize,
    /// A pending acknowledgement not visible after this long counts as a timeout.
    pub timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct LagReport {
    /// Where the read model was looked at.
    pub source: &'static str,
    pub poll_interval_ms: u64,
    pub samples: LatencySummary,
    pub superseded: u64,
    pub timeouts: u64,
    /// Still not visible when the run ended and the drain period was over.
    pub unresolved: u64,
    pub poll_errors: u64,
    pub last_poll_error: Option<String>,
}

impl LagReport {
    pub fn render(&self) -> String {
        let mut out = format!(
            "projection lag (ack -> visible in the {}, polled every {} ms): {}\n",
            self.source,
            self.poll_interval_ms,
            self.samples.line()
        );
        out.push_str(&format!(
            "  superseded {}  timeouts {}  unresolved {}  poll errors {}\n",
            self.superseded, self.timeouts, self.unresolved, self.poll_errors
        ));
        if let Some(error) = &self.last_poll_error {
            out.push_str(&format!("  last poll error: {error}\n"));
        }
        out
    }
}

/// Handle of the background tracker.
pub struct LagTracker {
    tx: mpsc::UnboundedSender<Ack>,
    stop: watch::Sender<Option<Instant>>,
    pending: Arc<AtomicUsize>,
    task: JoinHandle<LagReport>,
}

#[derive(Debug, Clone)]
pub struct LagSender(mpsc::UnboundedSender<Ack>);

impl LagSender {
    pub fn send(&self, ack: Ack) {
        // The tracker only goes away after the run; a late send is harmless.
        let _ = self.0.send(ack);
    }
}

struct Pending {
    balance: i64,
    acked_at: Instant,
    measured: bool,
}

impl LagTracker {
    /// Starts polling `source`; `org_ids[i]` is org index `i` of the acknowledgements.
    pub fn spawn(source: LagSource, org_ids: Vec<String>, config: LagConfig) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(None);
        let pending = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(track(source, org_ids, config, rx, stop_rx, pending.clone()));
        Self {
            tx,
            stop,
            pending,
            task,
        }
    }

    pub fn sender(&self) -> LagSender {
        LagSender(self.tx.clone())
    }

    /// A reader of the number of acknowledgements not yet seen in the read model.
    pub fn pending_handle(&self) -> impl Fn() -> usize + Send + 'static {
        let pending = self.pending.clone();
        move || pending.load(Ordering::Relaxed)
    }

    /// Waits up to `drain` for the pending acknowledgements to become visible, then reports.
    pub async fn finish(self, drain: Duration) -> anyhow::Result<LagReport> {
        let _ = self.stop.send(Some(Instant::now() + drain));
        drop(self.tx);
        Ok(self.task.await?)
    }
}

async fn track(
    source: LagSource,
    org_ids: Vec<String>,
    config: LagConfig,
    mut rx: mpsc::UnboundedReceiver<Ack>,
    mut stop: watch::Receiver<Option<Instant>>,
    pending_count: Arc<AtomicUsize>,
) -> LagReport {
    let mut pending: HashMap<(usize, Uuid), Pending> = HashMap::new();
    let mut latencies = Latencies::default();
    let (mut superseded, mut timeouts, mut poll_errors) = (0u64, 0u64, 0u64);
    let mut last_poll_error = None;
    let mut add = |pending: &mut HashMap<(usize, Uuid), Pending>, ack: Ack| {
        let entry = Pending {
            balance: ack.balance,
            acked_at: ack.acked_at,
            measured: ack.measured,
        };
        if let Some(old) = pending.insert((ack.org, ack.member), entry) {
            if old.measured {
                superseded += 1;
            }
        }
    };
    loop {
        while let Ok(ack) = rx.try_recv() {
            add(&mut pending, ack);
        }
        pending_count.store(pending.len(), Ordering::Relaxed);
        let deadline = *stop.borrow();
        if let Some(deadline) = deadline {
            if pending.is_empty() || Instant::now() >= deadline {
                break;
            }
        }
        if pending.is_empty() {
            tokio::select! {
                ack = rx.recv() => match ack {
                    Some(ack) => add(&mut pending, ack),
                    None => { let _ = stop.changed().await; }
                },
                _ = stop.changed() => {}
            }
            continue;
        }

        let members: Vec<(usize, Uuid)> = pending.keys().copied().collect();
        match lookup(&source, &org_ids, &members, config.batch).await {
            Ok((shown, seen_at)) => {
                for (key, balance) in shown {
                    if let Some(entry) = pending.get(&key) {
                        if entry.balance == balance {
                            if entry.measured {
                                latencies.record(seen_at.saturating_duration_since(entry.acked_at));
                            }
                            pending.remove(&key);
                        }
                    }
                }
            }
            Err(error) => {
                poll_errors += 1;
                last_poll_error = Some(format!("{error:#}"));
            }
        }
        let now = Instant::now();
        pending.retain(|_, entry| {
            let keep = now.saturating_duration_since(entry.acked_at) < config.timeout;
            if !keep && entry.measured {
                timeouts += 1;
            }
            keep
        });
        tokio::time::sleep(config.poll_interval).await;
    }
    // Acknowledgements that were still in the channel also never became visible in time.
    while let Ok(ack) = rx.try_recv() {
        add(&mut pending, ack);
    }
    pending_count.store(0, Ordering::Relaxed);
    let unresolved = pending.values().filter(|p| p.measured).count() as u64;
    LagReport {
        source: source.name(),
        poll_interval_ms: u64::try_from(config.poll_interval.as_millis()).unwrap_or(u64::MAX),
        samples: latencies.summary(),
        superseded,
        timeouts,
        unresolved,
        poll_errors,
        last_poll_error,
    }
}

/// The balances the read model shows for `members` (absent: not projected yet), and when the
/// answer arrived.
async fn lookup(
    source: &LagSource,
    org_ids: &[String],
    members: &[(usize, Uuid)],
    batch: usize,
) -> anyhow::Result<(Vec<((usize, Uuid), i64)>, Instant)> {
    match source {
        LagSource::Db { pool, schema } => {
            let orgs: Vec<&str> = members.iter().map(|(o, _)| org_ids[*o].as_str()).collect();
            let ids: Vec<Uuid> = members.iter().map(|(_, m)| *m).collect();
            // A member the directory knows has a balance (0 until a balance row exists).
            let rows: Vec<(String, Uuid, i64)> = sqlx::query_as(&format!(
                "SELECT q.org_id, q.member_id, coalesce(b.balance, 0) \
                 FROM unnest($1::text[], $2::uuid[]) AS q(org_id, member_id) \
                 JOIN {schema}.member_directory d USING (org_id, member_id) \
                 LEFT JOIN {schema}.member_balances b USING (org_id, member_id)"
            ))
            .bind(&orgs)
            .bind(&ids)
            .fetch_all(pool)
            .await
            .context("reading member balances from the read model")?;
            let seen_at = Instant::now();
            let index: HashMap<&str, usize> =
                org_ids.iter().enumerate().map(|(i, o)| (o.as_str(), i)).collect();
            let shown = rows
                .into_iter()
                .filter_map(|(org, member, balance)| Some(((*index.get(org.as_str())?, member), balance)))
                .collect();
            Ok((shown, seen_at))
        }
        LagSource::Graphql { api, keys } => {
            // One GraphQL request per org and batch of members, all in flight together.
            let mut by_org: HashMap<usize, Vec<Uuid>> = HashMap::new();
            for (org, member) in members {
                by_org.entry(*org).or_default().push(*member);
            }
            let polls: Vec<(usize, Vec<Uuid>)> = by_org
                .into_iter()
                .flat_map(|(org, members)| {
                    members
                        .chunks(batch.max(1))
                        .map(|chunk| (org, chunk.to_vec()))
                        .collect::<Vec<_>>()
                })
                .collect();
            let results = join_all(polls.into_iter().map(|(org, members)| async move {
                let query = balances_query(&org_ids[org], &members);
                let data = api.graphql(&keys[org], &query, &Value::Null).await;
                (org, members, data)
            }))
            .await;
            let seen_at = Instant::now();
            let mut shown = Vec::new();
            for (org, members, data) in results {
                let data = data?;
                for (i, member) in members.iter().enumerate() {
                    if let Some(points) = data
                        .get(format!("m{i}"))
                        .and_then(|m| m.pointer("/balance/points"))
                        .and_then(Value::as_i64)
                    {
                        shown.push(((org, *member), points));
                    }
                }
            }
            Ok((shown, seen_at))
        }
    }
}

/// Waits until the read model shows every `(org index, member) -> balance` of `expected`; returns
/// how long that took.
pub async fn wait_until_shown(
    source: &LagSource,
    org_ids: &[String],
    expected: &[((usize, Uuid), i64)],
    timeout: Duration,
    poll: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let members: Vec<(usize, Uuid)> = expected.iter().map(|(key, _)| *key).collect();
    loop {
        let (shown, _) = lookup(source, org_ids, &members, 25).await?;
        let shown: HashMap<(usize, Uuid), i64> = shown.into_iter().collect();
        let missing = expected
            .iter()
            .filter(|(key, balance)| shown.get(key) != Some(balance))
            .count();
        if missing == 0 {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= timeout {
            anyhow::bail!(
                "{missing} of {} members not shown by the {} after {timeout:?}",
                expected.len(),
                source.name()
            );
        }
        tokio::time::sleep(poll).await;
    }
}

/// `{ m0: member(orgId: "...", memberId: "...") { balance { points } } m1: ... }`.
/// Org ids are slugs and member ids UUIDs, so inlining them needs no escaping.
pub fn balances_query(org_id: &str, members: &[Uuid]) -> String {
    let mut query = String::from("query LoadgenBalances {");
    for (i, member) in members.iter().enumerate() {
        query.push_str(&format!(
            " m{i}: member(orgId: \"{org_id}\", memberId: \"{member}\") {{ balance {{ points }} }}"
        ));
    }
    query.push_str(" }");
    query
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_balances_query_aliases_each_member() {
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        let query = balances_query("acme", &[a, b]);
        assert_eq!(
            query,
            format!(
                "query LoadgenBalances {{ m0: member(orgId: \"acme\", memberId: \"{a}\") {{ balance {{ points }} }} \
                 m1: member(orgId: \"acme\", memberId: \"{b}\") {{ balance {{ points }} }} }}"
            )
        );
    }
}
