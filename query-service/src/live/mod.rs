//! Live member updates for GraphQL subscriptions, fed from JetStream (not by polling Postgres).
//!
//! One ordered (ephemeral, ack-less) consumer per service instance reads every member event
//! under `<prefix>.*.member` and hands each one to the subscribers of that member only: a
//! registry maps `(org, member)` to a broadcast channel, so an event costs one map lookup however
//! many members are being watched.
//!
//! Where the consumer starts: the stream's position is taken when the service starts, before it
//! accepts connections, so every event committed after the service is up reaches its
//! subscribers — also when the stream does not exist yet (the relay creates it) or the consumer
//! has to be recreated (it resumes after the last stream sequence it saw).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use domain::codec::Decoded;
use domain::ids::MemberKey;
use domain::wire::StoredEvent;
use domain::MemberEvent;
use tokio::sync::broadcast;

mod consumer;

pub use consumer::start;

/// Events a slow subscriber may fall behind before it skips to the newest (each update carries
/// the member's whole state, so skipping loses nothing).
const SUBSCRIBER_BUFFER: usize = 64;

/// A member event as it arrived on the stream.
#[derive(Debug, Clone)]
pub struct LiveEvent {
    pub sequence: i64,
    pub committed_at: DateTime<Utc>,
    pub event: MemberEvent,
}

type Registry = HashMap<MemberKey, broadcast::Sender<Arc<LiveEvent>>>;

/// The subscriber registry and the consumer feeding it.
#[derive(Default)]
pub struct LiveFeed {
    subscribers: Mutex<Registry>,
}

/// One subscriber's receiving end; unregisters itself when dropped.
pub struct LiveSubscription {
    receiver: broadcast::Receiver<Arc<LiveEvent>>,
    key: MemberKey,
    feed: Arc<LiveFeed>,
}

impl LiveSubscription {
    /// The next event of the member; `None` when the feed shuts down.
    pub async fn next(&mut self) -> Option<Arc<LiveEvent>> {
        loop {
            match self.receiver.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::debug!(skipped, member = %self.key.member_id, "slow subscriber skipped events");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

impl Drop for LiveSubscription {
    fn drop(&mut self) {
        let mut subscribers = self.feed.lock();
        // This receiver still counts: it is the last one when the count is 1.
        if subscribers
            .get(&self.key)
            .is_some_and(|sender| sender.receiver_count() <= 1)
        {
            subscribers.remove(&self.key);
        }
        metrics::gauge!("graphql_subscriptions_active").decrement(1.0);
    }
}

impl LiveFeed {
    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        // The registry stays consistent even if a holder panicked: every operation on it is a
        // single insert, lookup or remove.
        self.subscribers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts receiving the events of `key`. Register before reading any current state, so that
    /// nothing committed in between is missed.
    pub fn subscribe(self: &Arc<Self>, key: MemberKey) -> LiveSubscription {
        let receiver = self
            .lock()
            .entry(key.clone())
            .or_insert_with(|| broadcast::channel(SUBSCRIBER_BUFFER).0)
            .subscribe();
        metrics::gauge!("graphql_subscriptions_active").increment(1.0);
        LiveSubscription {
            receiver,
            key,
            feed: Arc::clone(self),
        }
    }

    /// Hands an event to the subscribers of its member, if any.
    fn dispatch(&self, key: &MemberKey, event: LiveEvent) {
        let mut subscribers = self.lock();
        if let Some(sender) = subscribers.get(key) {
            if sender.send(Arc::new(event)).is_err() {
                subscribers.remove(key);
            }
        }
    }

    /// Ends every subscription (their streams complete).
    fn close_all(&self) {
        self.lock().clear();
    }

    /// Number of members with at least one subscriber.
    pub fn watched_members(&self) -> usize {
        self.lock().len()
    }

    /// Decodes a stream message and dispatches it. Anything that is not a member event this
    /// code reads ([`domain::codec`]: known type, current version) is skipped (and logged): a
    /// subscriber must never see a half-understood event.
    fn handle(&self, payload: &[u8]) {
        let stored: StoredEvent = match serde_json::from_slice(payload) {
            Ok(stored) => stored,
            Err(error) => {
                tracing::warn!(%error, "live feed: undecodable message skipped");
                return;
            }
        };
        let (key, event) = match domain::codec::decode(&stored) {
            Ok(Decoded::Member(key, event)) => (key, event),
            Ok(Decoded::Program(..) | Decoded::Other) => return,
            Err(error) => {
                tracing::warn!(
                    %error,
                    event_type = stored.event_type,
                    event_version = stored.event_version,
                    "live feed: member event of an unknown shape skipped"
                );
                return;
            }
        };
        metrics::counter!("query_live_events_total").increment(1);
        self.dispatch(
            &key,
            LiveEvent {
                sequence: stored.sequence,
                committed_at: stored.committed_at,
                event,
            },
        );
    }
}
