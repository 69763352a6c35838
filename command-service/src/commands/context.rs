//! Who asks for a command and which member it names.

use uuid::Uuid;

use crate::store::Metadata;

/// Who asked for a command, recorded in every event's metadata.
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub org_id: String,
    pub idempotency_key: String,
    pub key_id: Uuid,
    pub request_id: String,
}

impl CommandContext {
    pub(super) fn metadata(&self, command: &str) -> Metadata {
        Metadata::from([
            ("org_id".to_owned(), self.org_id.clone()),
            ("command".to_owned(), command.to_owned()),
            ("idempotency_key".to_owned(), self.idempotency_key.clone()),
            ("key_id".to_owned(), self.key_id.to_string()),
            ("request_id".to_owned(), self.request_id.clone()),
        ])
    }
}

/// How a request names a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberRef {
    Id(Uuid),
    ExternalId(String),
}
