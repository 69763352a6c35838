//! The bounds a member command's input must respect.

use chrono::Duration;

/// Largest purchase or refund amount accepted, in minor units (one billion major units).
pub const MAX_AMOUNT_MINOR: i64 = 100_000_000_000;
/// Largest single admin adjustment, in points.
pub const MAX_ADJUSTMENT: i64 = 1_000_000_000;
/// How far ahead of the server clock a terminal's `occurred_at` may be (clock skew).
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);
/// Longest display name and adjustment reason.
pub const MAX_DISPLAY_NAME: usize = 64;
pub const MAX_REASON: usize = 500;
/// Most basket lines one purchase may carry.
pub const MAX_ITEMS: usize = 500;
/// Longest sku or category of a basket line.
pub const MAX_ITEM_NAME: usize = 128;
