//! The loyalty model, pure and synchronous in spirit: commands are decided and events applied
//! with no IO. Everything the rules need from the outside world (the program in force, the
//! clock, the reward's catalogue entry) travels inside the command, so a decision depends only
//! on the aggregate's history and the command.
//!
//! Two aggregates:
//! - [`program::Program`] — one per org: currency, earn rate, tier ladder, stamp cards, rewards
//!   catalogue, expiry policy, time zone, promotions, earn cap and registered locations. Every
//!   change bumps `program_version`.
//! - [`member::Member`] — one per member of an org: balance by expiry lots, purchases and their
//!   refunds, tier, stamp cards, redemptions and adjustments.
//!
//! Each aggregate is a module of one file per concept: `commands` (a struct per command),
//! `decide` (the rules, a pure `decide(&state, command) -> Result<Vec<Event>, Error>`),
//! `events`, `errors`, `state` (with how events fold into it), and `aggregate`, the cqrs-es
//! adapter plus `execute` (decide, then apply) for code that builds histories in memory.
//!
//! The points of a purchase (SPEC §9: tier points, promotions, the earn cap) are decided by
//! [`member::earn`], a pure function of the program, the purchase, the member's own history and
//! the budgets left; [`calendar`] is the program's local time (days, ISO weeks, months and
//! schedule clock times in its time zone).
//!
//! [`ledger::postings`] turns each member event into its balanced double-entry journal entry;
//! [`points::PointCounters`] are the balance and its running totals.
//!
//! Shared by every reader: [`codec`] decodes stored events (version check and upcasters),
//! [`ids::MemberKey`] names a member, [`rfm::segment`] is the RFM segment grid.

mod aggregate;
pub mod calendar;
pub mod codec;
pub mod ids;
pub mod ledger;
pub mod member;
pub mod money;
pub mod points;
pub mod program;
pub mod rfm;
pub mod simulation;
pub mod wire;

pub use ids::MemberKey;
pub use member::{Member, MemberCommand, MemberError, MemberEvent};
pub use points::PointCounters;
pub use program::{Program, ProgramCommand, ProgramConfig, ProgramError, ProgramEvent, ProgramSnapshot};
