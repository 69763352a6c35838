//! Finding a member, and running a member command so that a retried request gets the answer
//! of its first attempt.

use anyhow::Context as _;
use chrono::SecondsFormat;
use cqrs_es::EventEnvelope;
use domain::codec;
use domain::ids::member_aggregate_id;
use domain::member::earn::Breakdown;
use domain::{Member, MemberCommand, MemberEvent};
use uuid::Uuid;

use super::outcome::{balance_after, breakdown_of, record_outcome, rejected};
use super::{CommandContext, CommandError, Commands, MemberOutcome, MemberRef};
use crate::store::{Constraint, ExecuteError};

impl Commands {
    /// The member id `member` stands for in `org_id`.
    pub async fn resolve(&self, org_id: &str, member: &MemberRef) -> Result<Uuid, CommandError> {
        match member {
            MemberRef::Id(id) => Ok(*id),
            MemberRef::ExternalId(external_id) => self
                .member_by_external_id(org_id, external_id)
                .await?
                .ok_or(CommandError::MemberNotFound),
        }
    }

    /// The member a customer token's `sub` names in `org_id`: by external id, else by member id.
    pub async fn customer_member(&self, org_id: &str, subject: &str) -> anyhow::Result<Option<Uuid>> {
        if let Some(member_id) = self.member_by_external_id(org_id, subject).await? {
            return Ok(Some(member_id));
        }
        let Ok(member_id) = Uuid::parse_str(subject) else {
            return Ok(None);
        };
        sqlx::query_scalar("SELECT member_id FROM command_members WHERE org_id = $1 AND member_id = $2")
            .bind(org_id)
            .bind(member_id)
            .fetch_optional(&self.pool)
            .await
            .context("looking up a customer's member")
    }

    pub(super) async fn member_by_external_id(
        &self,
        org_id: &str,
        external_id: &str,
    ) -> anyhow::Result<Option<Uuid>> {
        sqlx::query_scalar("SELECT member_id FROM command_members WHERE org_id = $1 AND external_id = $2")
            .bind(org_id)
            .bind(external_id)
            .fetch_optional(&self.pool)
            .await
            .context("looking up a member by external_id")
    }

    /// `inspect(member id, member, last sequence)` on the member's current state;
    /// `MemberNotFound` unless enrolled.
    pub async fn member<R>(
        &self,
        org_id: &str,
        member: &MemberRef,
        inspect: impl FnOnce(Uuid, &Member, usize) -> R,
    ) -> Result<R, CommandError> {
        let member_id = self.resolve(org_id, member).await?;
        self.members
            .load(&member_aggregate_id(org_id, member_id), |state, sequence| {
                state.is_enrolled().then(|| inspect(member_id, state, sequence))
            })
            .await?
            .ok_or(CommandError::MemberNotFound)
    }

    /// The events of `member_id` appended under this request's idempotency key: what an
    /// earlier attempt of the same request did, if it got as far as the commit.
    pub(super) async fn recorded_under_key(
        &self,
        ctx: &CommandContext,
        member_id: Uuid,
    ) -> anyhow::Result<Vec<EventEnvelope<Member>>> {
        let aggregate_id = member_aggregate_id(&ctx.org_id, member_id);
        let rows: Vec<(i64, String, String, serde_json::Value, serde_json::Value)> = sqlx::query_as(
            "SELECT sequence, event_type, event_version, payload, metadata FROM events \
             WHERE aggregate_type = 'member' AND aggregate_id = $1 \
               AND metadata ->> 'idempotency_key' = $2 \
             ORDER BY sequence",
        )
        .bind(&aggregate_id)
        .bind(&ctx.idempotency_key)
        .fetch_all(&self.pool)
        .await
        .context("looking up events by idempotency key")?;
        rows.into_iter()
            .map(|(sequence, event_type, event_version, payload, metadata)| {
                Ok(EventEnvelope {
                    aggregate_id: aggregate_id.clone(),
                    sequence: usize::try_from(sequence).context("negative sequence")?,
                    payload: codec::decode_member(&event_type, &event_version, payload)
                        .context("decoding a member event")?,
                    metadata: serde_json::from_value(metadata).context("decoding event metadata")?,
                })
            })
            .collect()
    }

    /// The breakdown recorded for purchase `transaction_id` of `member_id`, if it was recorded:
    /// the answer to a purchase sent again under another key (rare, hence no index: the
    /// member's own events are scanned).
    pub(super) async fn recorded_breakdown(
        &self,
        org_id: &str,
        member_id: Uuid,
        transaction_id: &str,
    ) -> anyhow::Result<Option<Breakdown>> {
        let row: Option<(String, String, serde_json::Value)> = sqlx::query_as(
            "SELECT event_type, event_version, payload FROM events \
             WHERE aggregate_type = 'member' AND aggregate_id = $1 AND event_type = 'PurchaseRecorded' \
               AND payload -> 'PurchaseRecorded' ->> 'transaction_id' = $2 \
             ORDER BY sequence LIMIT 1",
        )
        .bind(member_aggregate_id(org_id, member_id))
        .bind(transaction_id)
        .fetch_optional(&self.pool)
        .await
        .context("looking up a recorded purchase")?;
        let Some((event_type, event_version, payload)) = row else {
            return Ok(None);
        };
        let event =
            codec::decode_member(&event_type, &event_version, payload).context("decoding a member event")?;
        Ok(match event {
            MemberEvent::PurchaseRecorded { breakdown, .. } => Some(breakdown),
            _ => None,
        })
    }

    /// Runs a member command built from the program in force.
    pub(super) async fn execute_member(
        &self,
        ctx: &CommandContext,
        member_id: Uuid,
        command: MemberCommand,
    ) -> Result<MemberOutcome, CommandError> {
        let name = command.name();
        let mut metadata = ctx.metadata(name);
        if let MemberCommand::RecordPurchase(purchase) = &command {
            // The clock the purchase was decided with (its qualification window ends there):
            // what a simulation needs to decide it again exactly.
            metadata.insert(
                "recorded_at".to_owned(),
                purchase.recorded_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            );
        }
        let result = self
            .members
            .execute(
                &member_aggregate_id(&ctx.org_id, member_id),
                command,
                &metadata,
                |member| member.points.balance,
                |events, balance| {
                    ctx.key_record(&MemberOutcome {
                        member_id,
                        events: events.to_vec(),
                        balance: *balance,
                        breakdown: breakdown_of(events),
                        stored_answer: None,
                    })
                },
            )
            .await;
        let committed = match result {
            Ok(committed) => committed,
            Err(ExecuteError::Constraint(Constraint::TransactionClaimed)) => {
                record_outcome(name, 0);
                return Err(CommandError::TransactionClaimed(String::new()));
            }
            // Decided again by the caller (`record_purchase`), which counts the outcome.
            Err(ExecuteError::Constraint(Constraint::BudgetChanged)) => {
                return Err(CommandError::BudgetContention);
            }
            Err(ExecuteError::Constraint(Constraint::ExternalIdTaken)) => {
                record_outcome(name, 0);
                return Err(CommandError::ExternalIdTaken(String::new()));
            }
            Err(ExecuteError::KeyTaken) => {
                record_outcome(name, 0);
                return Err(CommandError::KeyTaken);
            }
            Err(error) => {
                record_outcome(name, 0);
                return Err(rejected(error, "member"));
            }
        };
        record_outcome(name, committed.events.len());
        if !committed.events.is_empty() {
            return Ok(MemberOutcome {
                member_id,
                breakdown: breakdown_of(&committed.events),
                events: committed.events,
                balance: committed.summary,
                stored_answer: committed.answered.map(|record| record.body),
            });
        }
        // A duplicate the aggregate ignored: if it is a retry of a request that was applied but
        // never answered, answer what that attempt would have answered.
        let events = self.recorded_under_key(ctx, member_id).await?;
        Ok(MemberOutcome {
            member_id,
            balance: balance_after(&events).unwrap_or(committed.summary),
            breakdown: breakdown_of(&events),
            events,
            stored_answer: None,
        })
    }
}
