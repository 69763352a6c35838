//! The member use cases that move points: purchases, refunds, redemptions and adjustments.

use chrono::Utc;
use domain::member::{Adjustment, Purchase, Receipt, Redemption, Refund};
use domain::MemberCommand;

use super::{CommandContext, CommandError, Commands, MemberOutcome, MemberRef};

impl Commands {
    /// Records a purchase (idempotent on `transaction_id`, which is unique per org).
    pub async fn record_purchase(
        &self,
        ctx: &CommandContext,
        member: &MemberRef,
        receipt: Receipt,
    ) -> Result<MemberOutcome, CommandError> {
        let member_id = self.resolve(&ctx.org_id, member).await?;
        let program = self.program_snapshot(&ctx.org_id).await?;
        // A transaction id credited to another member is refused by the trigger on the events
        // insert (migration 0003), which writes the claim in the same transaction as the
        // PurchaseRecorded event: no state with a claim and no event or the reverse, no crash
        // window, and a race between two members is decided by the claim's primary key. No
        // look-up first: it would cost every purchase a round trip to answer a rare mistake
        // that the insert answers anyway (the refused append also discards the cached member).
        let transaction_id = receipt.transaction_id.clone();
        let command = MemberCommand::RecordPurchase(Purchase {
            receipt,
            program,
            recorded_at: Utc::now(),
            budgets_left: Default::default(),
        });
        match self.execute_member(ctx, member_id, command).await {
            Err(CommandError::TransactionClaimed(_)) => Err(CommandError::TransactionClaimed(transaction_id)),
            other => other,
        }
    }

    /// Refunds (part of) a purchase of the member.
    pub async fn refund_purchase(
        &self,
        ctx: &CommandContext,
        member: &MemberRef,
        refund_id: String,
        transaction_id: String,
        amount_minor: i64,
    ) -> Result<MemberOutcome, CommandError> {
        let member_id = self.resolve(&ctx.org_id, member).await?;
        let program = self.program_snapshot(&ctx.org_id).await?;
        let command = MemberCommand::RefundPurchase(Refund {
            refund_id,
            transaction_id,
            amount_minor,
            program,
            at: Utc::now(),
        });
        self.execute_member(ctx, member_id, command).await
    }

    /// Redeems a reward of the catalogue in force.
    pub async fn redeem_reward(
        &self,
        ctx: &CommandContext,
        member: &MemberRef,
        redemption_id: String,
        reward_id: String,
    ) -> Result<MemberOutcome, CommandError> {
        let member_id = self.resolve(&ctx.org_id, member).await?;
        let program = self.program_snapshot(&ctx.org_id).await?;
        let command = MemberCommand::RedeemReward(Redemption {
            redemption_id,
            reward: program.config.reward(&reward_id).cloned(),
            reward_id,
            at: Utc::now(),
        });
        self.execute_member(ctx, member_id, command).await
    }

    /// Adjusts a member's points (admin).
    pub async fn adjust_points(
        &self,
        ctx: &CommandContext,
        member: &MemberRef,
        adjustment_id: String,
        delta: i64,
        reason: String,
    ) -> Result<MemberOutcome, CommandError> {
        let member_id = self.resolve(&ctx.org_id, member).await?;
        let program = self.program_snapshot(&ctx.org_id).await?;
        let command = MemberCommand::AdjustPoints(Adjustment {
            adjustment_id,
            delta,
            reason,
            expiry_days: program.config.expiry_days,
            at: Utc::now(),
        });
        self.execute_member(ctx, member_id, command).await
    }
}
