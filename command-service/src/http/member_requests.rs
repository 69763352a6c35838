//! The bodies of the member commands, and how each becomes a call of [`Commands`].

use chrono::{DateTime, Utc};
use domain::member::earn::Line;
use domain::member::Receipt;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::commands::{CommandContext, CommandError, Commands, MemberOutcome, MemberRef};
use crate::http::auth::Action;
use crate::http::command_request::{CommandRequest, MemberRequest};
use crate::http::promotion_docs::LineDoc;

/// `POST /v1/orgs/{org}/members`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The member id to use; by default one is derived from the org and the `Idempotency-Key`.
    pub member_id: Option<Uuid>,
    /// The POS customer id or card number, unique per org.
    pub external_id: Option<String>,
    /// Shown on leaderboards; 1 to 64 characters, not an email address or phone number.
    pub display_name: Option<String>,
}

impl CommandRequest for EnrollRequest {
    const ACTION: Action = Action::Operate;

    fn command() -> &'static str {
        "EnrollMember"
    }

    fn span_member(&self) -> Option<String> {
        Some(
            self.member_id
                .map_or_else(|| "new".to_owned(), |id| id.to_string()),
        )
    }
}

impl EnrollRequest {
    pub async fn execute(
        self,
        commands: &Commands,
        ctx: &CommandContext,
    ) -> Result<MemberOutcome, CommandError> {
        commands
            .enroll(ctx, self.member_id, self.external_id, self.display_name)
            .await
    }
}

/// `POST .../purchases`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurchaseRequest {
    /// The POS transaction (receipt) id, unique per org: sending it again is the same purchase.
    pub transaction_id: String,
    pub location_id: String,
    /// Amount in minor units of `currency` (cents), greater than 0.
    pub amount_minor: i64,
    /// ISO-4217 code; must be the program's currency.
    pub currency: String,
    /// When the purchase happened (the receipt's time); at most 5 minutes ahead of the server.
    pub occurred_at: DateTime<Utc>,
    /// The basket (optional): at most 500 lines whose `amount_minor` sum to the purchase's.
    /// Without it the purchase is one line with no sku and no category.
    #[serde(default)]
    #[schema(value_type = Option<Vec<LineDoc>>)]
    pub items: Option<Vec<Line>>,
}

impl CommandRequest for PurchaseRequest {
    const ACTION: Action = Action::Operate;

    fn command() -> &'static str {
        "RecordPurchase"
    }
}

impl MemberRequest for PurchaseRequest {
    async fn execute(
        self,
        commands: &Commands,
        ctx: &CommandContext,
        member: &MemberRef,
    ) -> Result<MemberOutcome, CommandError> {
        commands.record_purchase(ctx, member, self.into()).await
    }
}

impl From<PurchaseRequest> for Receipt {
    fn from(request: PurchaseRequest) -> Self {
        Receipt {
            transaction_id: request.transaction_id,
            location_id: request.location_id,
            amount_minor: request.amount_minor,
            currency: request.currency,
            occurred_at: request.occurred_at,
            items: request.items,
        }
    }
}

/// `POST .../refunds`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    pub refund_id: String,
    /// The purchase refunded.
    pub transaction_id: String,
    /// Amount refunded, in minor units; all refunds of a purchase sum to at most its amount.
    pub amount_minor: i64,
}

impl CommandRequest for RefundRequest {
    const ACTION: Action = Action::Operate;

    fn command() -> &'static str {
        "RefundPurchase"
    }
}

impl MemberRequest for RefundRequest {
    async fn execute(
        self,
        commands: &Commands,
        ctx: &CommandContext,
        member: &MemberRef,
    ) -> Result<MemberOutcome, CommandError> {
        commands
            .refund_purchase(
                ctx,
                member,
                self.refund_id,
                self.transaction_id,
                self.amount_minor,
            )
            .await
    }
}

/// `POST .../redemptions`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedemptionRequest {
    pub redemption_id: String,
    /// A reward of the program's catalogue.
    pub reward_id: String,
}

impl CommandRequest for RedemptionRequest {
    // Also the member's own customer token (SPEC §10): a widget redeems for its shopper.
    const ACTION: Action = Action::Redeem;

    fn command() -> &'static str {
        "RedeemReward"
    }
}

impl MemberRequest for RedemptionRequest {
    async fn execute(
        self,
        commands: &Commands,
        ctx: &CommandContext,
        member: &MemberRef,
    ) -> Result<MemberOutcome, CommandError> {
        commands
            .redeem_reward(ctx, member, self.redemption_id, self.reward_id)
            .await
    }
}

/// `POST .../adjustments` (admin)
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustmentRequest {
    pub adjustment_id: String,
    /// Points to add (positive) or remove (negative); not zero.
    pub delta: i64,
    /// Why, for the audit trail (required).
    pub reason: String,
}

impl CommandRequest for AdjustmentRequest {
    const ACTION: Action = Action::Administer;

    fn command() -> &'static str {
        "AdjustPoints"
    }
}

impl MemberRequest for AdjustmentRequest {
    async fn execute(
        self,
        commands: &Commands,
        ctx: &CommandContext,
        member: &MemberRef,
    ) -> Result<MemberOutcome, CommandError> {
        commands
            .adjust_points(ctx, member, self.adjustment_id, self.delta, self.reason)
            .await
    }
}
