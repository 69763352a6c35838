//! Stamp cards: a member's progress and the program's card definitions.

use async_graphql::Object;

use crate::db::{StampCardDefRow, StampCardRow};

/// A member's progress on one stamp card.
pub struct StampCard(pub StampCardRow);

/// A member's progress on one stamp card.
#[Object]
impl StampCard {
    async fn card_id(&self) -> &str {
        &self.0.card_id
    }
    /// The card's name; null if the program no longer has the card.
    async fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }
    /// Stamps on the current card.
    async fn stamps(&self) -> i32 {
        self.0.stamps
    }
    /// Stamps that fill a card.
    async fn stamps_required(&self) -> i32 {
        self.0.stamps_required
    }
    /// Cards filled so far.
    async fn cards_completed(&self) -> i32 {
        self.0.cards_completed
    }
    /// Rewards issued for full cards (one per card).
    async fn rewards_issued(&self) -> i32 {
        self.0.cards_completed
    }
    /// The reward a full card issues.
    async fn reward_id(&self) -> Option<&str> {
        self.0.reward_id.as_deref()
    }
}

/// A stamp card of the program.
pub struct StampCardDefinition(pub StampCardDefRow);

/// A stamp card of the program.
#[Object]
impl StampCardDefinition {
    async fn card_id(&self) -> &str {
        &self.0.card_id
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn stamps_required(&self) -> i32 {
        self.0.stamps_required
    }
    /// The reward a full card issues.
    async fn reward_id(&self) -> &str {
        &self.0.reward_id
    }
    /// Smallest purchase that earns a stamp, in minor units.
    async fn min_amount_minor(&self) -> i64 {
        self.0.min_amount_minor
    }
}
