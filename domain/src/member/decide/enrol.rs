//! Enrolment.

use super::checks::{check_display_name, check_id};
use crate::ids::is_slug;
use crate::member::commands::NewMember;
use crate::member::errors::MemberError;
use crate::member::events::MemberEvent;
use crate::member::state::Member;

pub(super) fn enroll(member: &Member, command: NewMember) -> Result<Vec<MemberEvent>, MemberError> {
    let NewMember {
        org_id,
        member_id,
        external_id,
        display_name,
        program,
        at,
    } = command;
    if member.enrolment.is_some() {
        return Err(MemberError::AlreadyEnrolled);
    }
    if !is_slug(&org_id) {
        return Err(MemberError::InvalidOrgId(org_id));
    }
    if let Some(external_id) = &external_id {
        check_id("external_id", external_id)?;
    }
    let display_name = display_name.map(|n| n.trim().to_owned());
    if let Some(name) = &display_name {
        check_display_name(name)?;
    }
    let first = &program.config.tiers[0];
    Ok(vec![MemberEvent::MemberEnrolled {
        org_id,
        member_id,
        external_id,
        display_name,
        enrolled_at: at,
        tier: first.name.clone(),
        multiplier_bps: first.multiplier_bps,
        program_version: program.version,
    }])
}
