//! The simulated POS traffic: one request at a time, picked from the [`Mix`] (enrolments,
//! purchases, refunds, redemptions, and retries of a previous request with the same
//! `Idempotency-Key`), and what the load generator learns from each answer ([`crate::state`]):
//! every member's balance from the acknowledgements, to check the read models against
//! afterwards. [`crate::drive`] schedules the requests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, SubsecRound as _, Utc};
use loyalty_client::{Purchase, Redemption, Refund};
use rand::rngs::SmallRng;
use rand::Rng as _;
use uuid::Uuid;

use crate::api::Api;
use crate::lag::{Ack, LagSender};
use crate::mix::{Mix, OpKind};
use crate::promotions::basket;
use crate::setup::{enrolment, CURRENCY};
use crate::state::{MemberState, OrgCtx, PurchaseRec, Sent, Write, REFUNDABLE_KEPT};
use crate::stats::{is_shed, Recorder};

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
    pub(crate) window: Window,
    lag: Option<LagSender>,
    /// Purchases carry basket lines ([`crate::promotions::basket`]).
    baskets: bool,
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
            baskets: false,
            recorder: Mutex::new(Recorder::default()),
            started: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    /// Purchases with basket lines (`true`) or without (the default).
    pub fn with_baskets(self, baskets: bool) -> Self {
        Self { baskets, ..self }
    }

    pub fn recorder(&self) -> Recorder {
        self.recorder.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Claims the right to start one more request; false once the request budget is spent.
    pub(crate) fn claim(&self) -> bool {
        let n = self.started.fetch_add(1, Ordering::Relaxed);
        self.window.max_requests.is_none_or(|max| n < max)
    }

    pub(crate) fn record(&self, scheduled: Instant, kind: &'static str, outcome: Result<(), String>) {
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
                recorder.failed(kind, error, latency);
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

    /// One simulated request, scheduled to start at `scheduled`. Returns whether the platform
    /// shed it (503 `overloaded`, 429 `rate_limited`).
    pub async fn step(&self, rng: &mut SmallRng, scheduled: Instant) -> bool {
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
        let shed = outcome.as_ref().is_err_and(|error| crate::stats::is_shed(error));
        self.record(scheduled, name, outcome);
        shed
    }

    async fn enrol(&self, org: usize, scheduled: Instant) -> Result<(), String> {
        let ctx = &self.orgs[org];
        let n = ctx.next_member_no.fetch_add(1, Ordering::Relaxed);
        let member_id = Uuid::new_v4();
        let answer = self
            .api
            .commands(&ctx.org.pos_key)
            .enroll(&ctx.org.id, &Uuid::new_v4().to_string(), &enrolment(member_id, n))
            .await
            .map_err(|e| e.kind())?;
        let balance = answer.balance;
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

        if kind == OpKind::Retry {
            if let Some(sent) = member.last.clone() {
                return ("retry", self.retry(org, member.id, &sent).await);
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
                let refund = Refund {
                    refund_id: format!("rf-{}", Uuid::new_v4()),
                    transaction_id: purchase.transaction_id.clone(),
                    amount_minor: amount,
                };
                let outcome = self.write(org, member, Write::Refund(refund), scheduled).await;
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
                let redemption = Redemption {
                    redemption_id: format!("rd-{}", Uuid::new_v4()),
                    reward_id: reward.clone(),
                };
                let outcome = self
                    .write(org, member, Write::Redemption(redemption), scheduled)
                    .await;
                return ("redeem", outcome);
            }
        }
        // A purchase, also when the requested operation had nothing to act on.
        let transaction_id = format!("tx-{}", Uuid::new_v4());
        let amount_minor = purchase_amount(rng);
        let purchase = Purchase {
            transaction_id: transaction_id.clone(),
            location_id: ctx.org.locations[rng.random_range(0..ctx.org.locations.len())].clone(),
            amount_minor,
            currency: CURRENCY.to_owned(),
            occurred_at: occurred_at(rng),
            items: self.baskets.then(|| basket(rng, amount_minor)),
        };
        let outcome = self
            .write(org, member, Write::Purchase(purchase), scheduled)
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
        write: Write,
        scheduled: Instant,
    ) -> Result<(), String> {
        let ctx = &self.orgs[org];
        let idempotency_key = Uuid::new_v4().to_string();
        let answer = write
            .send(
                &self.api.commands(&ctx.org.pos_key),
                &ctx.org.id,
                member.id,
                &idempotency_key,
            )
            .await
            .map_err(|e| e.kind())?;
        self.ack(org, member.id, Some(member.balance), answer.balance, scheduled);
        member.balance = answer.balance;
        member.last = Some(Sent {
            write,
            idempotency_key,
            answer,
        });
        Ok(())
    }

    async fn retry(&self, org: usize, member: Uuid, sent: &Sent) -> Result<(), String> {
        let ctx = &self.orgs[org];
        let replay = sent
            .write
            .send(
                &self.api.commands(&ctx.org.pos_key),
                &ctx.org.id,
                member,
                &sent.idempotency_key,
            )
            .await;
        match replay {
            Ok(answer) if answer == sent.answer => Ok(()),
            Ok(_) => Err("idempotency: the replay answered another body than the original".to_owned()),
            Err(error @ loyalty_client::Error::Transport(_)) => Err(error.kind()),
            Err(error) => Err(replay_refused(error.kind())),
        }
    }
}

/// How a replay answered with an error counts: shed (the platform refused the load and said
/// when to come back, which is not a wrong answer), or a broken idempotency promise.
fn replay_refused(kind: String) -> String {
    if is_shed(&kind) {
        kind
    } else {
        format!("idempotency: replay answered {kind} instead of the original 200")
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
fn occurred_at(rng: &mut SmallRng) -> DateTime<Utc> {
    let seconds_ago = if rng.random_bool(0.02) {
        rng.random_range(3_600..=6 * 3_600)
    } else {
        rng.random_range(0..=90)
    };
    (Utc::now() - chrono::Duration::seconds(seconds_ago)).trunc_subsecs(3)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng as _;

    use super::*;

    #[test]
    fn generated_purchases_are_plausible() {
        let mut rng = SmallRng::seed_from_u64(1);
        for _ in 0..10_000 {
            let amount = purchase_amount(&mut rng);
            assert!((150..=60_000).contains(&amount));
        }
        let at: chrono::DateTime<Utc> = occurred_at(&mut rng);
        assert!(at <= Utc::now());
        assert!(at > Utc::now() - chrono::Duration::hours(7));
    }

    #[test]
    fn a_shed_replay_counts_as_shed_and_any_other_refusal_as_broken_idempotency() {
        let shed = replay_refused("HTTP 503 overloaded".to_owned());
        assert!(is_shed(&shed), "{shed}");
        let wrong = replay_refused("HTTP 409 idempotency_key_reused".to_owned());
        assert!(!is_shed(&wrong), "{wrong}");
        assert!(
            wrong.starts_with("idempotency: replay answered HTTP 409"),
            "{wrong}"
        );
    }
}
