//! The `Member` aggregate: one member of one org (SPEC §3, §4).
//!
//! - [`commands`]: what can be asked of a member, with the outside facts its decision needs;
//! - [`decide()`]: the rules, pure and synchronous — a command's events or the rule it breaks;
//! - [`achievements`]: progress toward badges and their unlocks (SPEC §9);
//! - [`earn`]: the points of a purchase (SPEC §9), shared by purchases, quotes and readers;
//! - [`events`]: what happened (the wire schema);
//! - [`lots`]: the points behind the balance, in the order debits and expiry take them;
//! - [`errors`]: why a command is refused;
//! - [`state`] and `evolve`: the member as rebuilt from its events;
//! - `aggregate`: the cqrs-es adapter and [`Member::execute`] (decide, then apply).

pub mod achievements;
mod aggregate;
pub mod commands;
mod decide;
pub mod earn;
pub mod errors;
pub mod events;
mod evolve;
pub mod limits;
pub mod lots;
pub mod qualifying;
pub mod state;

pub use commands::{
    Adjustment, Expiry, MemberCommand, NewMember, Purchase, Receipt, Redemption, Refund, TierReview,
};
pub use decide::decide;
pub use errors::MemberError;
pub use events::MemberEvent;
pub use limits::{
    MAX_ADJUSTMENT, MAX_AMOUNT_MINOR, MAX_CLOCK_SKEW, MAX_DISPLAY_NAME, MAX_ITEMS, MAX_ITEM_NAME, MAX_REASON,
};
pub use lots::{takes_from_lots, Lot, LotKey, Lots, Take};
pub use state::{CardProgress, Enrolment, Grace, Member, PurchaseRecord, RefundRecord, TierState};
