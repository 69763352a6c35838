//! Shared fixtures of the domain tests: one org ("acme") whose program is the SPEC §3 default
//! ladder in EUR, one store, a coffee stamp card and a small rewards catalogue, plus builders
//! for member commands and a way to turn a list of commands into the history of events they
//! produce.

#![allow(dead_code)]

pub mod promotions;

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use domain::member::earn::Breakdown;
use domain::member::{Adjustment, Expiry, NewMember, Purchase, Receipt, Redemption, Refund, TierReview};
use domain::member::{Member, MemberCommand, MemberError, MemberEvent};
use domain::program::{ProgramConfig, ProgramSnapshot, RewardDef, StampCardDef};
use uuid::Uuid;

pub const ORG: &str = "acme";
pub const STORE: &str = "store-1";
pub const EUR: &str = "EUR";

pub fn member_id() -> Uuid {
    Uuid::from_u128(0x0b6f_2d1c_7a4e_4c55_9f3a_1e2d_3c4b_5a69)
}

/// Midnight UTC of 2024-01-01 plus `day` days and `hour` hours.
pub fn at(day: i64, hour: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + Duration::days(day) + Duration::hours(hour)
}

pub fn days(n: i64) -> Duration {
    Duration::days(n)
}

/// The default program of SPEC §3 in EUR (1 point per 1.00, Bronze/Silver/Gold/Platinum,
/// expiry 365 days, window 365 days, grace 30 days) with:
/// - a "coffee" stamp card: 3 stamps, purchases of at least 5.00, reward "free-coffee";
/// - rewards "free-coffee" (100 points), "tote" (300 points) and the inactive "mug".
pub fn config() -> ProgramConfig {
    let mut config = ProgramConfig::with_defaults(EUR);
    config.rewards = vec![
        reward_def("free-coffee", "Free coffee", 100, true),
        reward_def("tote", "Tote bag", 300, true),
        reward_def("mug", "Mug", 50, false),
    ];
    config.stamp_cards = vec![StampCardDef {
        card_id: "coffee".into(),
        name: "Coffee card".into(),
        stamps_required: 3,
        reward_id: "free-coffee".into(),
        min_amount_minor: 500,
    }];
    config
}

pub fn reward_def(reward_id: &str, name: &str, points_cost: i64, active: bool) -> RewardDef {
    RewardDef {
        reward_id: reward_id.into(),
        name: name.into(),
        points_cost,
        active,
    }
}

pub fn program() -> ProgramSnapshot {
    snapshot(config())
}

pub fn snapshot(config: ProgramConfig) -> ProgramSnapshot {
    ProgramSnapshot {
        version: 1,
        config: Arc::new(config),
        locations: Arc::new(BTreeSet::from([STORE.to_owned()])),
    }
}

/// The default program with one change.
pub fn program_with(change: impl FnOnce(&mut ProgramConfig)) -> ProgramSnapshot {
    let mut config = config();
    change(&mut config);
    snapshot(config)
}

pub fn enroll() -> MemberCommand {
    MemberCommand::Enroll(NewMember {
        org_id: ORG.into(),
        member_id: member_id(),
        external_id: Some("CARD-0001".into()),
        display_name: Some("Ada".into()),
        program: program(),
        at: at(0, 0),
    })
}

pub fn enrolled() -> MemberEvent {
    MemberEvent::MemberEnrolled {
        org_id: ORG.into(),
        member_id: member_id(),
        external_id: Some("CARD-0001".into()),
        display_name: Some("Ada".into()),
        enrolled_at: at(0, 0),
        tier: "Bronze".into(),
        multiplier_bps: 10_000,
        program_version: 1,
    }
}

/// A purchase at the store in EUR, received by the server when it happened.
pub fn purchase(transaction_id: &str, amount_minor: i64, occurred_at: DateTime<Utc>) -> MemberCommand {
    purchase_in(transaction_id, amount_minor, occurred_at, program())
}

pub fn purchase_in(
    transaction_id: &str,
    amount_minor: i64,
    occurred_at: DateTime<Utc>,
    program: ProgramSnapshot,
) -> MemberCommand {
    MemberCommand::RecordPurchase(Purchase {
        receipt: Receipt {
            transaction_id: transaction_id.into(),
            location_id: STORE.into(),
            amount_minor,
            currency: program.config.currency.clone(),
            occurred_at,
            items: None,
        },
        program,
        recorded_at: occurred_at,
        budgets_left: Default::default(),
    })
}

pub fn refund(
    refund_id: &str,
    transaction_id: &str,
    amount_minor: i64,
    when: DateTime<Utc>,
) -> MemberCommand {
    MemberCommand::RefundPurchase(Refund {
        refund_id: refund_id.into(),
        transaction_id: transaction_id.into(),
        amount_minor,
        program: program(),
        at: when,
    })
}

/// A redemption of a reward of the default catalogue (`None` if the catalogue has no such id).
pub fn redeem(redemption_id: &str, reward_id: &str, when: DateTime<Utc>) -> MemberCommand {
    MemberCommand::RedeemReward(Redemption {
        redemption_id: redemption_id.into(),
        reward_id: reward_id.into(),
        reward: config().reward(reward_id).cloned(),
        at: when,
    })
}

pub fn adjust(adjustment_id: &str, delta: i64, reason: &str, when: DateTime<Utc>) -> MemberCommand {
    MemberCommand::AdjustPoints(Adjustment {
        adjustment_id: adjustment_id.into(),
        delta,
        reason: reason.into(),
        expiry_days: Some(365),
        at: when,
    })
}

pub fn expire(as_of: DateTime<Utc>) -> MemberCommand {
    MemberCommand::ExpirePoints(Expiry { as_of })
}

pub fn reevaluate(as_of: DateTime<Utc>) -> MemberCommand {
    MemberCommand::ReevaluateTier(TierReview {
        as_of,
        program: program(),
    })
}

/// Decides `command` against `member` the way the cqrs-es framework does, returning the events
/// it appended (already applied to `member`) or its error.
pub async fn decide(member: &mut Member, command: MemberCommand) -> Result<Vec<MemberEvent>, MemberError> {
    let sink = EventSink::default();
    member.handle(command, &(), &sink).await?;
    Ok(sink.collect().await)
}

/// The events `commands` append when run in order from an empty member; panics if one fails,
/// because a history is a fixture that must be valid.
pub fn history(commands: Vec<MemberCommand>) -> Vec<MemberEvent> {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut member = Member::default();
    let mut events = Vec::new();
    for command in commands {
        let name = command.name();
        match runtime.block_on(decide(&mut member, command)) {
            Ok(new) => events.extend(new),
            Err(err) => panic!("fixture command {name} failed: {err}"),
        }
    }
    events
}

/// An enrolled member with the given commands applied.
pub fn given(commands: Vec<MemberCommand>) -> Vec<MemberEvent> {
    let mut all = vec![enroll()];
    all.extend(commands);
    history(all)
}

pub fn replay(events: &[MemberEvent]) -> Member {
    let mut member = Member::default();
    for event in events {
        member.apply(event.clone());
    }
    member
}

pub fn member() -> TestFramework<Member> {
    TestFramework::with(())
}

/// The `PurchaseRecorded` event of a purchase at the store in EUR with program version 1; the
/// tuple is the earn before the multiplier and the tier whose multiplier applied.
pub fn purchased(
    transaction_id: &str,
    amount_minor: i64,
    occurred_at: DateTime<Utc>,
    (base_points, tier, multiplier_bps): (i64, &str, u32),
    points_earned: i64,
    balance_after: i64,
    qualifying_points: i64,
) -> MemberEvent {
    MemberEvent::PurchaseRecorded {
        transaction_id: transaction_id.into(),
        location_id: STORE.into(),
        amount_minor,
        currency: EUR.into(),
        occurred_at,
        program_version: 1,
        base_points,
        tier: tier.into(),
        multiplier_bps,
        points_earned,
        expires_at: Some(occurred_at + Duration::days(365)),
        balance_after,
        qualifying_points,
        items: None,
        breakdown: without_promotions(base_points, points_earned),
    }
}

/// The breakdown of a purchase no promotion and no cap touched: its tier points are its total.
pub fn without_promotions(base: i64, points: i64) -> Breakdown {
    Breakdown {
        base,
        tier_points: points,
        promotions: Vec::new(),
        cap_cut: 0,
        total: points,
    }
}
