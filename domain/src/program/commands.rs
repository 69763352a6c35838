//! What can be asked of an org's program.

use chrono::{DateTime, Utc};

use super::config::ProgramConfig;
use super::promotion::Promotion;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgramCommand {
    Configure(Configuration),
    RegisterLocation(NewLocation),
    /// Adds one promotion to the program in force (a new version).
    AddPromotion(Promotion),
    /// Replaces the promotion with the same `promotion_id` (a new version unless unchanged).
    ChangePromotion(Promotion),
    /// Ends a promotion at a given instant (idempotent).
    EndPromotion(PromotionEnd),
}

impl ProgramCommand {
    /// Stable name, for tracing and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            ProgramCommand::Configure(_) => "ConfigureProgram",
            ProgramCommand::RegisterLocation(_) => "RegisterLocation",
            ProgramCommand::AddPromotion(_) => "AddPromotion",
            ProgramCommand::ChangePromotion(_) => "ChangePromotion",
            ProgramCommand::EndPromotion(_) => "EndPromotion",
        }
    }
}

/// Replaces the org's program (a new version unless it is unchanged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configuration {
    pub org_id: String,
    pub config: ProgramConfig,
    pub at: DateTime<Utc>,
}

/// Registers a store location of the org (idempotent for the same name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLocation {
    pub org_id: String,
    pub location_id: String,
    pub name: String,
    pub at: DateTime<Utc>,
}

/// Ends promotion `promotion_id` at `at`: its `ends_at` becomes `at`, unless it already ends
/// earlier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotionEnd {
    pub promotion_id: String,
    pub at: DateTime<Utc>,
}
