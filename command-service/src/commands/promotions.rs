//! Adding, changing and ending one promotion of the org's program (SPEC §9) without re-sending
//! the whole program. Each is decided inside the program aggregate, so concurrent admin edits
//! never lose one another, and each makes a new program version.

use chrono::{DateTime, Utc};
use domain::program::{Promotion, PromotionEdit, PromotionEnd};
use domain::ProgramCommand;

use super::{CommandContext, CommandError, Commands, PromotionOutcome};

impl Commands {
    /// Adds a promotion (its id must be new to the program).
    pub async fn add_promotion(
        &self,
        ctx: &CommandContext,
        promotion: Promotion,
    ) -> Result<PromotionOutcome, CommandError> {
        self.execute_promotion(
            ctx,
            ProgramCommand::AddPromotion(PromotionEdit {
                promotion,
                at: Utc::now(),
            }),
        )
        .await
    }

    /// Replaces the promotion with the same id.
    pub async fn change_promotion(
        &self,
        ctx: &CommandContext,
        promotion: Promotion,
    ) -> Result<PromotionOutcome, CommandError> {
        self.execute_promotion(
            ctx,
            ProgramCommand::ChangePromotion(PromotionEdit {
                promotion,
                at: Utc::now(),
            }),
        )
        .await
    }

    /// Ends a promotion at `ends_at` (now by default), unless it already ends earlier.
    pub async fn end_promotion(
        &self,
        ctx: &CommandContext,
        promotion_id: String,
        ends_at: Option<DateTime<Utc>>,
    ) -> Result<PromotionOutcome, CommandError> {
        let now = Utc::now();
        let end = PromotionEnd {
            promotion_id,
            ends_at: ends_at.unwrap_or(now),
            at: now,
        };
        self.execute_promotion(ctx, ProgramCommand::EndPromotion(end))
            .await
    }

    async fn execute_promotion(
        &self,
        ctx: &CommandContext,
        command: ProgramCommand,
    ) -> Result<PromotionOutcome, CommandError> {
        let (events, program) = self.execute_program_with(ctx, command, Clone::clone).await?;
        Ok(PromotionOutcome { events, program })
    }
}
