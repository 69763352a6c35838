//! Who asks for a command and which member it names.

use anyhow::Context as _;
use uuid::Uuid;

use crate::commands::MemberOutcome;
use crate::idempotency::KeyRecord;
use crate::store::Metadata;

/// Who asked for a command, recorded in every event's metadata.
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub org_id: String,
    pub idempotency_key: String,
    pub key_id: Uuid,
    pub request_id: String,
    /// How the answer of a member command is stored with its events, when the command is a
    /// request whose `Idempotency-Key` is kept that way (see `idempotency`).
    pub answer: Option<Answer>,
}

/// The answer a member command's request will give, rendered when its events are decided so it
/// can be stored with them.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The request's fingerprint (`idempotency::request_hash`).
    pub request_hash: String,
    /// The status of a successful answer (201 for an enrolment, 200 otherwise).
    pub status: u16,
    /// The response body of an outcome, exactly as sent.
    pub render: fn(&MemberOutcome) -> anyhow::Result<String>,
}

impl Answer {
    /// The completed `Idempotency-Key` record of request `ctx` answered with `outcome`.
    pub fn record(&self, ctx: &CommandContext, outcome: &MemberOutcome) -> anyhow::Result<KeyRecord> {
        Ok(KeyRecord {
            org_id: ctx.org_id.clone(),
            key: ctx.idempotency_key.clone(),
            request_hash: self.request_hash.clone(),
            key_id: ctx.key_id,
            status: i16::try_from(self.status).context("status code out of range")?,
            body: (self.render)(outcome)?,
        })
    }
}

impl CommandContext {
    /// The completed `Idempotency-Key` record of `outcome`, if this request stores one.
    pub(super) fn key_record(&self, outcome: &MemberOutcome) -> anyhow::Result<Option<KeyRecord>> {
        self.answer
            .as_ref()
            .map(|answer| answer.record(self, outcome))
            .transpose()
    }

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
