//! Why a member command is refused, and how each refusal is classified for API answers (a
//! stable code, the request field it is about, and whether it is a conflict).

use chrono::{DateTime, Utc};

use super::limits::{MAX_ADJUSTMENT, MAX_AMOUNT_MINOR, MAX_REASON};
use crate::ids::IdProblem;

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
    #[error("items: {0}")]
    InvalidItems(String),
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
            InvalidItems(_) => "invalid_items",
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
            InvalidItems(_) => "items",
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
