//! An org's program and locations as rebuilt from its events.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::config::{ProgramConfig, ProgramSnapshot};
use super::events::ProgramEvent;

/// An org's program and locations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    pub org_id: Option<String>,
    pub version: u64,
    /// Shared with every [`ProgramSnapshot`] taken of this version.
    pub config: Option<Arc<ProgramConfig>>,
    /// location_id → name
    pub locations: BTreeMap<String, String>,
}

impl Program {
    /// The program in force, for member commands; `None` until configured.
    pub fn snapshot(&self) -> Option<ProgramSnapshot> {
        Some(ProgramSnapshot {
            version: self.version,
            config: Arc::clone(self.config.as_ref()?),
            locations: Arc::new(self.locations.keys().cloned().collect()),
        })
    }

    /// Folds `event` into the state.
    pub fn evolve(&mut self, event: ProgramEvent) {
        match event {
            ProgramEvent::ProgramConfigured {
                org_id,
                version,
                config,
                ..
            } => {
                self.org_id = Some(org_id);
                self.version = version;
                self.config = Some(Arc::new(config));
            }
            ProgramEvent::LocationRegistered {
                org_id,
                location_id,
                name,
                ..
            } => {
                self.org_id = Some(org_id);
                self.locations.insert(location_id, name);
            }
        }
    }
}
