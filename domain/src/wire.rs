//! The message the relay puts on JetStream for every committed event row, and the naming rules
//! of subjects and de-duplication ids (SPEC §5). Shared by the relay (producer), the projector
//! and the query service (consumers).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One row of the `events` table as published on the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub event_id: Uuid,
    /// Position in the store's global order (`events.global_position`).
    pub global_position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// The serialized domain event (`MemberEvent` / `ProgramEvent`, externally tagged).
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
    pub committed_at: DateTime<Utc>,
}

impl StoredEvent {
    /// The org owning the event: the aggregate id is the org (program) or `org/member`.
    pub fn org_id(&self) -> &str {
        self.aggregate_id.split('/').next().unwrap_or_default()
    }

    pub fn msg_id(&self) -> String {
        msg_id(&self.aggregate_type, &self.aggregate_id, self.sequence)
    }
}

/// `Nats-Msg-Id` of an event: `<aggregate_type>:<aggregate_id>:<sequence>`, so a republish
/// after a crash is dropped by JetStream's duplicate window.
pub fn msg_id(aggregate_type: &str, aggregate_id: &str, sequence: i64) -> String {
    format!("{aggregate_type}:{aggregate_id}:{sequence}")
}

/// `<prefix>.<org>.<aggregate_type>`, e.g. `loyalty.events.acme.member`.
pub fn subject(prefix: &str, org_id: &str, aggregate_type: &str) -> String {
    format!("{prefix}.{org_id}.{aggregate_type}")
}

/// The subject filter that matches every event under `prefix`.
pub fn all_subjects(prefix: &str) -> String {
    format!("{prefix}.>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naming() {
        assert_eq!(msg_id("member", "acme/0b6f", 7), "member:acme/0b6f:7");
        assert_eq!(
            subject("loyalty.events", "acme", "member"),
            "loyalty.events.acme.member"
        );
        assert_eq!(all_subjects("loyalty.events"), "loyalty.events.>");
    }
}
