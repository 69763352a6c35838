//! The `Program` aggregate: one per org, versioned (SPEC §3). Every accepted change is an event
//! and bumps `program_version`; member events record the version they were computed with.
//!
//! [`config`] is the program an admin configures (and the snapshot member commands carry);
//! [`promotion`] its promotions and earn cap (SPEC §9) with their validation; one promotion is
//! added, changed or ended by a command of its own, decided against the program in force;
//! [`achievement`] its badges and missions;
//! [`commands`], [`decide()`], [`events`], [`errors`] and [`state`] as for the member.

pub mod achievement;
mod aggregate;
pub mod commands;
pub mod config;
mod decide;
pub mod errors;
pub mod events;
pub mod promotion;
pub mod state;

pub use achievement::{Achievement, Criteria};
pub use commands::{Configuration, NewLocation, ProgramCommand, PromotionEdit, PromotionEnd};
pub use config::{
    default_tiers, ProgramConfig, ProgramSnapshot, RewardDef, StampCardDef, Tier, MAX_POLICY_DAYS,
};
pub use decide::decide;
pub use errors::ProgramError;
pub use events::ProgramEvent;
pub use promotion::{Conditions, EarnCap, Effect, Limit, LimitPeriod, Promotion, Schedule};
pub use state::Program;
