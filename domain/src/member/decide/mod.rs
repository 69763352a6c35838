//! The member's rules: `decide(member, command)` is pure and synchronous. It returns the events
//! the command appends (none for a duplicate the member already has) or the rule it breaks;
//! every check is made before any event is produced, so a command appends all of its events or
//! nothing.

mod checks;
mod enrol;
mod items;
mod points;
mod purchase;
mod refund;
mod tier;

pub(crate) use purchase::quote;

use super::commands::MemberCommand;
use super::errors::MemberError;
use super::events::MemberEvent;
use super::state::Member;

/// The events `command` appends to `member`'s history, or why it is refused.
pub fn decide(member: &Member, command: MemberCommand) -> Result<Vec<MemberEvent>, MemberError> {
    match command {
        MemberCommand::Enroll(command) => enrol::enroll(member, command),
        MemberCommand::RecordPurchase(command) => purchase::record_purchase(member, command),
        MemberCommand::RefundPurchase(command) => refund::refund_purchase(member, command),
        MemberCommand::RedeemReward(command) => points::redeem_reward(member, command),
        MemberCommand::AdjustPoints(command) => points::adjust_points(member, command),
        MemberCommand::ExpirePoints(command) => points::expire_points(member, command),
        MemberCommand::ReevaluateTier(command) => tier::reevaluate_tier(member, command),
    }
}
