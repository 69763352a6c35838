//! Identifier rules shared by every boundary (SPEC §2).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Maximum length of a slug (`[a-z0-9][a-z0-9-]{0,62}`).
pub const SLUG_MAX: usize = 63;
/// Maximum length of free-form business ids (transaction, refund, redemption, adjustment,
/// external ids): long enough for any POS receipt number, short enough to index.
pub const BUSINESS_ID_MAX: usize = 128;

/// `true` when `s` matches `[a-z0-9][a-z0-9-]{0,62}` — org and location ids.
pub fn is_slug(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= SLUG_MAX
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// Why a business id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdProblem {
    Empty,
    TooLong,
    ControlCharacter,
}

impl std::fmt::Display for IdProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdProblem::Empty => write!(f, "must not be empty"),
            IdProblem::TooLong => write!(f, "must be at most {BUSINESS_ID_MAX} characters"),
            IdProblem::ControlCharacter => write!(f, "must not contain control characters"),
        }
    }
}

/// Checks a free-form business id (POS transaction id, refund id, card number…).
pub fn check_business_id(s: &str) -> Result<(), IdProblem> {
    if s.trim().is_empty() {
        Err(IdProblem::Empty)
    } else if s.chars().count() > BUSINESS_ID_MAX {
        Err(IdProblem::TooLong)
    } else if s.chars().any(char::is_control) {
        Err(IdProblem::ControlCharacter)
    } else {
        Ok(())
    }
}

/// A member of an org, as named by a member aggregate id `org/uuid`: org-scoped so that no key
/// of one org can ever name another org's member.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MemberKey {
    pub org_id: String,
    pub member_id: Uuid,
}

/// A member aggregate id that is not `org/uuid`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("member aggregate id '{0}' is not 'org/uuid'")]
pub struct BadMemberAggregateId(pub String);

impl MemberKey {
    pub fn new(org_id: impl Into<String>, member_id: Uuid) -> Self {
        MemberKey {
            org_id: org_id.into(),
            member_id,
        }
    }

    /// Reads a member aggregate id back. Lenient on the org (any non-empty text): the events
    /// already stored are read as they were written.
    pub fn parse(aggregate_id: &str) -> Result<Self, BadMemberAggregateId> {
        let bad = || BadMemberAggregateId(aggregate_id.to_owned());
        let (org_id, member) = aggregate_id.split_once('/').ok_or_else(bad)?;
        let member_id = Uuid::parse_str(member).map_err(|_| bad())?;
        if org_id.is_empty() {
            return Err(bad());
        }
        Ok(MemberKey::new(org_id, member_id))
    }

    /// The cqrs-es aggregate id of the member.
    pub fn aggregate_id(&self) -> String {
        member_aggregate_id(&self.org_id, self.member_id)
    }
}

/// The cqrs-es aggregate id of a member (see [`MemberKey`]).
pub fn member_aggregate_id(org_id: &str, member_id: Uuid) -> String {
    format!("{org_id}/{member_id}")
}

/// The cqrs-es aggregate id of an org's program.
pub fn program_aggregate_id(org_id: &str) -> String {
    org_id.to_owned()
}

/// Splits a member aggregate id back into `(org_id, member_id)`, strictly: the org must be a
/// slug (readers of untrusted input use this; [`MemberKey::parse`] is the lenient reader).
pub fn parse_member_aggregate_id(aggregate_id: &str) -> Option<(&str, Uuid)> {
    let (org, member) = aggregate_id.split_once('/')?;
    let member = Uuid::parse_str(member).ok()?;
    is_slug(org).then_some((org, member))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(is_slug("acme"));
        assert!(is_slug("0-store-9"));
        assert!(is_slug(&"a".repeat(63)));
        assert!(!is_slug(&"a".repeat(64)));
        assert!(!is_slug(""));
        assert!(!is_slug("-acme"));
        assert!(!is_slug("Acme"));
        assert!(!is_slug("ac.me"));
        assert!(!is_slug("ac me"));
    }

    #[test]
    fn business_ids() {
        assert_eq!(check_business_id("  "), Err(IdProblem::Empty));
        assert_eq!(check_business_id(&"x".repeat(129)), Err(IdProblem::TooLong));
        assert_eq!(check_business_id("a\nb"), Err(IdProblem::ControlCharacter));
        assert_eq!(check_business_id("RCPT-0001/2"), Ok(()));
    }

    #[test]
    fn member_aggregate_id_round_trips() {
        let id = Uuid::new_v4();
        let agg = member_aggregate_id("acme", id);
        assert_eq!(parse_member_aggregate_id(&agg), Some(("acme", id)));
        assert_eq!(parse_member_aggregate_id("acme"), None);
    }

    #[test]
    fn member_aggregate_ids_are_org_slash_uuid() {
        let id = Uuid::new_v4();
        let key = MemberKey::parse(&format!("acme/{id}")).unwrap();
        assert_eq!(key.org_id, "acme");
        assert_eq!(key.member_id, id);
        assert_eq!(key.aggregate_id(), format!("acme/{id}"));
        assert!(MemberKey::parse("acme").is_err());
        assert!(MemberKey::parse("acme/not-a-uuid").is_err());
        assert!(MemberKey::parse(&format!("/{id}")).is_err());
        assert_eq!(
            MemberKey::parse("acme").unwrap_err().to_string(),
            "member aggregate id 'acme' is not 'org/uuid'"
        );
    }
}
