//! Program events: the wire schema of the event store and the stream (see
//! [`crate::member::events`] for the rules of change).

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::config::ProgramConfig;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProgramEvent {
    ProgramConfigured {
        org_id: String,
        version: u64,
        config: ProgramConfig,
        configured_at: DateTime<Utc>,
    },
    LocationRegistered {
        org_id: String,
        location_id: String,
        name: String,
        registered_at: DateTime<Utc>,
    },
}

impl DomainEvent for ProgramEvent {
    fn event_type(&self) -> String {
        self.type_name().to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl ProgramEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            ProgramEvent::ProgramConfigured { .. } => "ProgramConfigured",
            ProgramEvent::LocationRegistered { .. } => "LocationRegistered",
        }
    }
}
