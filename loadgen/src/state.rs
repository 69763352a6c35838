//! What the load generator knows during a run, from the acknowledgements: per org its members,
//! per member the acknowledged balance, the purchases that may still be refunded and the last
//! write (for a retry with the same `Idempotency-Key`).
//!
//! Each member is used by one terminal at a time (a customer stands at one till): a terminal
//! takes the member's lock for the whole request.

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use loyalty_client::{MemberRef, MemberWrite, Purchase, Redemption, Refund};
use rand::rngs::SmallRng;
use rand::Rng as _;
use uuid::Uuid;

use crate::setup::Org;

#[derive(Debug, Clone)]
pub(crate) struct PurchaseRec {
    pub(crate) transaction_id: String,
    pub(crate) amount_minor: i64,
    pub(crate) refunded_minor: i64,
}

/// A member write.
#[derive(Debug, Clone)]
pub(crate) enum Write {
    Purchase(Purchase),
    Refund(Refund),
    Redemption(Redemption),
}

impl Write {
    pub(crate) async fn send(
        &self,
        client: &loyalty_client::Client,
        org: &str,
        member: Uuid,
        idempotency_key: &str,
    ) -> Result<MemberWrite, loyalty_client::Error> {
        let member = MemberRef::Id(member);
        match self {
            Write::Purchase(purchase) => {
                client
                    .record_purchase(org, member, idempotency_key, purchase)
                    .await
            }
            Write::Refund(refund) => client.refund_purchase(org, member, idempotency_key, refund).await,
            Write::Redemption(redemption) => {
                client
                    .redeem_reward(org, member, idempotency_key, redemption)
                    .await
            }
        }
    }
}

/// A write as it was sent, with its answer, so that it can be retried.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    pub(crate) write: Write,
    pub(crate) idempotency_key: String,
    pub(crate) answer: MemberWrite,
}

/// What the load generator knows about one member.
#[derive(Debug)]
pub struct MemberState {
    pub id: Uuid,
    /// The balance of the last acknowledgement.
    pub balance: i64,
    /// Recent purchases that may still be refunded.
    pub(crate) purchases: VecDeque<PurchaseRec>,
    pub(crate) last: Option<Sent>,
}

/// Recent purchases kept per member for refunds.
pub(crate) const REFUNDABLE_KEPT: usize = 16;

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

pub(crate) type SharedMember = Arc<tokio::sync::Mutex<MemberState>>;

/// One org during a run.
pub struct OrgCtx {
    pub org: Org,
    members: Mutex<Vec<SharedMember>>,
    pub(crate) next_member_no: AtomicU64,
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

    pub(crate) fn members(&self) -> std::sync::MutexGuard<'_, Vec<SharedMember>> {
        // A poisoned lock only means another task panicked while pushing; the Vec is intact.
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn member_count(&self) -> usize {
        self.members().len()
    }

    /// A member no other terminal is serving right now (a few random tries).
    pub(crate) fn try_take_member(
        &self,
        rng: &mut SmallRng,
    ) -> Option<tokio::sync::OwnedMutexGuard<MemberState>> {
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
