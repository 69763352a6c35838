//! The simulated POS traffic: a weighted mix of enrolments, purchases, refunds, redemptions
//! and retries of a previous request with the same `Idempotency-Key`, driven closed-loop (N
//! terminals, each sending its next request when the previous one is answered) or open-loop (a
//! fixed arrival rate, whatever the latency).
//!
//! Each member is used by one terminal at a time (a customer stands at one till), so the load
//! generator knows every member's balance from the acknowledgements and can check the read
//! models against it afterwards. Open-loop latencies are measured from the request's scheduled
//! start, so a stalled server is not hidden by requests that were sent late (coordinated
//! omission).

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use chrono::Utc;
use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::api::{transport_error_kind, Api, Reply};
use crate::lag::{Ack, LagSender};
use crate::setup::{enrol_body, Org, CURRENCY};
use crate::stats::Recorder;

/// What one simulated request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Enrol,
    Purchase,
    Refund,
    Redeem,
    /// The member's previous request again, same `Idempotency-Key`, same body: the answer must
    /// be the original one.
    Retry,
}

impl OpKind {
    pub const ALL: [OpKind; 5] = [
        OpKind::Enrol,
        OpKind::Purchase,
        OpKind::Refund,
        OpKind::Redeem,
        OpKind::Retry,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            OpKind::Enrol => "enrol",
            OpKind::Purchase => "purchase",
            OpKind::Refund => "refund",
            OpKind::Redeem => "redeem",
            OpKind::Retry => "retry",
        }
    }
}

/// Relative weights of the operations, e.g. `enrol=4,purchase=70,refund=8,redeem=8,retry=10`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    weights: Vec<(OpKind, u32)>,
    total: u32,
}

/// The default mix: mostly purchases, some returns and redemptions, one request in ten a
/// retry (a terminal that timed out and resent), a trickle of new members.
pub const DEFAULT_MIX: &str = "enrol=4,purchase=70,refund=8,redeem=8,retry=10";

impl FromStr for Mix {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let mut weights = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .with_context(|| format!("mix entry `{part}` is not <operation>=<weight>"))?;
            let kind = OpKind::ALL
                .into_iter()
                .find(|k| k.name() == name.trim())
                .with_context(|| {
                    format!("unknown operation `{name}` in the mix: expected enrol, purchase, refund, redeem or retry")
                })?;
            let weight: u32 = weight
                .trim()
                .parse()
                .with_context(|| format!("weight of `{name}` must be a whole number"))?;
            if weights.iter().any(|(k, _)| *k == kind) {
                bail!("operation `{name}` appears twice in the mix");
            }
            weights.push((kind, weight));
        }
        let total = weights
            .iter()
            .try_fold(0u32, |sum, (_, w)| sum.checked_add(*w))
            .context("mix weights are too large")?;
        if total == 0 {
            bail!("the mix `{s}` has no operation with a positive weight");
        }
        Ok(Mix { weights, total })
    }
}

impl Mix {
    pub fn pick(&self, rng: &mut SmallRng) -> OpKind {
        let mut roll = rng.random_range(0..self.total);
        for (kind, weight) in &self.weights {
            if roll < *weight {
                return *kind;
            }
            roll -= weight;
        }
        // Unreachable: roll < total = sum of the weights.
        OpKind::Purchase
    }

    pub fn weight(&self, kind: OpKind) -> u32 {
        self.weights
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, w)| *w)
    }
}

#[derive(Debug, Clone)]
struct PurchaseRec {
    transaction_id: String,
    amount_minor: i64,
    refunded_minor: i64,
}

/// A request as it was sent, with its answer, so that it can be retried.
#[derive(Debug, Clone)]
struct Sent {
    path: String,
    idempotency_key: String,
    body: Value,
    reply: Reply,
}

/// What the load generator knows about one member.
#[derive(Debug)]
pub struct MemberState {
    pub id: Uuid,
    /// The balance of the last acknowledgement.
    pub balance: i64,
    /// Recent purchases that may still be refunded.
    purchases: VecDeque<PurchaseRec>,
    last: Option<Sent>,
}

/// Recent purchases kept per member for refunds.
const REFUNDABLE_KEPT: usize = 16;

impl MemberState {
    pub fn new(id: Uuid) -> Self {
        Self {
            id,
            balance: 0,
            purchases: VecDeque::new(),
            last: None,
        }
    }
}

type SharedMember = Arc<tokio::sync::Mutex<MemberState>>;

/// One org during a run.
pub struct OrgCtx {
    pub org: Org,
    members: Mutex<Vec<SharedMember>>,
    next_member_no: AtomicU64,
}

impl OrgCtx {
    pub fn new(org: Org, members: Vec<Uuid>) -> Self {
        let next = members.len() as u64 + 1;
        Self {
            org,
            members: Mutex::new(
                members
                    .into_iter()
                    .map(|id| Arc::new(tokio::sync::Mutex::new(MemberState::new(id))))
                    .collect(),
            ),
            next_member_no: AtomicU64::new(next),
        }
    }

    fn members(&self) -> std::sync::MutexGuard<'_, Vec<SharedMember>> {
        // A poisoned lock only means another task panicked while pushing; the Vec is intact.
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn member_count(&self) -> usize {
        self.members().len()
    }

    /// A member no other terminal is serving right now (a few random tries).
    fn try_take_member(&self, rng: &mut SmallRng) -> Option<tokio::sync::OwnedMutexGuard<MemberState>> {
        let members = self.members();
        if members.is_empty() {
            return None;
        }
        (0..8).find_map(|_| {
            members[rng.random_range(0..members.len())]
                .clone()
                .try_lock_owned()
                .ok()
        })
    }

    /// `(member id, acknowledged balance)` of every member. Call when no request is in flight.
    pub fn snapshot(&self) -> Vec<(Uuid, i64)> {
        self.members()
            .iter()
            .filter_map(|m| m.try_lock().ok().map(|m| (m.id, m.balance)))
            .collect()
    }
}

/// Bounds of the run.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Requests scheduled before this are warm-up: sent, not measured.
    pub measure_from: Instant,
    /// No request is scheduled at or after this.
    pub end: Instant,
    /// At most this many requests in all (warm-up included).
    pub max_requests: Option<u64>,
}

/// The shared state of a running workload.
pub struct Workload {
    api: Api,
    pub orgs: Vec<OrgCtx>,
    mix: Mix,
    window: Window,
    lag: Option<LagSender>,
    recorder: Mutex<Recorder>,
    started: AtomicU64,
    pub ok: AtomicU64,
    pub errors: AtomicU64,
}

impl Workload {
    pub fn new(api: Api, orgs: Vec<OrgCtx>, mix: Mix, window: Window, lag: Option<LagSender>) -> Self {
        Self {
            api,
            orgs,
            mix,
            window,
            lag,
            recorder: Mutex::new(Recorder::default()),
            started: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    pub fn recorder(&self) -> Recorder {
        self.recorder.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Claims the right to start one more request; false once the request budget is spent.
    fn claim(&self) -> bool {
        let n = self.started.fetch_add(1, Ordering::Relaxed);
        self.window.max_requests.is_none_or(|max| n < max)
    }

    fn record(&self, scheduled: Instant, kind: &'static str, outcome: Result<(), String>) {
        let latency = scheduled.elapsed();
        if scheduled < self.window.measure_from {
            return;
        }
        let mut recorder = self.recorder.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Ok(()) => {
                recorder.ok(kind, latency);
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                recorder.error(kind, error);
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn ack(&self, org: usize, member: Uuid, before: Option<i64>, balance: i64, scheduled: Instant) {
        if let Some(lag) = &self.lag {
            if before != Some(balance) {
                lag.send(Ack {
                    org,
                    member,
                    balance,
                    acked_at: Instant::now(),
                    measured: scheduled >= self.window.measure_from,
                });
            }
        }
    }

    /// One simulated request, scheduled to start at `scheduled`.
    pub async fn step(&self, rng: &mut SmallRng, scheduled: Instant) {
        let kind = self.mix.pick(rng);
        let org = rng.random_range(0..self.orgs.len());
        let (name, outcome) = if kind == OpKind::Enrol {
            ("enrol", self.enrol(org, scheduled).await)
        } else {
            match self.orgs[org].try_take_member(rng) {
                Some(mut member) => self.member_op(kind, org, &mut member, rng, scheduled).await,
                None => (
                    kind.name(),
                    Err("client: no idle member (raise --members)".to_owned()),
                ),
            }
        };
        self.record(scheduled, name, outcome);
    }

    async fn enrol(&self, org: usize, scheduled: Instant) -> Result<(), String> {
        let ctx = &self.orgs[org];
        let n = ctx.next_member_no.fetch_add(1, Ordering::Relaxed);
        let member_id = Uuid::new_v4();
        let reply = self
            .api
            .post(
                &format!("/v1/orgs/{}/members", ctx.org.id),
                &ctx.org.pos_key,
                &Uuid::new_v4().to_string(),
                &enrol_body(member_id, n),
            )
            .await
            .map_err(|e| transport_error_kind(&e))?;
        if !reply.is_success() {
            return Err(reply.error_kind());
        }
        let balance = reply.balance().unwrap_or(0);
        let mut member = MemberState::new(member_id);
        member.balance = balance;
        self.ack(org, member_id, None, balance, scheduled);
        ctx.members().push(Arc::new(tokio::sync::Mutex::new(member)));
        Ok(())
    }

    async fn member_op(
        &self,
        kind: OpKind,
        org: usize,
        member: &mut MemberState,
        rng: &mut SmallRng,
        scheduled: Instant,
    ) -> (&'static str, Result<(), String>) {
        let ctx = &self.orgs[org];
        let base = format!("/v1/orgs/{}/members/{}", ctx.org.id, member.id);

        if kind == OpKind::Retry {
            if let Some(sent) = member.last.clone() {
                return ("retry", self.retry(org, &sent).await);
            }
        }
        if kind == OpKind::Refund {
            let refundable: Vec<usize> = (0..member.purchases.len())
                .filter(|&i| member.purchases[i].refunded_minor < member.purchases[i].amount_minor)
                .collect();
            if !refundable.is_empty() {
                let i = refundable[rng.random_range(0..refundable.len())];
                let purchase = &member.purchases[i];
                let left = purchase.amount_minor - purchase.refunded_minor;
                // Half the returns are of everything left, half partial.
                let amount = if rng.random_bool(0.5) {
                    left
                } else {
                    rng.random_range(1..=left)
                };
                let body = json!({
                    "refund_id": format!("rf-{}", Uuid::new_v4()),
                    "transaction_id": purchase.transaction_id,
                    "amount_minor": amount,
                });
                let outcome = self
                    .write(org, member, format!("{base}/refunds"), body, scheduled)
                    .await;
                if outcome.is_ok() {
                    member.purchases[i].refunded_minor += amount;
                }
                return ("refund", outcome);
            }
        }
        if kind == OpKind::Redeem {
            let affordable = ctx
                .org
                .rewards
                .iter()
                .filter(|(_, cost)| *cost <= member.balance)
                .map(|(id, _)| id.clone())
                .collect::<Vec<_>>();
            if !affordable.is_empty() {
                let reward = &affordable[rng.random_range(0..affordable.len())];
                let body = json!({
                    "redemption_id": format!("rd-{}", Uuid::new_v4()),
                    "reward_id": reward,
                });
                let outcome = self
                    .write(org, member, format!("{base}/redemptions"), body, scheduled)
                    .await;
                return ("redeem", outcome);
            }
        }
        // A purchase, also when the requested operation had nothing to act on.
        let transaction_id = format!("tx-{}", Uuid::new_v4());
        let amount_minor = purchase_amount(rng);
        let body = json!({
            "transaction_id": transaction_id,
            "location_id": ctx.org.locations[rng.random_range(0..ctx.org.locations.len())],
            "amount_minor": amount_minor,
            "currency": CURRENCY,
            "occurred_at": occurred_at(rng),
        });
        let outcome = self
            .write(org, member, format!("{base}/purchases"), body, scheduled)
            .await;
        if outcome.is_ok() {
            if member.purchases.len() == REFUNDABLE_KEPT {
                member.purchases.pop_front();
            }
            member.purchases.push_back(PurchaseRec {
                transaction_id,
                amount_minor,
                refunded_minor: 0,
            });
        }
        ("purchase", outcome)
    }

    async fn write(
        &self,
        org: usize,
        member: &mut MemberState,
        path: String,
        body: Value,
        scheduled: Instant,
    ) -> Result<(), String> {
        let idempotency_key = Uuid::new_v4().to_string();
        let reply = self
            .api
            .post(&path, &self.orgs[org].org.pos_key, &idempotency_key, &body)
            .await
            .map_err(|e| transport_error_kind(&e))?;
        if !reply.is_success() {
            return Err(reply.error_kind());
        }
        let balance = reply
            .balance()
            .ok_or_else(|| "contract: success without a numeric balance".to_owned())?;
        self.ack(org, member.id, Some(member.balance), balance, scheduled);
        member.balance = balance;
        member.last = Some(Sent {
            path,
            idempotency_key,
            body,
            reply,
        });
        Ok(())
    }

    async fn retry(&self, org: usize, sent: &Sent) -> Result<(), String> {
        let reply = self
            .api
            .post(
                &sent.path,
                &self.orgs[org].org.pos_key,
                &sent.idempotency_key,
                &sent.body,
            )
            .await
            .map_err(|e| transport_error_kind(&e))?;
        if reply != sent.reply {
            return Err(format!(
                "idempotency: replay answered {} instead of the original {}",
                reply.status, sent.reply.status
            ));
        }
        Ok(())
    }
}

/// Receipt totals in cents: mostly small baskets, some large ones.
pub(crate) fn purchase_amount(rng: &mut SmallRng) -> i64 {
    match rng.random_range(0..100) {
        0..70 => rng.random_range(150..=3_000),
        70..95 => rng.random_range(3_000..=12_000),
        _ => rng.random_range(12_000..=60_000),
    }
}

/// When the receipt was printed: usually seconds ago, sometimes hours ago (a terminal that was
/// offline and is syncing its queue).
fn occurred_at(rng: &mut SmallRng) -> String {
    let seconds_ago = if rng.random_bool(0.02) {
        rng.random_range(3_600..=6 * 3_600)
    } else {
        rng.random_range(0..=90)
    };
    (Utc::now() - chrono::Duration::seconds(seconds_ago)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Runs `concurrency` terminals, each sending its next request when the previous one is
/// answered, until the window ends.
pub async fn closed_loop(workload: Arc<Workload>, concurrency: usize, seed: u64) {
    let workers: Vec<_> = (0..concurrency)
        .map(|i| {
            let workload = workload.clone();
            tokio::spawn(async move {
                let mut rng = SmallRng::seed_from_u64(seed.wrapping_add(i as u64));
                while Instant::now() < workload.window.end && workload.claim() {
                    workload.step(&mut rng, Instant::now()).await;
                }
            })
        })
        .collect();
    for worker in workers {
        // A panicking worker is a bug in the load generator: surface it.
        if let Err(error) = worker.await {
            std::panic::resume_unwind(error.into_panic());
        }
    }
}

/// Starts `rate` requests per second on schedule, whatever the latency, with at most
/// `max_in_flight` outstanding (requests beyond that are counted as client errors, not sent).
pub async fn open_loop(workload: Arc<Workload>, rate: u64, max_in_flight: usize, seed: u64) {
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let mut rng = SmallRng::seed_from_u64(seed);
    let start = Instant::now();
    for i in 0u64.. {
        let nanos = u64::try_from(u128::from(i) * 1_000_000_000 / u128::from(rate)).unwrap_or(u64::MAX);
        let at = start + Duration::from_nanos(nanos);
        if at >= workload.window.end || !workload.claim() {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let workload = workload.clone();
                let mut task_rng = SmallRng::seed_from_u64(rng.random());
                tokio::spawn(async move {
                    workload.step(&mut task_rng, at).await;
                    drop(permit);
                });
            }
            Err(_) => workload.record(
                at,
                "any",
                Err(format!(
                    "client: {max_in_flight} requests in flight, request not sent"
                )),
            ),
        }
    }
    // Every permit back means every request has been answered.
    let all = u32::try_from(max_in_flight).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_parse_and_pick_by_weight() {
        let mix: Mix = DEFAULT_MIX.parse().unwrap();
        assert_eq!(mix.weight(OpKind::Purchase), 70);
        assert_eq!(mix.weight(OpKind::Retry), 10);
        let only: Mix = "purchase=1".parse().unwrap();
        let mut rng = SmallRng::seed_from_u64(7);
        assert!((0..1000).all(|_| only.pick(&mut rng) == OpKind::Purchase));

        let mut counts = [0u32; 5];
        for _ in 0..100_000 {
            let kind = mix.pick(&mut rng);
            counts[OpKind::ALL.iter().position(|k| *k == kind).unwrap()] += 1;
        }
        // Purchases are 70% of the mix: 70_000 ± 1%.
        assert!((69_000..71_000).contains(&counts[1]), "{counts:?}");
    }

    #[test]
    fn bad_mixes_are_refused_with_the_reason() {
        let error = |s: &str| s.parse::<Mix>().unwrap_err().to_string();
        assert!(error("purchase=1,dance=2").contains("unknown operation `dance`"));
        assert!(error("purchase").contains("not <operation>=<weight>"));
        assert!(error("purchase=x").contains("whole number"));
        assert!(error("purchase=0").contains("no operation with a positive weight"));
        assert!(error("purchase=1,purchase=2").contains("twice"));
    }

    #[test]
    fn generated_purchases_are_plausible() {
        let mut rng = SmallRng::seed_from_u64(1);
        for _ in 0..10_000 {
            let amount = purchase_amount(&mut rng);
            assert!((150..=60_000).contains(&amount));
        }
        let at: chrono::DateTime<Utc> = occurred_at(&mut rng).parse().unwrap();
        assert!(at <= Utc::now());
        assert!(at > Utc::now() - chrono::Duration::hours(7));
    }
}
