//! A member's balance and tier at a time, folded from the event store with the domain's own
//! aggregates.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate as _;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use domain::codec::{decode, Decoded};

use crate::event::{stored_event_from_row, EVENT_COLUMNS};

/// A member's account as the event store had recorded it at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AsOf {
    pub org_id: String,
    pub member_id: Uuid,
    pub at: DateTime<Utc>,
    /// Member events folded (the longest prefix of the history committed at or before `at`).
    pub events: usize,
    pub balance: i64,
    pub lifetime_earned: i64,
    pub redeemed: i64,
    pub expired: i64,
    pub clawed_back: i64,
    pub adjusted: i64,
    pub tier: String,
    pub multiplier_bps: u32,
    /// Points earned by purchases in the program's qualification window ending at `at`.
    pub qualifying_points: i64,
    pub next_expiry_points: Option<i64>,
    pub next_expiry_at: Option<DateTime<Utc>>,
    /// The program version in force at `at`.
    pub program_version: u64,
}

/// The member's balance and tier at `at`, folding `domain::Member` over the events the store
/// had *committed* by then (`events.committed_at`, the committing transaction's time), in
/// sequence order; the fold stops at the first event committed later. Committed time, not the
/// business time of purchases: an offline terminal's purchase printed before `at` but sent
/// after it was not part of the account at `at`, and the balance is only defined along the
/// sequence. `None` when the member was not enrolled at `at`.
pub async fn as_of(
    pool: &PgPool,
    org_id: &str,
    member_id: Uuid,
    at: DateTime<Utc>,
) -> anyhow::Result<Option<AsOf>> {
    let fold = |aggregate_type: &'static str, aggregate_id: String| async move {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM public.events WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence"
        ))
        .bind(aggregate_type)
        .bind(&aggregate_id)
        .fetch_all(pool)
        .await
        .with_context(|| format!("reading the events of {aggregate_type} {aggregate_id}"))?;
        let mut decoded = Vec::new();
        for row in &rows {
            let event = stored_event_from_row(row)?;
            if event.committed_at > at {
                break;
            }
            decoded
                .push(decode(&event).with_context(|| format!("event {} of {aggregate_id}", event.sequence))?);
        }
        anyhow::Ok(decoded)
    };
    let mut program = domain::Program::default();
    for event in fold("program", org_id.to_owned()).await? {
        if let Decoded::Program(_, event) = event {
            program.apply(event);
        }
    }
    let mut member = domain::Member::default();
    let events = fold("member", format!("{org_id}/{member_id}")).await?;
    let count = events.len();
    for event in events {
        if let Decoded::Member(_, event) = event {
            member.apply(event);
        }
    }
    if !member.is_enrolled() {
        return Ok(None);
    }
    let window = program
        .config
        .as_ref()
        .map_or(365, |c| c.qualification_window_days);
    let next = member.next_expiry();
    Ok(Some(AsOf {
        org_id: org_id.to_owned(),
        member_id,
        at,
        events: count,
        balance: member.points.balance,
        lifetime_earned: member.points.lifetime_earned,
        redeemed: member.points.redeemed,
        expired: member.points.expired,
        clawed_back: member.points.clawed_back,
        adjusted: member.points.adjusted,
        qualifying_points: member.qualifying_points(at, window),
        tier: member.tier.name.clone(),
        multiplier_bps: member.tier.multiplier_bps,
        next_expiry_points: next.map(|(p, _)| p),
        next_expiry_at: next.map(|(_, t)| t),
        program_version: program.version,
    }))
}
