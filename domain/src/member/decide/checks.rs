//! Input checks shared by the deciders.

use chrono::{DateTime, Duration, Utc};

use crate::ids::check_business_id;
use crate::member::errors::MemberError;
use crate::member::limits::{MAX_AMOUNT_MINOR, MAX_DISPLAY_NAME};
use crate::member::state::{Enrolment, Member};

pub(super) fn enrolled(member: &Member) -> Result<&Enrolment, MemberError> {
    member.enrolment.as_ref().ok_or(MemberError::NotEnrolled)
}

pub(super) fn check_id(field: &'static str, value: &str) -> Result<(), MemberError> {
    check_business_id(value).map_err(|problem| MemberError::InvalidId { field, problem })
}

pub(super) fn check_amount(field: &'static str, amount: i64) -> Result<(), MemberError> {
    if amount <= 0 || amount > MAX_AMOUNT_MINOR {
        Err(MemberError::InvalidAmount { field })
    } else {
        Ok(())
    }
}

pub(super) fn check_display_name(name: &str) -> Result<(), MemberError> {
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed.chars().count() > MAX_DISPLAY_NAME {
        return Err(MemberError::InvalidDisplayName("must be 1 to 64 characters"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(MemberError::InvalidDisplayName(
            "must not contain control characters",
        ));
    }
    // Leaderboards show display names publicly: refuse what looks like contact details.
    let digits = trimmed.chars().filter(char::is_ascii_digit).count();
    if trimmed.contains('@') || digits >= 7 {
        return Err(MemberError::InvalidDisplayName(
            "must not be an email address or a phone number",
        ));
    }
    Ok(())
}

/// `at` plus `days`, if any; `Overflow` naming `field` past the end of the calendar.
pub(super) fn add_days(
    at: DateTime<Utc>,
    days: Option<u32>,
    field: &'static str,
) -> Result<Option<DateTime<Utc>>, MemberError> {
    days.map(|d| {
        at.checked_add_signed(Duration::days(i64::from(d)))
            .ok_or(MemberError::Overflow { field })
    })
    .transpose()
}
