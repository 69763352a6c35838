//! A member's account as the command API answers it (`GET .../members/{member_id}`).

use chrono::{DateTime, NaiveDate, Utc};
use domain::Member;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::commands::CommandError;
use crate::http::error::ApiError;

/// A member's account as the command side sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    pub member_id: Uuid,
    pub org_id: String,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    pub enrolled_at: DateTime<Utc>,
    pub balance: i64,
    pub lifetime_earned: i64,
    pub redeemed: i64,
    pub expired: i64,
    pub clawed_back: i64,
    pub adjusted: i64,
    pub tier: TierView,
    pub next_expiry: Option<ExpiryView>,
    pub stamp_cards: Vec<StampCardView>,
    /// The sequence number of the member's last event.
    pub version: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TierView {
    pub name: String,
    pub multiplier_bps: u32,
    /// When a pending downgrade may happen, if the member is in a grace period.
    pub downgrade_after: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExpiryView {
    pub points: i64,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StampCardView {
    pub card_id: String,
    pub stamps: u32,
    pub completed: u32,
    pub last_stamp_day: Option<NaiveDate>,
}

impl MemberView {
    pub fn new(member_id: Uuid, member: &Member, sequence: usize) -> Result<Self, ApiError> {
        let enrolment = member.enrolment.as_ref().ok_or(CommandError::MemberNotFound)?;
        Ok(Self {
            member_id,
            org_id: enrolment.org_id.clone(),
            external_id: enrolment.external_id.clone(),
            display_name: enrolment.display_name.clone(),
            enrolled_at: enrolment.enrolled_at,
            balance: member.points.balance,
            lifetime_earned: member.points.lifetime_earned,
            redeemed: member.points.redeemed,
            expired: member.points.expired,
            clawed_back: member.points.clawed_back,
            adjusted: member.points.adjusted,
            tier: TierView {
                name: member.tier.name.clone(),
                multiplier_bps: member.tier.multiplier_bps,
                downgrade_after: member.tier.grace.as_ref().map(|grace| grace.downgrade_after),
            },
            next_expiry: member
                .next_expiry()
                .map(|(points, expires_at)| ExpiryView { points, expires_at }),
            stamp_cards: member
                .stamp_cards
                .iter()
                .map(|(card_id, progress)| StampCardView {
                    card_id: card_id.clone(),
                    stamps: progress.stamps,
                    completed: progress.completed,
                    last_stamp_day: progress.stamped_days.last().copied(),
                })
                .collect(),
            version: sequence as u64,
        })
    }
}
