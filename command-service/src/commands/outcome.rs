//! What a command answers: the events it appended, or why it was refused.

use chrono::{DateTime, Utc};
use cqrs_es::EventEnvelope;
use domain::member::earn::Breakdown;
use domain::{Member, MemberError, MemberEvent, Program, ProgramError};
use uuid::Uuid;

use crate::store::ExecuteError;

/// Why a command was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Member(#[from] MemberError),
    #[error(transparent)]
    Program(#[from] ProgramError),
    #[error("org '{0}' has no program yet: configure it with PUT /v1/orgs/{0}/program first")]
    ProgramNotConfigured(String),
    #[error("no member with this id in this org")]
    MemberNotFound,
    #[error("external_id '{0}' is already used by another member of this org")]
    ExternalIdTaken(String),
    #[error("transaction_id '{0}' was already credited to another member of this org")]
    TransactionClaimed(String),
    #[error("as_of: {0} is in the future")]
    AsOfInFuture(DateTime<Utc>),
    #[error("too many concurrent changes to this {0}; retry")]
    Contention(&'static str),
    /// A promotion budget the purchase drew on kept changing under it (other purchases drew
    /// first); nothing was recorded. Inside the service, the signal to decide again.
    #[error("too many concurrent purchases drew on the same promotion budget; retry")]
    BudgetContention,
    /// The request's `Idempotency-Key` was taken when its events were to be appended with its
    /// answer; nothing was appended. Answered from the key's record by the HTTP layer.
    #[error("the Idempotency-Key is taken")]
    KeyTaken,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The answer to a store failure that is not a constraint the caller handles itself.
pub(super) fn rejected<E>(error: ExecuteError<E>, aggregate: &'static str) -> CommandError
where
    E: std::error::Error + Into<CommandError>,
{
    match error {
        ExecuteError::Rejected(error) => error.into(),
        ExecuteError::Contention { .. } => CommandError::Contention(aggregate),
        ExecuteError::Store(error) => CommandError::Internal(error),
        ExecuteError::KeyTaken => CommandError::KeyTaken,
        ExecuteError::Constraint(constraint) => {
            CommandError::Internal(anyhow::anyhow!("unexpected store constraint {constraint:?}"))
        }
    }
}

/// A member command's result: the member and the events appended for this request.
#[derive(Debug)]
pub struct MemberOutcome {
    pub member_id: Uuid,
    pub events: Vec<EventEnvelope<Member>>,
    /// The balance right after `events` (the current balance when there are none).
    pub balance: i64,
    /// Purchases: the breakdown of the purchase's points, from its `PurchaseRecorded` event
    /// (this request's, or the one recorded earlier for the same `transaction_id`).
    pub breakdown: Option<Breakdown>,
    /// The response body stored with `events` under the request's `Idempotency-Key` (the request
    /// answers exactly this); `None` when nothing was stored with them.
    pub stored_answer: Option<String>,
}

/// The breakdown of the purchase among `events`, if any.
pub(super) fn breakdown_of(events: &[EventEnvelope<Member>]) -> Option<Breakdown> {
    events.iter().find_map(|event| match &event.payload {
        MemberEvent::PurchaseRecorded { breakdown, .. } => Some(breakdown.clone()),
        _ => None,
    })
}

/// The balance right after `events`, as recorded in them: what the original answer to the
/// request that appended them said.
pub(super) fn balance_after(events: &[EventEnvelope<Member>]) -> Option<i64> {
    events.iter().rev().find_map(|event| match &event.payload {
        MemberEvent::PurchaseRecorded { balance_after, .. }
        | MemberEvent::PurchaseRefunded { balance_after, .. }
        | MemberEvent::RewardRedeemed { balance_after, .. }
        | MemberEvent::PointsAdjusted { balance_after, .. }
        | MemberEvent::PointsExpired { balance_after, .. } => Some(*balance_after),
        MemberEvent::MemberEnrolled { .. } => Some(0),
        _ => None,
    })
}

/// A program command's result.
#[derive(Debug)]
pub struct ProgramOutcome {
    pub events: Vec<EventEnvelope<Program>>,
    /// The program version in force after the command.
    pub program_version: u64,
}

/// The result of a change to one promotion: the events appended and the program after it.
#[derive(Debug)]
pub struct PromotionOutcome {
    pub events: Vec<EventEnvelope<Program>>,
    pub program: Program,
}

/// Counts every command by outcome, and the events it appended.
pub(super) fn record_outcome(command: &str, appended: usize) {
    let outcome = if appended > 0 {
        "appended"
    } else {
        "unchanged_or_rejected"
    };
    metrics::counter!("command_commands_total", "command" => command.to_owned(), "outcome" => outcome)
        .increment(1);
    metrics::counter!("command_events_appended_total", "command" => command.to_owned())
        .increment(appended as u64);
}
