//! The member use cases that move points: purchases (and their quotes), refunds, redemptions and
//! adjustments.

use chrono::{DateTime, Utc};
use domain::ids::member_aggregate_id;
use domain::member::earn::Breakdown;
use domain::member::{Adjustment, Purchase, Receipt, Redemption, Refund};
use domain::MemberCommand;
use tokio::sync::OwnedMutexGuard;

use super::budgets::BudgetsLeft;
use super::outcome::record_outcome;
use super::{CommandContext, CommandError, Commands, MemberOutcome, MemberRef};

impl Commands {
    /// Records a purchase (idempotent on `transaction_id`, which is unique per org).
    ///
    /// When the program has budgeted promotions and the org's purchases draw on them, the
    /// purchase takes its turn at the org's budget gate and is decided with what the gate knows
    /// is left (`budgets`). When a budget the decision drew on changed before the append
    /// (another purchase drew first), it is decided again on the budgets read afresh, in turn,
    /// up to the attempts of the budget retry policy.
    pub async fn record_purchase(
        &self,
        ctx: &CommandContext,
        member: &MemberRef,
        receipt: Receipt,
    ) -> Result<MemberOutcome, CommandError> {
        let member_id = self.resolve(&ctx.org_id, member).await?;
        // A transaction id credited to another member is refused by the trigger on the events
        // insert (migration 0003), which writes the claim in the same transaction as the
        // PurchaseRecorded event: no state with a claim and no event or the reverse, no crash
        // window, and a race between two members is decided by the claim's primary key. No
        // look-up first: it would cost every purchase a round trip to answer a rare mistake
        // that the insert answers anyway (the refused append also discards the cached member).
        let transaction_id = receipt.transaction_id.clone();
        let recorded_at = Utc::now();
        let mut backoff = self.budget_retry.backoff();
        let gate = self.budget_gates.of(&ctx.org_id);
        let mut turn: Option<OwnedMutexGuard<BudgetsLeft>> = None;
        let mut lost = false;
        loop {
            let program = self.program_snapshot(&ctx.org_id).await?;
            let budgeted = program.config.budgeted_promotions().next().is_some();
            if budgeted && turn.is_none() && (lost || gate.drawing()) {
                turn = Some(gate.turn().await);
            }
            let budgets_left = match turn.as_deref_mut() {
                Some(known) => {
                    self.budgets_left_known(&ctx.org_id, &program.config, known)
                        .await?
                }
                None => self.budgets_left(&ctx.org_id, &program.config).await?,
            };
            let purchase = Purchase {
                receipt: receipt.clone(),
                program,
                recorded_at,
                budgets_left,
            };
            let result = self
                .execute_member(ctx, member_id, MemberCommand::RecordPurchase(purchase))
                .await;
            if budgeted {
                gate.learn(turn.as_deref_mut(), &result);
            }
            match result {
                Err(CommandError::TransactionClaimed(_)) => {
                    return Err(CommandError::TransactionClaimed(transaction_id));
                }
                Err(CommandError::BudgetContention) => {
                    metrics::counter!("command_budget_conflicts_total").increment(1);
                    let Some(pause) = backoff.next() else {
                        metrics::counter!("command_budget_conflicts_exhausted_total").increment(1);
                        record_outcome("RecordPurchase", 0);
                        return Err(CommandError::BudgetContention);
                    };
                    tracing::debug!(%member_id, "a promotion budget changed, deciding again");
                    if turn.is_some() {
                        tokio::time::sleep(pause).await;
                    }
                    // Otherwise the wait for the turn is the back-off.
                    lost = true;
                }
                Ok(mut outcome) => {
                    if outcome.breakdown.is_none() {
                        // The same receipt, recorded earlier under another key: its breakdown.
                        outcome.breakdown = self
                            .recorded_breakdown(&ctx.org_id, member_id, &transaction_id)
                            .await?;
                    }
                    return Ok(outcome);
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The purchase command for `receipt`: the program in force and the budgets left, read now
    /// (a quote: nothing is drawn).
    async fn purchase(
        &self,
        org_id: &str,
        receipt: Receipt,
        recorded_at: DateTime<Utc>,
    ) -> Result<Purchase, CommandError> {
        let program = self.program_snapshot(org_id).await?;
        let budgets_left = self.budgets_left(org_id, &program.config).await?;
        Ok(Purchase {
            receipt,
            program,
            recorded_at,
            budgets_left,
        })
    }

    /// The points `receipt` would earn the member now, and why: the decision of a purchase on
    /// the member's current state, without recording anything.
    pub async fn quote_purchase(
        &self,
        org_id: &str,
        member: &MemberRef,
        receipt: Receipt,
    ) -> Result<Breakdown, CommandError> {
        let member_id = self.resolve(org_id, member).await?;
        let purchase = self.purchase(org_id, receipt, Utc::now()).await?;
        let quote = self
            .members
            .load(&member_aggregate_id(org_id, member_id), |state, _| {
                state.quote(&purchase)
            })
            .await?;
        Ok(quote?)
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
