//! What can be asked of an org's program.

use chrono::{DateTime, Utc};

use super::config::ProgramConfig;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgramCommand {
    Configure(Configuration),
    RegisterLocation(NewLocation),
}

impl ProgramCommand {
    /// Stable name, for tracing and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            ProgramCommand::Configure(_) => "ConfigureProgram",
            ProgramCommand::RegisterLocation(_) => "RegisterLocation",
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
