//! Member cards served from memory: the answers to queries that read one member (a storefront
//! widget polling its shopper's card), kept per member and dropped the moment the projector
//! commits a change to that member.
//!
//! A card costs a round trip to Postgres that reads about twenty relations, and the work of
//! resolving and serialising it; a widget asks for the same card again and again, and it
//! rarely changed in between. What is cached is the serialised answer, keyed by everything
//! that decides it: the caller (key, or key and customer), the query text, the operation name
//! and the variables. Authentication still runs on every request, before the cache, so a
//! revoked key or an expired token is refused as before.
//!
//! What may be cached is decided by the answer, not guessed from the request: an operation
//! whose top-level fields are only `member` / `me` (and `program`, which the widget asks for
//! beside `me`), that answered without errors and read exactly one member ([`MemberReads`], noted by those fields). Which member a request reads is
//! learned from its first answer ([`State::routes`]); from then on a miss knows its member
//! before it runs, which is what makes a stale fill impossible: it takes a [`Ticket`] that
//! notes the member's slot and the cache's epoch, and its answer is kept only if no
//! invalidation reached that member (or the whole cache) since.
//!
//! Freshness, as a shopper sees it:
//! - the member's own read models (balance, tier, stamp cards, history, RFM from its
//!   purchases): as fresh as without the cache. The projector announces the members of each
//!   batch when it commits (`common::projected`); their cards are dropped on delivery.
//! - what depends on other members, on the org or on the clock (leaderboard ranks, budgets
//!   left, the program's rewards and promotions, the nightly RFM rescoring, period rollovers):
//!   at most `max_age` old.
//! - while the listening connection is down nothing is served from the cache or stored, and
//!   the cache is emptied when it is back.
//!
//! Metrics: `graphql_card_cache_total{outcome="hit"|"miss"|"stored"}` (a miss: a card answered
//! from the read models),
//! `graphql_card_cache_invalidations_total`.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_graphql::Context;
use axum::body::Bytes;
use axum::http::HeaderMap;
use domain::ids::MemberKey;
use lru::LruCache;
use sqlx::PgPool;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::auth::Caller;

/// Most answers kept per member (one per caller and query it was asked by).
const ANSWERS_PER_MEMBER: usize = 8;

/// The top-level fields a cacheable operation may have: `member` and `me` read one member
/// (and note it), `program` the org's program (as the widget asks for them together).
const CARD_FIELDS: [&str; 3] = ["member", "me", "program"];

/// The cache; cheap to clone. [`CardCache::off`] caches nothing.
#[derive(Clone)]
pub struct CardCache {
    inner: Option<Arc<Inner>>,
    _stop_listener: Option<Arc<DropGuard>>,
}

struct Inner {
    state: Mutex<State>,
    /// Whether the projector's notifications are being received.
    listening: AtomicBool,
    max_age: Duration,
}

struct State {
    /// Which member a request reads, learned from its answers.
    routes: LruCache<RequestKey, MemberKey>,
    cards: LruCache<MemberKey, Slot>,
    /// Bumped by every invalidation.
    epoch: u64,
}

/// The answers kept for one member.
struct Slot {
    /// The epoch of the last invalidation of this member (or of the slot's creation): answers
    /// computed under an older ticket may be stale.
    since: u64,
    answers: Vec<(RequestKey, Answer)>,
}

/// Everything that decides an answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestKey {
    caller: String,
    query: String,
    operation: Option<String>,
    variables: String,
}

/// A serialised answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub body: Bytes,
    pub headers: HeaderMap,
    filled: Instant,
}

impl Answer {
    pub fn new(body: Bytes, headers: HeaderMap) -> Self {
        Answer {
            body,
            headers,
            filled: Instant::now(),
        }
    }
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    Hit(Answer),
    /// Not cached; the ticket lets the answer be stored.
    Miss(Ticket),
}

/// A miss's right to store its answer, if nothing changed meanwhile.
#[derive(Debug)]
pub struct Ticket {
    key: RequestKey,
    /// The member the request read last time, if known.
    member: Option<MemberKey>,
    epoch: u64,
}

impl CardCache {
    /// A cache of the cards of up to `members` members, kept fresh by the projector's
    /// notifications read through `pool`; `members == 0` caches nothing. Must run inside a
    /// Tokio runtime.
    pub fn new(pool: PgPool, members: usize, max_age: Duration) -> Self {
        let Some(capacity) = NonZeroUsize::new(members) else {
            return Self::off();
        };
        let routes = capacity.saturating_mul(NonZeroUsize::new(2).expect("2 is not zero"));
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                routes: LruCache::new(routes),
                cards: LruCache::new(capacity),
                epoch: 0,
            }),
            listening: AtomicBool::new(false),
            max_age,
        });
        let stop = CancellationToken::new();
        tokio::spawn(common::notify::listen(
            pool,
            common::projected::MEMBERS_CHANNEL,
            Arc::downgrade(&inner),
            stop.clone(),
        ));
        CardCache {
            inner: Some(inner),
            _stop_listener: Some(Arc::new(stop.drop_guard())),
        }
    }

    /// A cache that caches nothing.
    pub fn off() -> Self {
        CardCache {
            inner: None,
            _stop_listener: None,
        }
    }

    /// The key of a request, if its answer may come from the cache at all: the cache is on
    /// and listening, and the caller is known.
    pub fn key(&self, caller: &Caller, request: &async_graphql::Request) -> Option<RequestKey> {
        let inner = self.inner.as_ref()?;
        if !inner.listening.load(Ordering::Acquire) {
            return None;
        }
        let caller = match caller {
            Caller::Anonymous => return None,
            Caller::Key(key) => format!("key {}", key.key_id),
            Caller::Publishable(key) => format!("publishable {}", key.key_id),
            Caller::Customer { key, customer, .. } => {
                format!("customer {} {} {}", key.key_id, customer.org_id, customer.subject)
            }
        };
        Some(RequestKey {
            caller,
            query: request.query.clone(),
            operation: request.operation_name.clone(),
            variables: serde_json::to_string(&request.variables).ok()?,
        })
    }

    /// The cached answer to `key`, or a ticket to store it.
    pub fn lookup(&self, key: RequestKey) -> Lookup {
        let Some(inner) = &self.inner else {
            return Lookup::Miss(Ticket {
                key,
                member: None,
                epoch: 0,
            });
        };
        let lookup = inner.lookup(key);
        if matches!(lookup, Lookup::Hit(_)) {
            metrics::counter!("graphql_card_cache_total", "outcome" => "hit").increment(1);
        }
        lookup
    }

    /// Keeps `answer` for the ticket's request if it read exactly the member `read` and
    /// nothing invalidated that member since the ticket was taken. The first answer of a
    /// request only teaches the cache which member it reads.
    pub fn store(&self, ticket: Ticket, read: Option<MemberKey>, answer: Answer) {
        let (Some(inner), Some(read)) = (&self.inner, read) else {
            return;
        };
        // Counted here, not at the lookup: only now is it known that the request was a card.
        metrics::counter!("graphql_card_cache_total", "outcome" => "miss").increment(1);
        if inner.store(ticket, read, answer) {
            metrics::counter!("graphql_card_cache_total", "outcome" => "stored").increment(1);
        }
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lookup(&self, key: RequestKey) -> Lookup {
        let mut state = self.state();
        let epoch = state.epoch;
        let Some(member) = state.routes.get(&key).cloned() else {
            return Lookup::Miss(Ticket {
                key,
                member: None,
                epoch,
            });
        };
        // A slot exists from the ticket on, so that an invalidation meanwhile is noted in it.
        let slot = state.cards.get_or_insert_mut(member.clone(), || Slot {
            since: epoch,
            answers: Vec::new(),
        });
        if let Some(at) = slot.answers.iter().position(|(cached, _)| *cached == key) {
            if slot.answers[at].1.filled.elapsed() < self.max_age {
                return Lookup::Hit(slot.answers[at].1.clone());
            }
            slot.answers.swap_remove(at);
        }
        Lookup::Miss(Ticket {
            key,
            member: Some(member),
            epoch,
        })
    }

    fn store(&self, ticket: Ticket, read: MemberKey, answer: Answer) -> bool {
        let mut state = self.state();
        let Some(member) = ticket.member else {
            state.routes.put(ticket.key, read);
            return false;
        };
        if member != read {
            // The same request read another member this time (a customer whose name was
            // learned meanwhile, say): learn the new route, keep nothing.
            state.routes.put(ticket.key, read);
            return false;
        }
        let Some(slot) = state.cards.get_mut(&member) else {
            return false;
        };
        if slot.since > ticket.epoch {
            return false;
        }
        slot.answers.retain(|(cached, _)| *cached != ticket.key);
        if slot.answers.len() == ANSWERS_PER_MEMBER {
            slot.answers.remove(0);
        }
        slot.answers.push((ticket.key, answer));
        true
    }

    fn invalidate(&self, members: impl Iterator<Item = MemberKey>) {
        let mut state = self.state();
        state.epoch += 1;
        let epoch = state.epoch;
        for member in members {
            if let Some(slot) = state.cards.peek_mut(&member) {
                slot.since = epoch;
                slot.answers.clear();
                metrics::counter!("graphql_card_cache_invalidations_total").increment(1);
            }
        }
    }

    fn clear(&self) {
        let mut state = self.state();
        state.epoch += 1;
        state.cards.clear();
    }
}

impl common::notify::Subscriber for Inner {
    fn changed(&self, payload: Option<&str>) {
        match payload {
            Some(payload) => self.invalidate(common::projected::members(payload)),
            None => self.clear(),
        }
    }

    fn listening(&self, on: bool) {
        self.listening.store(on, Ordering::Release);
    }
}

/// The members a request's `member` / `me` fields answered with; put in each request's data.
#[derive(Default)]
pub struct MemberReads(Mutex<Vec<MemberKey>>);

impl MemberReads {
    /// Notes that `member` was answered (called by the fields of [`CARD_FIELDS`]).
    pub fn note(ctx: &Context<'_>, member: MemberKey) {
        if let Some(reads) = ctx.data_opt::<Arc<MemberReads>>() {
            reads
                .0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(member);
        }
    }

    /// The one member read, if exactly one was.
    pub fn only(&self) -> Option<MemberKey> {
        let reads = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let first = reads.first()?;
        reads.iter().all(|read| read == first).then(|| first.clone())
    }
}

/// Whether `request` runs a query whose top-level fields are only [`CARD_FIELDS`] (no
/// fragments or directives there): what may be cached.
pub fn is_card_query(request: &mut async_graphql::Request) -> bool {
    crate::graphql::query_selects_only(request, |field| CARD_FIELDS.contains(&field))
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn cache(max_age: Duration) -> Inner {
        Inner {
            state: Mutex::new(State {
                routes: LruCache::new(NonZeroUsize::new(8).unwrap()),
                cards: LruCache::new(NonZeroUsize::new(4).unwrap()),
                epoch: 0,
            }),
            listening: AtomicBool::new(true),
            max_age,
        }
    }

    fn key(caller: &str) -> RequestKey {
        RequestKey {
            caller: caller.to_owned(),
            query: "{ member(orgId: \"acme\") { memberId } }".to_owned(),
            operation: None,
            variables: "{}".to_owned(),
        }
    }

    fn answer(body: &'static str) -> Answer {
        Answer::new(Bytes::from_static(body.as_bytes()), HeaderMap::new())
    }

    fn miss(lookup: Lookup) -> Ticket {
        match lookup {
            Lookup::Miss(ticket) => ticket,
            Lookup::Hit(answer) => panic!("expected a miss, got {answer:?}"),
        }
    }

    fn hit(lookup: Lookup) -> String {
        match lookup {
            Lookup::Hit(answer) => String::from_utf8(answer.body.to_vec()).unwrap(),
            Lookup::Miss(ticket) => panic!("expected a hit, got {ticket:?}"),
        }
    }

    /// Given a request answered twice (learn its member, then store), returns the member.
    fn cached(cache: &Inner, key: &RequestKey, body: &'static str) -> MemberKey {
        let member = MemberKey::new("acme", Uuid::new_v4());
        assert!(!cache.store(miss(cache.lookup(key.clone())), member.clone(), answer(body)));
        assert!(cache.store(miss(cache.lookup(key.clone())), member.clone(), answer(body)));
        member
    }

    #[test]
    fn a_card_is_served_from_the_second_answer_on_and_only_to_the_same_caller() {
        let cache = cache(Duration::from_secs(60));
        let alice = key("customer k acme alice");
        cached(&cache, &alice, "alice's card");
        assert_eq!(hit(cache.lookup(alice.clone())), "alice's card");
        assert_eq!(miss(cache.lookup(key("customer k acme mallory"))).member, None);
    }

    #[test]
    fn a_projected_change_drops_the_members_cards_and_no_one_elses() {
        let cache = cache(Duration::from_secs(60));
        let (first, second) = (key("key 1"), key("key 2"));
        let changed = cached(&cache, &first, "old");
        cached(&cache, &second, "other member");
        cache.invalidate([changed].into_iter());
        assert!(miss(cache.lookup(first)).member.is_some());
        assert_eq!(hit(cache.lookup(second)), "other member");
    }

    #[test]
    fn an_answer_computed_before_an_invalidation_is_not_kept() {
        let cache = cache(Duration::from_secs(60));
        let request = key("key 1");
        let member = cached(&cache, &request, "old");
        cache.invalidate([member.clone()].into_iter());
        // A miss reads the database, the projector commits and announces, then the miss ends.
        let ticket = miss(cache.lookup(request.clone()));
        cache.invalidate([member.clone()].into_iter());
        assert!(!cache.store(ticket, member.clone(), answer("read before the change")));
        assert!(cache.store(miss(cache.lookup(request.clone())), member, answer("new")));
        assert_eq!(hit(cache.lookup(request)), "new");
    }

    #[test]
    fn a_lost_subscription_empties_the_cache_and_outdates_every_ticket() {
        let cache = cache(Duration::from_secs(60));
        let request = key("key 1");
        let member = cached(&cache, &request, "old");
        cache.invalidate([member.clone()].into_iter());
        let ticket = miss(cache.lookup(request.clone()));
        common::notify::Subscriber::changed(&cache, None);
        assert!(!cache.store(ticket, member, answer("maybe stale")));
        assert!(miss(cache.lookup(request)).member.is_some());
    }

    #[test]
    fn answers_older_than_the_max_age_are_not_served() {
        let cache = cache(Duration::ZERO);
        let request = key("key 1");
        cached(&cache, &request, "old");
        assert!(miss(cache.lookup(request)).member.is_some());
    }

    #[test]
    fn a_notification_names_the_members_it_drops() {
        let cache = cache(Duration::from_secs(60));
        let request = key("key 1");
        let member = cached(&cache, &request, "old");
        let payloads = common::projected::payloads([&MemberKey::new("acme", Uuid::new_v4()), &member]);
        common::notify::Subscriber::changed(&cache, Some(&payloads[0]));
        assert!(miss(cache.lookup(request)).member.is_some());
    }

    #[test]
    fn only_queries_of_a_member_and_its_program_may_be_cached() {
        let card = |query: &str, operation: Option<&str>| {
            let mut request = async_graphql::Request::new(query);
            request.operation_name = operation.map(str::to_owned);
            is_card_query(&mut request)
        };
        let cacheable = [
            "{ member(orgId: \"a\", memberId: \"m\") { balance { points } } }",
            "query Card { me(orgId: \"a\") { memberId } }",
            "query Card($id: ID!) { mine: member(orgId: \"a\", memberId: $id) { memberId } }",
            "query LoyaltyWidget($org: ID!) { program(orgId: $org) { currency } member: me(orgId: $org) { memberId } }",
        ];
        for query in cacheable {
            assert!(card(query, None), "{query}");
        }
        let not = [
            "{ member(orgId: \"a\", memberId: \"m\") { memberId } leaderboard(orgId: \"a\") { rank } }",
            "{ members(orgId: \"a\") { nodes { memberId } } }",
            "{ ... on Query { member(orgId: \"a\", memberId: \"m\") { memberId } } }",
            "{ member(orgId: \"a\", memberId: \"m\") @include(if: true) { memberId } }",
            "mutation { redeemReward(orgId: \"a\", rewardId: \"r\") { ok } }",
            "{ member(orgId: ",
        ];
        for query in not {
            assert!(!card(query, None), "{query}");
        }
        let two = "query A { me(orgId: \"a\") { memberId } } query B { members(orgId: \"a\") { nodes { memberId } } }";
        assert!(card(two, Some("A")));
        assert!(!card(two, Some("B")));
        assert!(!card(two, None));
    }
}
