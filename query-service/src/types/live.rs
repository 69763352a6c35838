//! Live updates of a member: the state its events fold into and the update pushed for each.

use async_graphql::{Context, Object, ID};
use chrono::{DateTime, Utc};
use domain::MemberEvent;

use super::{balance_after, loaders, Member};
use crate::db::EventRow;
use crate::error::QueryResult;
use domain::ids::MemberKey;

use crate::live::LiveEvent;
use crate::loaders::DirectoryOf;

/// A live update of a member, pushed after each of its events.
pub struct MemberUpdate {
    pub key: MemberKey,
    pub state: LiveState,
    pub event_type: Option<String>,
    pub points_delta: i64,
    pub committed_at: Option<DateTime<Utc>>,
}

/// A live update of a member, pushed after each of its events.
#[Object]
impl MemberUpdate {
    async fn member_id(&self) -> ID {
        ID(self.key.member_id.to_string())
    }
    /// The event that caused the update; null for the current state sent on subscribing with
    /// `includeCurrent`.
    async fn event_type(&self) -> Option<&str> {
        self.event_type.as_deref()
    }
    /// The member's event sequence the update reflects.
    async fn sequence(&self) -> i64 {
        self.state.sequence
    }
    /// When that event was recorded.
    async fn committed_at(&self) -> Option<DateTime<Utc>> {
        self.committed_at
    }
    /// Points the event moved.
    async fn points_delta(&self) -> i64 {
        self.points_delta
    }
    /// The balance after the event.
    async fn points(&self) -> i64 {
        self.state.points
    }
    /// The tier after the event.
    async fn tier(&self) -> &str {
        &self.state.tier
    }
    /// Its multiplier in basis points.
    async fn multiplier_bps(&self) -> i64 {
        i64::from(self.state.multiplier_bps)
    }
    /// Qualifying points as of the latest event that stated them.
    async fn qualifying_points(&self) -> Option<i64> {
        self.state.qualifying_points
    }
    /// The member's full view from the read models, which may lag the update by the
    /// projector's delay.
    async fn member(&self, ctx: &Context<'_>) -> QueryResult<Option<Member>> {
        Ok(loaders(ctx)
            .load_one(DirectoryOf(self.key.clone()))
            .await?
            .map(|row| Member { row }))
    }
}

/// A member's balance and tier as its events state them, folded in sequence order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveState {
    pub sequence: i64,
    pub points: i64,
    pub tier: String,
    pub multiplier_bps: u32,
    pub qualifying_points: Option<i64>,
}

impl LiveState {
    /// Applies the event at `sequence`; an event at or before the state's sequence (already
    /// folded in) is ignored and `false` returned.
    pub fn apply(&mut self, sequence: i64, event: &MemberEvent) -> bool {
        if sequence <= self.sequence {
            return false;
        }
        self.sequence = sequence;
        if let Some(points) = balance_after(event) {
            self.points = points;
        }
        match event {
            MemberEvent::MemberEnrolled {
                tier, multiplier_bps, ..
            }
            | MemberEvent::PurchaseRecorded {
                tier, multiplier_bps, ..
            } => {
                self.tier.clone_from(tier);
                self.multiplier_bps = *multiplier_bps;
            }
            MemberEvent::TierUpgraded {
                to, multiplier_bps, ..
            }
            | MemberEvent::TierDowngraded {
                to, multiplier_bps, ..
            } => {
                self.tier.clone_from(to);
                self.multiplier_bps = *multiplier_bps;
            }
            _ => {}
        }
        match event {
            MemberEvent::PurchaseRecorded {
                qualifying_points, ..
            }
            | MemberEvent::PurchaseRefunded {
                qualifying_points, ..
            }
            | MemberEvent::TierUpgraded {
                qualifying_points, ..
            }
            | MemberEvent::TierDowngraded {
                qualifying_points, ..
            }
            | MemberEvent::TierGracePeriodStarted {
                qualifying_points, ..
            }
            | MemberEvent::TierGracePeriodCleared {
                qualifying_points, ..
            } => self.qualifying_points = Some(*qualifying_points),
            _ => {}
        }
        true
    }

    /// The state the log gives, from the member's latest event of each state-bearing kind in
    /// ascending sequence order ([`Db::latest_state_events`]): each field ends up with the value
    /// of the latest event stating it.
    pub fn from_events(events: &[EventRow]) -> Self {
        let mut state = LiveState::default();
        for row in events {
            state.apply(row.sequence, &row.event);
        }
        state
    }

    /// The update pushed for `event`, or `None` if it was already folded in.
    pub fn update(&mut self, key: &MemberKey, event: &LiveEvent) -> Option<MemberUpdate> {
        self.apply(event.sequence, &event.event).then(|| MemberUpdate {
            key: key.clone(),
            state: self.clone(),
            event_type: Some(event.event.type_name().to_owned()),
            points_delta: domain::ledger::points_delta(&event.event),
            committed_at: Some(event.committed_at),
        })
    }
}
