//! The member as a cqrs-es aggregate: a thin adapter over [`decide`] and [`Member::evolve`].

use super::commands::MemberCommand;
use super::decide::decide;
use super::errors::MemberError;
use super::events::MemberEvent;
use super::state::Member;
use crate::aggregate::decided_aggregate;

decided_aggregate!(Member, "member", MemberCommand, MemberEvent, MemberError, decide);
