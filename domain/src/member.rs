//! The `Member` aggregate: one member of one org (SPEC §3, §4).
//!
//! Every decision is made before the first event is written to the sink, so a command either
//! appends all of its events or fails with a typed error and appends nothing.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveDate, SubsecRound as _, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{check_business_id, is_slug, IdProblem};
use crate::money::{apply_multiplier, base_points, cumulative_clawback, currency_digits};
use crate::points::PointCounters;
use crate::program::{ProgramSnapshot, RewardDef};

/// Largest purchase or refund amount accepted, in minor units (one billion major units).
pub const MAX_AMOUNT_MINOR: i64 = 100_000_000_000;
/// Largest single admin adjustment, in points.
pub const MAX_ADJUSTMENT: i64 = 1_000_000_000;
/// How far ahead of the server clock a terminal's `occurred_at` may be (clock skew).
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);
/// Longest display name and adjustment reason.
pub const MAX_DISPLAY_NAME: usize = 64;
pub const MAX_REASON: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberCommand {
    Enroll {
        org_id: String,
        member_id: Uuid,
        external_id: Option<String>,
        display_name: Option<String>,
        program: ProgramSnapshot,
        at: DateTime<Utc>,
    },
    RecordPurchase {
        transaction_id: String,
        location_id: String,
        amount_minor: i64,
        currency: String,
        /// Business time on the receipt (may be hours old for an offline terminal).
        occurred_at: DateTime<Utc>,
        program: ProgramSnapshot,
        /// The server clock when the command was received.
        recorded_at: DateTime<Utc>,
    },
    RefundPurchase {
        refund_id: String,
        transaction_id: String,
        amount_minor: i64,
        program: ProgramSnapshot,
        at: DateTime<Utc>,
    },
    RedeemReward {
        redemption_id: String,
        reward_id: String,
        /// The catalogue entry in force, `None` if the catalogue has no such reward.
        reward: Option<RewardDef>,
        at: DateTime<Utc>,
    },
    AdjustPoints {
        adjustment_id: String,
        delta: i64,
        reason: String,
        /// Expiry policy in force, for a positive adjustment's lot.
        expiry_days: Option<u32>,
        at: DateTime<Utc>,
    },
    ExpirePoints {
        as_of: DateTime<Utc>,
    },
    ReevaluateTier {
        as_of: DateTime<Utc>,
        program: ProgramSnapshot,
    },
}

impl MemberCommand {
    /// Stable name, for tracing and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            MemberCommand::Enroll { .. } => "EnrollMember",
            MemberCommand::RecordPurchase { .. } => "RecordPurchase",
            MemberCommand::RefundPurchase { .. } => "RefundPurchase",
            MemberCommand::RedeemReward { .. } => "RedeemReward",
            MemberCommand::AdjustPoints { .. } => "AdjustPoints",
            MemberCommand::ExpirePoints { .. } => "ExpirePoints",
            MemberCommand::ReevaluateTier { .. } => "ReevaluateTier",
        }
    }
}

/// Member events: the wire schema of the event store and the stream. Type names and versions
/// are stable; a change of shape gets a new version and an upcaster, never an edit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberEvent {
    MemberEnrolled {
        org_id: String,
        member_id: Uuid,
        external_id: Option<String>,
        display_name: Option<String>,
        enrolled_at: DateTime<Utc>,
        tier: String,
        multiplier_bps: u32,
        program_version: u64,
    },
    PurchaseRecorded {
        transaction_id: String,
        location_id: String,
        amount_minor: i64,
        currency: String,
        occurred_at: DateTime<Utc>,
        program_version: u64,
        /// `floor(amount × earn_rate / 10^digits)`, before the tier multiplier.
        base_points: i64,
        /// The tier the member held before this purchase, whose multiplier was used.
        tier: String,
        multiplier_bps: u32,
        points_earned: i64,
        /// When this purchase's points expire (`None`: never).
        expires_at: Option<DateTime<Utc>>,
        balance_after: i64,
        /// Qualifying points in the window ending when the purchase was recorded (or at
        /// `occurred_at` if that is later), this purchase included if it lies in the window.
        qualifying_points: i64,
    },
    StampCollected {
        card_id: String,
        transaction_id: String,
        /// The UTC calendar day of the stamp.
        day: NaiveDate,
        stamps: u32,
        stamps_required: u32,
        occurred_at: DateTime<Utc>,
    },
    StampCardCompleted {
        card_id: String,
        /// The reward issued for the full card.
        reward_id: String,
        transaction_id: String,
        cards_completed: u32,
        occurred_at: DateTime<Utc>,
    },
    TierUpgraded {
        from: String,
        to: String,
        multiplier_bps: u32,
        qualifying_points: i64,
        occurred_at: DateTime<Utc>,
        program_version: u64,
    },
    TierGracePeriodStarted {
        tier: String,
        threshold_points: i64,
        qualifying_points: i64,
        as_of: DateTime<Utc>,
        downgrade_after: DateTime<Utc>,
    },
    TierGracePeriodCleared {
        tier: String,
        qualifying_points: i64,
        as_of: DateTime<Utc>,
    },
    TierDowngraded {
        from: String,
        to: String,
        multiplier_bps: u32,
        qualifying_points: i64,
        as_of: DateTime<Utc>,
        program_version: u64,
    },
    PurchaseRefunded {
        refund_id: String,
        transaction_id: String,
        /// Of the original purchase, so projectors need not look it up.
        location_id: String,
        purchase_occurred_at: DateTime<Utc>,
        purchase_amount_minor: i64,
        purchase_points_earned: i64,
        amount_minor: i64,
        /// Sum of all refunds of the purchase, this one included.
        refunded_total_minor: i64,
        points_clawed_back: i64,
        balance_after: i64,
        qualifying_points: i64,
        occurred_at: DateTime<Utc>,
    },
    RewardRedeemed {
        redemption_id: String,
        reward_id: String,
        reward_name: String,
        points_cost: i64,
        balance_after: i64,
        occurred_at: DateTime<Utc>,
    },
    PointsAdjusted {
        adjustment_id: String,
        delta: i64,
        reason: String,
        expires_at: Option<DateTime<Utc>>,
        balance_after: i64,
        occurred_at: DateTime<Utc>,
    },
    PointsExpired {
        as_of: DateTime<Utc>,
        points: i64,
        balance_after: i64,
    },
}

impl DomainEvent for MemberEvent {
    fn event_type(&self) -> String {
        self.type_name().to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl MemberEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            MemberEvent::MemberEnrolled { .. } => "MemberEnrolled",
            MemberEvent::PurchaseRecorded { .. } => "PurchaseRecorded",
            MemberEvent::StampCollected { .. } => "StampCollected",
            MemberEvent::StampCardCompleted { .. } => "StampCardCompleted",
            MemberEvent::TierUpgraded { .. } => "TierUpgraded",
            MemberEvent::TierGracePeriodStarted { .. } => "TierGracePeriodStarted",
            MemberEvent::TierGracePeriodCleared { .. } => "TierGracePeriodCleared",
            MemberEvent::TierDowngraded { .. } => "TierDowngraded",
            MemberEvent::PurchaseRefunded { .. } => "PurchaseRefunded",
            MemberEvent::RewardRedeemed { .. } => "RewardRedeemed",
            MemberEvent::PointsAdjusted { .. } => "PointsAdjusted",
            MemberEvent::PointsExpired { .. } => "PointsExpired",
        }
    }
}

/// A rule broken by a command. Nothing is appended when a command fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemberError {
    #[error("member_id: the member is not enrolled")]
    NotEnrolled,
    #[error("member_id: the member is already enrolled")]
    AlreadyEnrolled,
    #[error("org_id: '{0}' is not a valid org id ([a-z0-9][a-z0-9-]{{0,62}})")]
    InvalidOrgId(String),
    #[error("{field}: {problem}")]
    InvalidId { field: &'static str, problem: IdProblem },
    #[error("display_name: {0}")]
    InvalidDisplayName(&'static str),
    #[error("location_id: '{0}' is not a valid location id ([a-z0-9][a-z0-9-]{{0,62}})")]
    InvalidLocationId(String),
    #[error("location_id: location '{0}' is not registered for this org")]
    UnknownLocation(String),
    #[error("{field}: must be greater than 0 and at most {MAX_AMOUNT_MINOR}")]
    InvalidAmount { field: &'static str },
    #[error("currency: unknown ISO-4217 currency code '{0}'")]
    UnknownCurrency(String),
    #[error("currency: the program's currency is {expected}, not {got}")]
    CurrencyMismatch { expected: String, got: String },
    #[error("occurred_at: {0} is in the future")]
    OccurredInFuture(DateTime<Utc>),
    #[error("{field}: arithmetic overflow")]
    Overflow { field: &'static str },
    #[error("transaction_id: transaction '{0}' was already recorded with different details")]
    TransactionConflict(String),
    #[error("transaction_id: no purchase '{0}' for this member")]
    PurchaseNotFound(String),
    #[error("amount_minor: the refund exceeds what is left of the purchase ({remaining_minor} minor units)")]
    RefundExceedsPurchase { remaining_minor: i64 },
    #[error("refund_id: refund '{0}' was already used with different details")]
    RefundIdReused(String),
    #[error("reward_id: no reward '{0}' in the catalogue")]
    UnknownReward(String),
    #[error("reward_id: reward '{0}' is not active")]
    RewardInactive(String),
    #[error("points: the balance of {balance} is less than the {required} points required")]
    InsufficientPoints { balance: i64, required: i64 },
    #[error("points: the balance is negative ({balance}); nothing can be redeemed until it is repaid")]
    NegativeBalance { balance: i64 },
    #[error("redemption_id: redemption '{0}' was already used for another reward")]
    RedemptionIdReused(String),
    #[error("reason: a reason is required (1 to {MAX_REASON} characters)")]
    ReasonRequired,
    #[error("delta: must be non-zero and at most {MAX_ADJUSTMENT} in absolute value")]
    InvalidDelta,
    #[error("adjustment_id: adjustment '{0}' was already used with different details")]
    AdjustmentIdReused(String),
}

impl MemberError {
    /// A stable machine-readable code for API errors.
    pub fn code(&self) -> &'static str {
        use MemberError::*;
        match self {
            NotEnrolled => "member_not_found",
            AlreadyEnrolled => "member_exists",
            InvalidOrgId(_) => "invalid_org_id",
            InvalidId { .. } => "invalid_id",
            InvalidDisplayName(_) => "invalid_display_name",
            InvalidLocationId(_) => "invalid_location_id",
            UnknownLocation(_) => "unknown_location",
            InvalidAmount { .. } => "invalid_amount",
            UnknownCurrency(_) => "unknown_currency",
            CurrencyMismatch { .. } => "currency_mismatch",
            OccurredInFuture(_) => "occurred_in_future",
            Overflow { .. } => "overflow",
            TransactionConflict(_) => "transaction_conflict",
            PurchaseNotFound(_) => "purchase_not_found",
            RefundExceedsPurchase { .. } => "refund_exceeds_purchase",
            RefundIdReused(_) => "refund_id_reused",
            UnknownReward(_) => "unknown_reward",
            RewardInactive(_) => "reward_inactive",
            InsufficientPoints { .. } => "insufficient_points",
            NegativeBalance { .. } => "negative_balance",
            RedemptionIdReused(_) => "redemption_id_reused",
            ReasonRequired => "reason_required",
            InvalidDelta => "invalid_delta",
            AdjustmentIdReused(_) => "adjustment_id_reused",
        }
    }

    /// The request field the error is about.
    pub fn field(&self) -> &'static str {
        use MemberError::*;
        match self {
            NotEnrolled | AlreadyEnrolled => "member_id",
            InvalidOrgId(_) => "org_id",
            InvalidId { field, .. } | InvalidAmount { field } | Overflow { field } => field,
            InvalidDisplayName(_) => "display_name",
            InvalidLocationId(_) | UnknownLocation(_) => "location_id",
            UnknownCurrency(_) | CurrencyMismatch { .. } => "currency",
            OccurredInFuture(_) => "occurred_at",
            TransactionConflict(_) | PurchaseNotFound(_) => "transaction_id",
            RefundExceedsPurchase { .. } => "amount_minor",
            RefundIdReused(_) => "refund_id",
            UnknownReward(_) | RewardInactive(_) => "reward_id",
            InsufficientPoints { .. } | NegativeBalance { .. } => "points",
            RedemptionIdReused(_) => "redemption_id",
            ReasonRequired => "reason",
            InvalidDelta => "delta",
            AdjustmentIdReused(_) => "adjustment_id",
        }
    }

    /// `true` when the command conflicts with what the member already has (HTTP 409), as
    /// opposed to being malformed (400/422).
    pub fn is_conflict(&self) -> bool {
        use MemberError::*;
        matches!(
            self,
            AlreadyEnrolled
                | TransactionConflict(_)
                | RefundIdReused(_)
                | RedemptionIdReused(_)
                | AdjustmentIdReused(_)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolment {
    pub org_id: String,
    pub member_id: Uuid,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    pub enrolled_at: DateTime<Utc>,
}

/// Points earned together, expiring together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lot {
    pub earned_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub remaining: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseRecord {
    pub location_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub occurred_at: DateTime<Utc>,
    pub points_earned: i64,
    pub refunded_minor: i64,
    pub clawed_back: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRecord {
    pub transaction_id: String,
    pub amount_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grace {
    pub started_at: DateTime<Utc>,
    pub downgrade_after: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierState {
    pub name: String,
    pub multiplier_bps: u32,
    pub grace: Option<Grace>,
    /// The latest `as_of` of a re-evaluation that changed something; older or equal `as_of`
    /// re-evaluations are no-ops (idempotence of the system job).
    pub last_reevaluation: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardProgress {
    pub stamps: u32,
    pub completed: u32,
    pub stamped_days: BTreeSet<NaiveDate>,
}

/// A member's account as rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub enrolment: Option<Enrolment>,
    /// Balance and running totals.
    #[serde(flatten)]
    pub points: PointCounters,
    /// Positive-remaining lots only; their sum equals the balance whenever it is ≥ 0.
    pub lots: Vec<Lot>,
    pub purchases: BTreeMap<String, PurchaseRecord>,
    pub refunds: BTreeMap<String, RefundRecord>,
    /// redemption_id → reward_id
    pub redemptions: BTreeMap<String, String>,
    /// adjustment_id → (delta, reason)
    pub adjustments: BTreeMap<String, (i64, String)>,
    pub tier: TierState,
    pub stamp_cards: BTreeMap<String, CardProgress>,
}

fn check_id(field: &'static str, value: &str) -> Result<(), MemberError> {
    check_business_id(value).map_err(|problem| MemberError::InvalidId { field, problem })
}

fn check_amount(field: &'static str, amount: i64) -> Result<(), MemberError> {
    if amount <= 0 || amount > MAX_AMOUNT_MINOR {
        Err(MemberError::InvalidAmount { field })
    } else {
        Ok(())
    }
}

fn check_display_name(name: &str) -> Result<(), MemberError> {
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed.chars().count() > MAX_DISPLAY_NAME {
        return Err(MemberError::InvalidDisplayName("must be 1 to 64 characters"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(MemberError::InvalidDisplayName(
            "must not contain control characters",
        ));
    }
    // Leaderboards show display names publicly: refuse what looks like contact details.
    let digits = trimmed.chars().filter(char::is_ascii_digit).count();
    if trimmed.contains('@') || digits >= 7 {
        return Err(MemberError::InvalidDisplayName(
            "must not be an email address or a phone number",
        ));
    }
    Ok(())
}

fn add_days(
    at: DateTime<Utc>,
    days: Option<u32>,
    field: &'static str,
) -> Result<Option<DateTime<Utc>>, MemberError> {
    days.map(|d| {
        at.checked_add_signed(Duration::days(i64::from(d)))
            .ok_or(MemberError::Overflow { field })
    })
    .transpose()
}

/// `true` when `occurred_at` lies in the qualification window `(as_of − window_days, as_of]`.
fn in_window(occurred_at: DateTime<Utc>, as_of: DateTime<Utc>, window_days: u32) -> bool {
    // A window reaching back before the calendar's start includes everything up to as_of.
    let after_start = as_of
        .checked_sub_signed(Duration::days(i64::from(window_days)))
        .is_none_or(|start| occurred_at > start);
    after_start && occurred_at <= as_of
}

/// Order in which lots are consumed by debits: soonest expiry first, never-expiring last.
fn consumption_key(lot: &Lot) -> (bool, Option<DateTime<Utc>>, DateTime<Utc>) {
    (lot.expires_at.is_none(), lot.expires_at, lot.earned_at)
}

impl Member {
    pub fn is_enrolled(&self) -> bool {
        self.enrolment.is_some()
    }

    fn enrolled(&self) -> Result<&Enrolment, MemberError> {
        self.enrolment.as_ref().ok_or(MemberError::NotEnrolled)
    }

    /// Points earned by purchases (net of their clawbacks) with `occurred_at` in the window
    /// `(as_of − window_days, as_of]`.
    pub fn qualifying_points(&self, as_of: DateTime<Utc>, window_days: u32) -> i64 {
        self.purchases
            .values()
            .filter(|p| in_window(p.occurred_at, as_of, window_days))
            .map(|p| p.points_earned - p.clawed_back)
            .sum()
    }

    /// Points that `ExpirePoints { as_of }` would expire.
    pub fn expirable_points(&self, as_of: DateTime<Utc>) -> i64 {
        self.lots
            .iter()
            .filter(|l| l.expires_at.is_some_and(|e| e <= as_of))
            .map(|l| l.remaining)
            .sum()
    }

    /// The lot that expires next: `(points, expires_at)`.
    pub fn next_expiry(&self) -> Option<(i64, DateTime<Utc>)> {
        let at = self.lots.iter().filter_map(|l| l.expires_at).min()?;
        let points = self
            .lots
            .iter()
            .filter(|l| l.expires_at == Some(at))
            .map(|l| l.remaining)
            .sum();
        Some((points, at))
    }

    fn current_tier(&self, program: &ProgramSnapshot) -> (Option<usize>, u32) {
        let index = program.config.tier_index(&self.tier.name);
        let multiplier = index
            .map(|i| program.config.tiers[i].multiplier_bps)
            .unwrap_or(self.tier.multiplier_bps);
        (index, multiplier)
    }

    /// Puts credited points (already counted in the balance) into a lot.
    fn credit(&mut self, points: i64, earned_at: DateTime<Utc>, expires_at: Option<DateTime<Utc>>) {
        // While the balance is negative every lot is empty: earned points first repay the debt.
        let into_lot = points.min(self.points.balance.max(0));
        if into_lot > 0 {
            self.lots.push(Lot {
                earned_at,
                expires_at,
                remaining: into_lot,
            });
        }
    }

    /// Takes debited points (already counted in the balance) from the lots.
    fn debit(&mut self, points: i64) {
        let mut left = points;
        self.lots.sort_by_key(consumption_key);
        for lot in &mut self.lots {
            if left == 0 {
                break;
            }
            let take = lot.remaining.min(left);
            lot.remaining -= take;
            left -= take;
        }
        self.lots.retain(|l| l.remaining > 0);
    }

    #[allow(clippy::too_many_arguments)]
    async fn enroll(
        &mut self,
        org_id: String,
        member_id: Uuid,
        external_id: Option<String>,
        display_name: Option<String>,
        program: ProgramSnapshot,
        at: DateTime<Utc>,
        sink: &EventSink<Self>,
    ) -> Result<(), MemberError> {
        if self.enrolment.is_some() {
            return Err(MemberError::AlreadyEnrolled);
        }
        if !is_slug(&org_id) {
            return Err(MemberError::InvalidOrgId(org_id));
        }
        if let Some(external_id) = &external_id {
            check_id("external_id", external_id)?;
        }
        let display_name = display_name.map(|n| n.trim().to_owned());
        if let Some(name) = &display_name {
            check_display_name(name)?;
        }
        let first = &program.config.tiers[0];
        let event = MemberEvent::MemberEnrolled {
            org_id,
            member_id,
            external_id,
            display_name,
            enrolled_at: at,
            tier: first.name.clone(),
            multiplier_bps: first.multiplier_bps,
            program_version: program.version,
        };
        sink.write(event, self).await;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn record_purchase(
        &mut self,
        transaction_id: String,
        location_id: String,
        amount_minor: i64,
        currency: String,
        occurred_at: DateTime<Utc>,
        program: ProgramSnapshot,
        recorded_at: DateTime<Utc>,
        sink: &EventSink<Self>,
    ) -> Result<(), MemberError> {
        // Postgres keeps microseconds: a receipt time finer than that would come back from the
        // read models different from the event, and its refund would no longer match it.
        let occurred_at = occurred_at.trunc_subsecs(6);
        self.enrolled()?;
        check_id("transaction_id", &transaction_id)?;
        if !is_slug(&location_id) {
            return Err(MemberError::InvalidLocationId(location_id));
        }
        if !program.locations.contains(&location_id) {
            return Err(MemberError::UnknownLocation(location_id));
        }
        check_amount("amount_minor", amount_minor)?;
        let digits =
            currency_digits(&currency).ok_or_else(|| MemberError::UnknownCurrency(currency.clone()))?;
        let config = &program.config;
        if currency != config.currency {
            return Err(MemberError::CurrencyMismatch {
                expected: config.currency.clone(),
                got: currency,
            });
        }
        if occurred_at > recorded_at + MAX_CLOCK_SKEW {
            return Err(MemberError::OccurredInFuture(occurred_at));
        }
        if let Some(existing) = self.purchases.get(&transaction_id) {
            // The same receipt sent twice is the same purchase: never a second earn.
            let same = existing.amount_minor == amount_minor
                && existing.currency == currency
                && existing.location_id == location_id
                && existing.occurred_at == occurred_at;
            return if same {
                Ok(())
            } else {
                Err(MemberError::TransactionConflict(transaction_id))
            };
        }

        let (tier_index, multiplier_bps) = self.current_tier(&program);
        let overflow = MemberError::Overflow {
            field: "amount_minor",
        };
        let base = base_points(amount_minor, config.earn_rate, digits).ok_or(overflow.clone())?;
        let points = apply_multiplier(base, multiplier_bps).ok_or(overflow.clone())?;
        let balance_after = self.points.balance.checked_add(points).ok_or(overflow.clone())?;
        self.points.lifetime_earned.checked_add(points).ok_or(overflow)?;
        let expires_at = add_days(occurred_at, config.expiry_days, "occurred_at")?;
        // Qualification is judged now, when the purchase is recorded, not at the receipt's time:
        // a receipt that an offline terminal sends late must still see the purchases recorded
        // after it was printed, and a receipt older than the window no longer qualifies.
        let as_of = recorded_at.max(occurred_at);
        let window = config.qualification_window_days;
        let own_points = if in_window(occurred_at, as_of, window) {
            points
        } else {
            0
        };
        let qualifying_points = self
            .qualifying_points(as_of, window)
            .checked_add(own_points)
            .ok_or(MemberError::Overflow {
                field: "amount_minor",
            })?;
        let day = occurred_at.date_naive();

        let mut events = vec![MemberEvent::PurchaseRecorded {
            transaction_id: transaction_id.clone(),
            location_id,
            amount_minor,
            currency,
            occurred_at,
            program_version: program.version,
            base_points: base,
            tier: self.tier.name.clone(),
            multiplier_bps,
            points_earned: points,
            expires_at,
            balance_after,
            qualifying_points,
        }];

        for card in &config.stamp_cards {
            let progress = self.stamp_cards.get(&card.card_id);
            if amount_minor < card.min_amount_minor || progress.is_some_and(|p| p.stamped_days.contains(&day))
            {
                continue;
            }
            let stamps = progress.map_or(0, |p| p.stamps) + 1;
            events.push(MemberEvent::StampCollected {
                card_id: card.card_id.clone(),
                transaction_id: transaction_id.clone(),
                day,
                stamps,
                stamps_required: card.stamps_required,
                occurred_at,
            });
            if stamps >= card.stamps_required {
                events.push(MemberEvent::StampCardCompleted {
                    card_id: card.card_id.clone(),
                    reward_id: card.reward_id.clone(),
                    transaction_id: transaction_id.clone(),
                    cards_completed: progress.map_or(0, |p| p.completed) + 1,
                    occurred_at,
                });
            }
        }

        // The purchase that crosses a threshold earned at the old multiplier (above); the
        // upgrade applies from the next purchase.
        let target = config.tier_for(qualifying_points);
        let upgrade = match tier_index {
            Some(current) => target > current,
            // A tier the program no longer has (renamed or removed): a purchase may move the
            // member to a ladder tier at least as rewarding, never down.
            None => config.tiers[target].multiplier_bps >= multiplier_bps,
        };
        if upgrade {
            events.push(MemberEvent::TierUpgraded {
                from: self.tier.name.clone(),
                to: config.tiers[target].name.clone(),
                multiplier_bps: config.tiers[target].multiplier_bps,
                qualifying_points,
                occurred_at,
                program_version: program.version,
            });
        } else if let (Some(current), Some(_)) = (tier_index, &self.tier.grace) {
            if qualifying_points >= config.tiers[current].threshold_points {
                events.push(MemberEvent::TierGracePeriodCleared {
                    tier: self.tier.name.clone(),
                    qualifying_points,
                    as_of: occurred_at,
                });
            }
        }

        for event in events {
            sink.write(event, self).await;
        }
        Ok(())
    }

    async fn refund_purchase(
        &mut self,
        refund_id: String,
        transaction_id: String,
        amount_minor: i64,
        program: ProgramSnapshot,
        at: DateTime<Utc>,
        sink: &EventSink<Self>,
    ) -> Result<(), MemberError> {
        self.enrolled()?;
        check_id("refund_id", &refund_id)?;
        check_id("transaction_id", &transaction_id)?;
        check_amount("amount_minor", amount_minor)?;
        if let Some(existing) = self.refunds.get(&refund_id) {
            return if existing.transaction_id == transaction_id && existing.amount_minor == amount_minor {
                Ok(())
            } else {
                Err(MemberError::RefundIdReused(refund_id))
            };
        }
        let purchase = self
            .purchases
            .get(&transaction_id)
            .ok_or_else(|| MemberError::PurchaseNotFound(transaction_id.clone()))?;
        let remaining_minor = purchase.amount_minor - purchase.refunded_minor;
        if amount_minor > remaining_minor {
            return Err(MemberError::RefundExceedsPurchase { remaining_minor });
        }
        let refunded_total_minor = purchase.refunded_minor + amount_minor;
        let total_clawback = cumulative_clawback(
            purchase.points_earned,
            refunded_total_minor,
            purchase.amount_minor,
        )
        .ok_or(MemberError::Overflow {
            field: "amount_minor",
        })?;
        let points_clawed_back = total_clawback - purchase.clawed_back;
        let balance_after =
            self.points
                .balance
                .checked_sub(points_clawed_back)
                .ok_or(MemberError::Overflow {
                    field: "amount_minor",
                })?;
        let window = program.config.qualification_window_days;
        let own_clawback = if in_window(purchase.occurred_at, at, window) {
            points_clawed_back
        } else {
            0
        };
        let qualifying_points = self.qualifying_points(at, window) - own_clawback;
        let event = MemberEvent::PurchaseRefunded {
            refund_id,
            transaction_id,
            location_id: purchase.location_id.clone(),
            purchase_occurred_at: purchase.occurred_at,
            purchase_amount_minor: purchase.amount_minor,
            purchase_points_earned: purchase.points_earned,
            amount_minor,
            refunded_total_minor,
            points_clawed_back,
            balance_after,
            qualifying_points,
            occurred_at: at,
        };
        sink.write(event, self).await;
        Ok(())
    }

    async fn redeem_reward(
        &mut self,
        redemption_id: String,
        reward_id: String,
        reward: Option<RewardDef>,
        at: DateTime<Utc>,
        sink: &EventSink<Self>,
    ) -> Result<(), MemberError> {
        self.enrolled()?;
        check_id("redemption_id", &redemption_id)?;
        check_id("reward_id", &reward_id)?;
        if let Some(existing) = self.redemptions.get(&redemption_id) {
            return if *existing == reward_id {
                Ok(())
            } else {
                Err(MemberError::RedemptionIdReused(redemption_id))
            };
        }
        let reward = reward
            .filter(|r| r.reward_id == reward_id)
            .ok_or_else(|| MemberError::UnknownReward(reward_id.clone()))?;
        if !reward.active {
            return Err(MemberError::RewardInactive(reward_id));
        }
        // Points past their expiry date are not spendable, even before the expiry job ran:
        // they expire now, in the same append as the redemption.
        let due = self.expirable_points(at);
        let spendable = self.points.balance - due;
        if spendable < 0 {
            return Err(MemberError::NegativeBalance { balance: spendable });
        }
        if spendable < reward.points_cost {
            return Err(MemberError::InsufficientPoints {
                balance: spendable,
                required: reward.points_cost,
            });
        }
        self.expire_due(at, sink).await;
        let event = MemberEvent::RewardRedeemed {
            redemption_id,
            reward_id,
            reward_name: reward.name,
            points_cost: reward.points_cost,
            balance_after: self.points.balance - reward.points_cost,
            occurred_at: at,
        };
        sink.write(event, self).await;
        Ok(())
    }

    async fn adjust_points(
        &mut self,
        adjustment_id: String,
        delta: i64,
        reason: String,
        expiry_days: Option<u32>,
        at: DateTime<Utc>,
        sink: &EventSink<Self>,
    ) -> Result<(), MemberError> {
        self.enrolled()?;
        check_id("adjustment_id", &adjustment_id)?;
        let reason = reason.trim().to_owned();
        if reason.is_empty() || reason.chars().count() > MAX_REASON {
            return Err(MemberError::ReasonRequired);
        }
        if delta == 0 || delta.unsigned_abs() > MAX_ADJUSTMENT.unsigned_abs() {
            return Err(MemberError::InvalidDelta);
        }
        if let Some((existing_delta, existing_reason)) = self.adjustments.get(&adjustment_id) {
            return if *existing_delta == delta && *existing_reason == reason {
                Ok(())
            } else {
                Err(MemberError::AdjustmentIdReused(adjustment_id))
            };
        }
        // Points past their expiry date expire first (see redeem_reward), so a debit cannot
        // spend them.
        let due = self.expirable_points(at);
        let balance_after = (self.points.balance - due)
            .checked_add(delta)
            .ok_or(MemberError::Overflow { field: "delta" })?;
        // Only a clawback may take a balance below zero.
        if delta < 0 && balance_after < 0 {
            return Err(MemberError::InsufficientPoints {
                balance: self.points.balance - due,
                required: -delta,
            });
        }
        self.expire_due(at, sink).await;
        let expires_at = if delta > 0 {
            add_days(at, expiry_days, "delta")?
        } else {
            None
        };
        let event = MemberEvent::PointsAdjusted {
            adjustment_id,
            delta,
            reason,
            expires_at,
            balance_after,
            occurred_at: at,
        };
        sink.write(event, self).await;
        Ok(())
    }

    async fn expire_points(
        &mut self,
        as_of: DateTime<Utc>,
        sink: &EventSink<Self>,
    ) -> Result<(), MemberError> {
        self.enrolled()?;
        // Idempotent by construction: a second run for the same as_of finds nothing left.
        self.expire_due(as_of, sink).await;
        Ok(())
    }

    /// Appends `PointsExpired` for every lot due at `as_of`, if any. Infallible, so callers use
    /// it only after all of their own checks passed.
    async fn expire_due(&mut self, as_of: DateTime<Utc>, sink: &EventSink<Self>) {
        let points = self.expirable_points(as_of);
        if points > 0 {
            let event = MemberEvent::PointsExpired {
                as_of,
                points,
                balance_after: self.points.balance - points,
            };
            sink.write(event, self).await;
        }
    }

    async fn reevaluate_tier(
        &mut self,
        as_of: DateTime<Utc>,
        program: ProgramSnapshot,
        sink: &EventSink<Self>,
    ) -> Result<(), MemberError> {
        self.enrolled()?;
        if self.tier.last_reevaluation.is_some_and(|last| as_of <= last) {
            return Ok(());
        }
        let config = &program.config;
        let qualifying_points = self.qualifying_points(as_of, config.qualification_window_days);
        let target = config.tier_for(qualifying_points);
        let grace_end = |from: DateTime<Utc>| {
            from.checked_add_signed(Duration::days(i64::from(config.downgrade_grace_days)))
                .ok_or(MemberError::Overflow { field: "as_of" })
        };
        let mut events = Vec::new();
        let Some(current) = config.tier_index(&self.tier.name) else {
            // The member's tier is no longer on the ladder (renamed or removed): there is no
            // rung to step down from, so the re-evaluation places them where their qualifying
            // points put them.
            let to = &config.tiers[target];
            let event = if to.multiplier_bps >= self.tier.multiplier_bps {
                MemberEvent::TierUpgraded {
                    from: self.tier.name.clone(),
                    to: to.name.clone(),
                    multiplier_bps: to.multiplier_bps,
                    qualifying_points,
                    occurred_at: as_of,
                    program_version: program.version,
                }
            } else {
                MemberEvent::TierDowngraded {
                    from: self.tier.name.clone(),
                    to: to.name.clone(),
                    multiplier_bps: to.multiplier_bps,
                    qualifying_points,
                    as_of,
                    program_version: program.version,
                }
            };
            sink.write(event, self).await;
            return Ok(());
        };
        if target > current {
            events.push(MemberEvent::TierUpgraded {
                from: self.tier.name.clone(),
                to: config.tiers[target].name.clone(),
                multiplier_bps: config.tiers[target].multiplier_bps,
                qualifying_points,
                occurred_at: as_of,
                program_version: program.version,
            });
        } else if target == current {
            if self.tier.grace.is_some() {
                events.push(MemberEvent::TierGracePeriodCleared {
                    tier: self.tier.name.clone(),
                    qualifying_points,
                    as_of,
                });
            }
        } else {
            // With a grace period of 0 days the first re-evaluation below threshold is already
            // past its end.
            let due = match &self.tier.grace {
                None => grace_end(as_of)? <= as_of,
                Some(grace) => as_of >= grace.downgrade_after,
            };
            if due {
                // One tier at a time; a further step needs another full grace period.
                let lower = current - 1;
                events.push(MemberEvent::TierDowngraded {
                    from: self.tier.name.clone(),
                    to: config.tiers[lower].name.clone(),
                    multiplier_bps: config.tiers[lower].multiplier_bps,
                    qualifying_points,
                    as_of,
                    program_version: program.version,
                });
                if target < lower {
                    events.push(MemberEvent::TierGracePeriodStarted {
                        tier: config.tiers[lower].name.clone(),
                        threshold_points: config.tiers[lower].threshold_points,
                        qualifying_points,
                        as_of,
                        downgrade_after: grace_end(as_of)?,
                    });
                }
            } else if self.tier.grace.is_none() {
                events.push(MemberEvent::TierGracePeriodStarted {
                    tier: self.tier.name.clone(),
                    threshold_points: config.tiers[current].threshold_points,
                    qualifying_points,
                    as_of,
                    downgrade_after: grace_end(as_of)?,
                });
            }
        }
        for event in events {
            sink.write(event, self).await;
        }
        Ok(())
    }
}

impl Aggregate for Member {
    const TYPE: &'static str = "member";
    type Command = MemberCommand;
    type Event = MemberEvent;
    type Error = MemberError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _service: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            MemberCommand::Enroll {
                org_id,
                member_id,
                external_id,
                display_name,
                program,
                at,
            } => {
                self.enroll(org_id, member_id, external_id, display_name, program, at, sink)
                    .await
            }
            MemberCommand::RecordPurchase {
                transaction_id,
                location_id,
                amount_minor,
                currency,
                occurred_at,
                program,
                recorded_at,
            } => {
                self.record_purchase(
                    transaction_id,
                    location_id,
                    amount_minor,
                    currency,
                    occurred_at,
                    program,
                    recorded_at,
                    sink,
                )
                .await
            }
            MemberCommand::RefundPurchase {
                refund_id,
                transaction_id,
                amount_minor,
                program,
                at,
            } => {
                self.refund_purchase(refund_id, transaction_id, amount_minor, program, at, sink)
                    .await
            }
            MemberCommand::RedeemReward {
                redemption_id,
                reward_id,
                reward,
                at,
            } => {
                self.redeem_reward(redemption_id, reward_id, reward, at, sink)
                    .await
            }
            MemberCommand::AdjustPoints {
                adjustment_id,
                delta,
                reason,
                expiry_days,
                at,
            } => {
                self.adjust_points(adjustment_id, delta, reason, expiry_days, at, sink)
                    .await
            }
            MemberCommand::ExpirePoints { as_of } => self.expire_points(as_of, sink).await,
            MemberCommand::ReevaluateTier { as_of, program } => {
                self.reevaluate_tier(as_of, program, sink).await
            }
        }
    }

    fn apply(&mut self, event: Self::Event) {
        self.points.apply(&event);
        match event {
            MemberEvent::MemberEnrolled {
                org_id,
                member_id,
                external_id,
                display_name,
                enrolled_at,
                tier,
                multiplier_bps,
                ..
            } => {
                self.enrolment = Some(Enrolment {
                    org_id,
                    member_id,
                    external_id,
                    display_name,
                    enrolled_at,
                });
                self.tier = TierState {
                    name: tier,
                    multiplier_bps,
                    grace: None,
                    last_reevaluation: None,
                };
            }
            MemberEvent::PurchaseRecorded {
                transaction_id,
                location_id,
                amount_minor,
                currency,
                occurred_at,
                points_earned,
                expires_at,
                ..
            } => {
                self.credit(points_earned, occurred_at, expires_at);
                self.purchases.insert(
                    transaction_id,
                    PurchaseRecord {
                        location_id,
                        amount_minor,
                        currency,
                        occurred_at,
                        points_earned,
                        refunded_minor: 0,
                        clawed_back: 0,
                    },
                );
            }
            MemberEvent::StampCollected {
                card_id, day, stamps, ..
            } => {
                let card = self.stamp_cards.entry(card_id).or_default();
                card.stamps = stamps;
                card.stamped_days.insert(day);
            }
            MemberEvent::StampCardCompleted {
                card_id,
                cards_completed,
                ..
            } => {
                let card = self.stamp_cards.entry(card_id).or_default();
                card.stamps = 0;
                card.completed = cards_completed;
            }
            MemberEvent::TierUpgraded {
                to, multiplier_bps, ..
            } => {
                self.tier.name = to;
                self.tier.multiplier_bps = multiplier_bps;
                self.tier.grace = None;
            }
            MemberEvent::TierDowngraded {
                to,
                multiplier_bps,
                as_of,
                ..
            } => {
                self.tier.name = to;
                self.tier.multiplier_bps = multiplier_bps;
                self.tier.grace = None;
                self.tier.last_reevaluation = Some(as_of);
            }
            MemberEvent::TierGracePeriodStarted {
                as_of,
                downgrade_after,
                ..
            } => {
                self.tier.grace = Some(Grace {
                    started_at: as_of,
                    downgrade_after,
                });
                self.tier.last_reevaluation = Some(as_of);
            }
            MemberEvent::TierGracePeriodCleared { .. } => {
                self.tier.grace = None;
            }
            MemberEvent::PurchaseRefunded {
                refund_id,
                transaction_id,
                amount_minor,
                refunded_total_minor,
                points_clawed_back,
                ..
            } => {
                if let Some(purchase) = self.purchases.get_mut(&transaction_id) {
                    purchase.refunded_minor = refunded_total_minor;
                    purchase.clawed_back += points_clawed_back;
                }
                self.refunds.insert(
                    refund_id,
                    RefundRecord {
                        transaction_id,
                        amount_minor,
                    },
                );
                self.debit(points_clawed_back);
            }
            MemberEvent::RewardRedeemed {
                redemption_id,
                reward_id,
                points_cost,
                ..
            } => {
                self.redemptions.insert(redemption_id, reward_id);
                self.debit(points_cost);
            }
            MemberEvent::PointsAdjusted {
                adjustment_id,
                delta,
                reason,
                expires_at,
                occurred_at,
                ..
            } => {
                self.adjustments.insert(adjustment_id, (delta, reason));
                if delta > 0 {
                    self.credit(delta, occurred_at, expires_at);
                } else {
                    self.debit(-delta);
                }
            }
            MemberEvent::PointsExpired { as_of, .. } => {
                self.lots.retain(|l| l.expires_at.is_none_or(|e| e > as_of));
            }
        }
    }
}
