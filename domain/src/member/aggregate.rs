//! The member as a cqrs-es aggregate: a thin adapter over [`decide`] and [`Member::evolve`].

use super::commands::{MemberCommand, Purchase};
use super::decide::{decide, quote};
use super::earn::Breakdown;
use super::errors::MemberError;
use super::events::MemberEvent;
use super::state::Member;
use crate::aggregate::decided_aggregate;

decided_aggregate!(Member, "member", MemberCommand, MemberEvent, MemberError, decide);

impl Member {
    /// The points `purchase` would earn now and why (SPEC §9 "Points quote"): the same checks
    /// and the same decision as recording it, with no event. A quote does not ask whether the
    /// transaction was already recorded.
    pub fn quote(&self, purchase: &Purchase) -> Result<Breakdown, MemberError> {
        quote(self, purchase)
    }
}
