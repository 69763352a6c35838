//! Enrolment: the one member command that may create the member, so the one that decides who
//! the member is when the request does not say.

use chrono::Utc;
use domain::member::NewMember;
use domain::{MemberCommand, MemberError, MemberEvent};
use uuid::Uuid;

use super::outcome::balance_after;
use super::{CommandContext, CommandError, Commands, MemberOutcome, MemberRef};

/// Namespace of the member ids derived from `(org, idempotency key)` when an enrolment names
/// no member id, so that a retried enrolment names the same member (and cannot create two).
const ENROLMENT_NAMESPACE: Uuid = Uuid::from_u128(0x6c6f_7961_6c74_795f_656e_726f_6c6d_656e);

impl Commands {
    /// Enrols a member (`member_id` derived from the idempotency key when not given).
    pub async fn enroll(
        &self,
        ctx: &CommandContext,
        member_id: Option<Uuid>,
        external_id: Option<String>,
        display_name: Option<String>,
    ) -> Result<MemberOutcome, CommandError> {
        let member_id = member_id.unwrap_or_else(|| {
            Uuid::new_v5(
                &ENROLMENT_NAMESPACE,
                format!("{}\n{}", ctx.org_id, ctx.idempotency_key).as_bytes(),
            )
        });
        let program = self.program_snapshot(&ctx.org_id).await?;
        if let Some(external_id) = &external_id {
            // Checked early for a clear answer; the directory row is written by the trigger on
            // the events insert, atomically with MemberEnrolled, which also settles races.
            let owner = self.member_by_external_id(&ctx.org_id, external_id).await?;
            if owner.is_some_and(|owner| owner != member_id) {
                return Err(CommandError::ExternalIdTaken(external_id.clone()));
            }
        }
        let command = MemberCommand::Enroll(NewMember {
            org_id: ctx.org_id.clone(),
            member_id,
            external_id: external_id.clone(),
            display_name: display_name.clone(),
            program,
            at: Utc::now(),
        });
        match self.execute_member(ctx, member_id, command).await {
            Err(CommandError::Member(MemberError::AlreadyEnrolled)) => {
                // A retry of this very enrolment (applied, but its response was lost) gets the
                // original answer; anything else is a conflict.
                let earlier = self.recorded_under_key(ctx, member_id).await?;
                let same = earlier.first().is_some_and(|first| match &first.payload {
                    MemberEvent::MemberEnrolled {
                        external_id: recorded_external,
                        display_name: recorded_name,
                        ..
                    } => {
                        *recorded_external == external_id
                            && *recorded_name == display_name.as_ref().map(|n| n.trim().to_owned())
                    }
                    _ => false,
                });
                if !same {
                    return Err(MemberError::AlreadyEnrolled.into());
                }
                let balance = self
                    .member(&ctx.org_id, &MemberRef::Id(member_id), |_, member, _| {
                        member.points.balance
                    })
                    .await?;
                Ok(MemberOutcome {
                    member_id,
                    balance: balance_after(&earlier).unwrap_or(balance),
                    events: earlier,
                    breakdown: None,
                    stored_answer: None,
                })
            }
            Err(CommandError::ExternalIdTaken(_)) => {
                Err(CommandError::ExternalIdTaken(external_id.unwrap_or_default()))
            }
            other => other,
        }
    }
}
