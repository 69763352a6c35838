//! The member directory (`member_directory`): who is enrolled, with their external id and
//! display name.

use chrono::{DateTime, Utc};
use domain::MemberEvent;

use super::{key_arrays, ReadModel, Writes};
use crate::chain::Chain;
use domain::MemberKey;

pub const TABLES: &[&str] = &["member_directory"];

#[derive(Debug, Clone)]
pub struct DirectoryRow {
    pub key: MemberKey,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    pub enrolled_at: DateTime<Utc>,
}

/// An enrolment adds the member.
pub(super) fn apply(key: &MemberKey, event: &MemberEvent, writes: &mut Writes) {
    if let MemberEvent::MemberEnrolled {
        external_id,
        display_name,
        enrolled_at,
        ..
    } = event
    {
        writes.directory.push(DirectoryRow {
            key: key.clone(),
            external_id: external_id.clone(),
            display_name: display_name.clone(),
            enrolled_at: *enrolled_at,
        });
        writes.touched(&[ReadModel::Directory]);
    }
}

/// Writes the members the batch enrolled.
pub(super) fn flush(chain: &mut Chain, rows: &[DirectoryRow]) {
    if rows.is_empty() {
        return;
    }
    let (orgs, ids) = key_arrays(rows.iter().map(|r| &r.key));
    chain
        .write(
            "member_directory",
            "INSERT INTO member_directory (org_id, member_id, external_id, display_name, enrolled_at) \
             SELECT unnest($1::text[]), unnest($2::uuid[]), unnest($3::text[]), unnest($4::text[]), unnest($5::timestamptz[])",
        )
        .bind(&orgs)
        .bind(&ids)
        .bind(rows.iter().map(|r| r.external_id.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.display_name.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.enrolled_at).collect::<Vec<_>>());
}
