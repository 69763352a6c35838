//! When RFM scores are recomputed: on the schedule (`--rfm-interval-secs`, every org), and,
//! unless `--rfm-eager false`, as soon as they are worth having rather than a quarter of an
//! hour later (issue 13, "the first look is right"):
//!
//! - at start-up, every org that has purchases;
//! - an org that has purchases but was never scored (a new org's first customers);
//! - after a bulk load: an org that received at least [`BULK_MIN_EVENTS`] purchase and refund
//!   events, and at least a tenth of its scored members, since it was last scored.
//!
//! The last two wait until the stream has been quiet for [`QUIET`] (or at most [`MAX_WAIT`]
//! under steady load), so that a load is scored once, when it is complete, and not batch by
//! batch. The batches report what they applied through an [`RfmTrigger`], which only adds up
//! counts per org: the consumer never waits for a recomputation.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::rfm;

/// Fewest purchase and refund events since the last scoring that make a bulk load.
pub const BULK_MIN_EVENTS: i64 = 100;
/// How long the stream must be quiet before a new or bulk-loaded org is scored.
pub const QUIET: Duration = Duration::from_secs(1);
/// The longest such an org waits under steady load.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// What committed batches applied, per org, waiting for the scheduler. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct RfmTrigger {
    pending: Arc<Mutex<BTreeMap<String, i64>>>,
    notify: Arc<Notify>,
}

impl RfmTrigger {
    /// Records purchase and refund events applied per org by a committed batch.
    pub fn changed(&self, orgs: &BTreeMap<String, i64>) {
        if orgs.is_empty() {
            return;
        }
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (org, n) in orgs {
            *pending.entry(org.clone()).or_default() += n;
        }
        drop(pending);
        self.notify.notify_one();
    }

    fn take(&self) -> BTreeMap<String, i64> {
        std::mem::take(
            &mut *self
                .pending
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }
}

/// How an org stands since its last scoring.
#[derive(Debug, Default)]
struct OrgState {
    /// Purchasing members at the last scoring; `None`: never scored.
    scored_members: Option<i64>,
    /// Purchase and refund events applied since.
    events_since: i64,
    /// When the oldest of those arrived, while the org waits for a scoring.
    waiting_since: Option<Instant>,
}

impl OrgState {
    fn due(&self) -> bool {
        match self.scored_members {
            None => self.events_since > 0,
            Some(members) => self.events_since >= BULK_MIN_EVENTS.max(members / 10),
        }
    }
}

/// Recomputes RFM scores of the read models in `schema` as the module documentation says,
/// until `shutdown`.
pub async fn run(
    pool: PgPool,
    schema: String,
    interval_secs: u64,
    eager: bool,
    trigger: RfmTrigger,
    shutdown: CancellationToken,
) {
    let period = (interval_secs > 0).then(|| Duration::from_secs(interval_secs));
    let mut ticks = period.map(|period| {
        let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks
    });
    let mut orgs: HashMap<String, OrgState> = HashMap::new();
    if eager {
        recompute_all(&pool, &schema, &mut orgs, "start-up").await;
    }
    let mut last_batch = Instant::now();
    loop {
        let waiting = orgs.values().filter_map(|org| org.waiting_since).min();
        let wake = waiting.map(|oldest| (last_batch + QUIET).min(oldest + MAX_WAIT));
        let tick = async {
            match ticks.as_mut() {
                Some(ticks) => {
                    ticks.tick().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tick => {
                recompute_all(&pool, &schema, &mut orgs, "schedule").await;
            }
            () = trigger.notify.notified(), if eager => {
                last_batch = Instant::now();
                for (org, n) in trigger.take() {
                    let state = orgs.entry(org).or_default();
                    state.events_since += n;
                    if state.due() && state.waiting_since.is_none() {
                        state.waiting_since = Some(last_batch);
                    }
                }
            }
            () = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                let due: Vec<String> = orgs
                    .iter()
                    .filter(|(_, state)| state.waiting_since.is_some())
                    .map(|(org, _)| org.clone())
                    .collect();
                for org in due {
                    recompute(&pool, &schema, &org, &mut orgs).await;
                }
            }
        }
    }
}

async fn recompute(pool: &PgPool, schema: &str, org: &str, orgs: &mut HashMap<String, OrgState>) {
    match rfm::recompute(pool, schema, org, Utc::now()).await {
        Ok(summary) => {
            metrics::counter!("projector_rfm_eager_recomputations_total").increment(1);
            orgs.insert(
                org.to_owned(),
                OrgState {
                    scored_members: Some(summary.members),
                    ..OrgState::default()
                },
            );
        }
        Err(error) => {
            tracing::error!(org, error = format!("{error:#}"), "RFM recomputation failed");
            // Tried again at the next batch of the org or the next scheduled run.
            if let Some(state) = orgs.get_mut(org) {
                state.waiting_since = None;
            }
        }
    }
}

async fn recompute_all(pool: &PgPool, schema: &str, orgs: &mut HashMap<String, OrgState>, why: &str) {
    let summaries = rfm::recompute_all(pool, schema, Utc::now())
        .await
        .with_context(|| format!("{why} RFM recomputation"));
    match summaries {
        Ok(summaries) => {
            for summary in summaries {
                orgs.insert(
                    summary.org_id,
                    OrgState {
                        scored_members: Some(summary.members),
                        ..OrgState::default()
                    },
                );
            }
        }
        Err(error) => tracing::error!(error = format!("{error:#}"), "RFM recomputation failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_org_is_due_when_new_or_bulk_loaded() {
        let state = |scored_members, events_since| OrgState {
            scored_members,
            events_since,
            waiting_since: None,
        };
        assert!(state(None, 1).due(), "never scored, has purchases");
        assert!(!state(None, 0).due());
        assert!(!state(Some(10), 99).due(), "a trickle of live purchases");
        assert!(state(Some(10), 100).due(), "a bulk load");
        assert!(!state(Some(5_000), 499).due(), "a tenth of a large org");
        assert!(state(Some(5_000), 500).due());
    }

    #[test]
    fn the_trigger_adds_up_what_batches_applied() {
        let trigger = RfmTrigger::default();
        trigger.changed(&BTreeMap::from([("acme".to_owned(), 2)]));
        trigger.changed(&BTreeMap::from([
            ("acme".to_owned(), 3),
            ("globex".to_owned(), 1),
        ]));
        trigger.changed(&BTreeMap::new());
        assert_eq!(
            trigger.take(),
            BTreeMap::from([("acme".to_owned(), 5), ("globex".to_owned(), 1)])
        );
        assert!(trigger.take().is_empty());
    }
}
