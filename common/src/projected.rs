//! What the projector announces when a batch commits: the members whose read models it
//! changed, on the channel [`MEMBERS_CHANNEL`], so that caches of read models (the query
//! service's member cards) drop exactly those members.
//!
//! A notification's payload is the members' aggregate ids (`org/uuid`), one per line, at most
//! [`MAX_PAYLOAD`] bytes (Postgres refuses payloads of 8,000 bytes or more): a batch that
//! changed many members sends several. They are sent inside the batch's transaction, so they
//! are delivered when, and only if, it commits.

use domain::ids::MemberKey;

/// The channel the projector notifies on.
pub const MEMBERS_CHANNEL: &str = "loyalty_members_projected";

/// Longest payload sent, in bytes.
pub const MAX_PAYLOAD: usize = 7_900;

/// The payloads that name `members`, each at most [`MAX_PAYLOAD`] bytes.
pub fn payloads<'a>(members: impl IntoIterator<Item = &'a MemberKey>) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut payload = String::new();
    for member in members {
        let id = member.aggregate_id();
        if !payload.is_empty() && payload.len() + 1 + id.len() > MAX_PAYLOAD {
            payloads.push(std::mem::take(&mut payload));
        }
        if !payload.is_empty() {
            payload.push('\n');
        }
        payload.push_str(&id);
    }
    if !payload.is_empty() {
        payloads.push(payload);
    }
    payloads
}

/// The members a payload names; lines that name none are skipped.
pub fn members(payload: &str) -> impl Iterator<Item = MemberKey> + '_ {
    payload.lines().filter_map(|line| MemberKey::parse(line).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn many_members_are_split_into_payloads_postgres_accepts_and_read_back_whole() {
        let sent: Vec<MemberKey> = (0..500)
            .map(|i| MemberKey::new(format!("org-{}", i % 3), Uuid::new_v4()))
            .collect();
        let payloads = payloads(&sent);
        assert!(payloads.len() > 1, "500 members do not fit one notification");
        assert!(payloads.iter().all(|payload| payload.len() <= MAX_PAYLOAD));
        let read: Vec<MemberKey> = payloads.iter().flat_map(|payload| members(payload)).collect();
        assert_eq!(read, sent);
    }

    #[test]
    fn no_members_send_nothing_and_junk_names_nobody() {
        assert!(payloads(&[]).is_empty());
        assert_eq!(members("not a member\n\nacme/not-a-uuid").count(), 0);
    }
}
