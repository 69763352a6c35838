//! An org's program as configured by an admin: currency, earn rate, tier ladder, stamp cards,
//! rewards catalogue and expiry policy, with the validation that names the offending field; and
//! the snapshot of it that member commands carry.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::achievement::{self, Achievement};
use super::errors::ProgramError;
use super::promotion::{self, EarnCap, Known, Promotion};
use crate::calendar::TimeZone;
use crate::ids::check_business_id;
use crate::money::currency_digits;

/// Longest expiry, qualification window or downgrade grace period, in days (100 years).
pub const MAX_POLICY_DAYS: u32 = 36_500;

/// One rung of the tier ladder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub name: String,
    /// Qualifying points (earned by purchases in the rolling window) needed to hold the tier.
    pub threshold_points: i64,
    /// Earn multiplier in basis points: 10000 = 1.0×.
    pub multiplier_bps: u32,
}

/// A stamp card: one stamp per qualifying purchase, at most one per UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StampCardDef {
    pub card_id: String,
    pub name: String,
    pub stamps_required: u32,
    /// The reward issued when the card is full.
    pub reward_id: String,
    /// Smallest purchase (minor units, program currency) that earns a stamp.
    #[serde(default)]
    pub min_amount_minor: i64,
}

/// An entry of the rewards catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardDef {
    pub reward_id: String,
    pub name: String,
    pub points_cost: i64,
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}
fn default_expiry_days() -> Option<u32> {
    Some(365)
}
fn default_window_days() -> u32 {
    365
}
fn default_grace_days() -> u32 {
    30
}
fn default_earn_rate() -> i64 {
    1
}

/// The ladder of SPEC §3: Bronze 0 / 1.0×, Silver 500 / 1.25×, Gold 2000 / 1.5×,
/// Platinum 5000 / 2.0×.
pub fn default_tiers() -> Vec<Tier> {
    [
        ("Bronze", 0, 10_000),
        ("Silver", 500, 12_500),
        ("Gold", 2_000, 15_000),
        ("Platinum", 5_000, 20_000),
    ]
    .into_iter()
    .map(|(name, threshold_points, multiplier_bps)| Tier {
        name: name.to_owned(),
        threshold_points,
        multiplier_bps,
    })
    .collect()
}

/// An org's program as configured by an admin (`PUT /v1/orgs/{org}/program`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramConfig {
    /// ISO-4217 code; purchases in any other currency are refused.
    pub currency: String,
    /// Whole points per whole currency unit.
    #[serde(default = "default_earn_rate")]
    pub earn_rate: i64,
    #[serde(default = "default_tiers")]
    pub tiers: Vec<Tier>,
    #[serde(default)]
    pub stamp_cards: Vec<StampCardDef>,
    #[serde(default)]
    pub rewards: Vec<RewardDef>,
    /// Days after which earned points expire; absent = 365, `null` = never.
    #[serde(default = "default_expiry_days")]
    pub expiry_days: Option<u32>,
    /// Rolling window for tier qualification.
    #[serde(default = "default_window_days")]
    pub qualification_window_days: u32,
    /// Days below threshold before a re-evaluation may downgrade.
    #[serde(default = "default_grace_days")]
    pub downgrade_grace_days: u32,
    /// The IANA time zone of schedules, per-member limit periods and earn-cap periods.
    #[serde(default)]
    pub time_zone: TimeZone,
    /// The most points a member may earn from purchases in one local period.
    #[serde(default)]
    pub earn_cap: Option<EarnCap>,
    #[serde(default)]
    pub promotions: Vec<Promotion>,
    /// Badges and missions (SPEC §9): absent from programs configured before them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub achievements: Vec<Achievement>,
}

impl ProgramConfig {
    /// A program in `currency` with every other setting at its default.
    pub fn with_defaults(currency: &str) -> Self {
        ProgramConfig {
            currency: currency.to_owned(),
            earn_rate: default_earn_rate(),
            tiers: default_tiers(),
            stamp_cards: Vec::new(),
            rewards: Vec::new(),
            expiry_days: default_expiry_days(),
            qualification_window_days: default_window_days(),
            downgrade_grace_days: default_grace_days(),
            time_zone: TimeZone::UTC,
            earn_cap: None,
            promotions: Vec::new(),
            achievements: Vec::new(),
        }
    }

    /// Checks the whole configuration against the org's registered `locations` (which
    /// promotions may name); the error names the offending field.
    pub fn validate(&self, locations: &BTreeSet<String>) -> Result<(), ProgramError> {
        let invalid = |field: String, message: &str| ProgramError::InvalidConfig {
            field,
            message: message.to_owned(),
        };
        if currency_digits(&self.currency).is_none() {
            return Err(ProgramError::UnknownCurrency(self.currency.clone()));
        }
        if self.earn_rate <= 0 || self.earn_rate > 1_000_000 {
            return Err(invalid("earn_rate".into(), "must be between 1 and 1000000"));
        }
        if self.tiers.is_empty() {
            return Err(invalid("tiers".into(), "at least one tier is required"));
        }
        let mut names = BTreeSet::new();
        for (i, tier) in self.tiers.iter().enumerate() {
            let field = |f: &str| format!("tiers[{i}].{f}");
            if tier.name.trim().is_empty() || tier.name.chars().count() > 64 {
                return Err(invalid(field("name"), "must be 1 to 64 characters"));
            }
            if !names.insert(tier.name.as_str()) {
                return Err(invalid(field("name"), "tier names must be unique"));
            }
            if i == 0 && tier.threshold_points != 0 {
                return Err(invalid(
                    field("threshold_points"),
                    "the first tier must start at 0",
                ));
            }
            if i > 0 && tier.threshold_points <= self.tiers[i - 1].threshold_points {
                return Err(invalid(
                    field("threshold_points"),
                    "thresholds must be strictly increasing",
                ));
            }
            if tier.multiplier_bps == 0 || tier.multiplier_bps > 100_000 {
                return Err(invalid(field("multiplier_bps"), "must be between 1 and 100000"));
            }
        }
        let mut reward_ids = BTreeSet::new();
        for (i, reward) in self.rewards.iter().enumerate() {
            let field = |f: &str| format!("rewards[{i}].{f}");
            if check_business_id(&reward.reward_id).is_err() {
                return Err(invalid(
                    field("reward_id"),
                    "must be a non-empty id of at most 128 characters",
                ));
            }
            if !reward_ids.insert(reward.reward_id.as_str()) {
                return Err(invalid(field("reward_id"), "reward ids must be unique"));
            }
            if reward.name.trim().is_empty() {
                return Err(invalid(field("name"), "must not be empty"));
            }
            if reward.points_cost <= 0 {
                return Err(invalid(field("points_cost"), "must be greater than 0"));
            }
        }
        let mut card_ids = BTreeSet::new();
        for (i, card) in self.stamp_cards.iter().enumerate() {
            let field = |f: &str| format!("stamp_cards[{i}].{f}");
            if check_business_id(&card.card_id).is_err() {
                return Err(invalid(
                    field("card_id"),
                    "must be a non-empty id of at most 128 characters",
                ));
            }
            if !card_ids.insert(card.card_id.as_str()) {
                return Err(invalid(field("card_id"), "card ids must be unique"));
            }
            if card.name.trim().is_empty() {
                return Err(invalid(field("name"), "must not be empty"));
            }
            if card.stamps_required == 0 || card.stamps_required > 1_000 {
                return Err(invalid(field("stamps_required"), "must be between 1 and 1000"));
            }
            if !reward_ids.contains(card.reward_id.as_str()) {
                return Err(invalid(field("reward_id"), "must name a reward of the catalogue"));
            }
            if card.min_amount_minor < 0 {
                return Err(invalid(field("min_amount_minor"), "must not be negative"));
            }
        }
        // Bounded so that every date computed from them (expiry, window start, end of grace)
        // stays within the calendar.
        if self.expiry_days.is_some_and(|d| d == 0 || d > MAX_POLICY_DAYS) {
            return Err(invalid(
                "expiry_days".into(),
                "must be between 1 and 36500, or null for never",
            ));
        }
        if self.qualification_window_days == 0 || self.qualification_window_days > MAX_POLICY_DAYS {
            return Err(invalid(
                "qualification_window_days".into(),
                "must be between 1 and 36500",
            ));
        }
        if self.downgrade_grace_days > MAX_POLICY_DAYS {
            return Err(invalid("downgrade_grace_days".into(), "must be at most 36500"));
        }
        let tiers: BTreeSet<&str> = self.tiers.iter().map(|t| t.name.as_str()).collect();
        let known = Known {
            tiers: &tiers,
            locations,
        };
        promotion::validate(&self.promotions, self.earn_cap.as_ref(), &known)
            .and_then(|()| achievement::validate(&self.achievements))
            .map_err(|problem| ProgramError::InvalidConfig {
                field: problem.field,
                message: problem.message,
            })
    }

    pub fn achievement(&self, achievement_id: &str) -> Option<&Achievement> {
        self.achievements
            .iter()
            .find(|a| a.achievement_id == achievement_id)
    }

    /// The promotions with a budget for the whole org.
    pub fn budgeted_promotions(&self) -> impl Iterator<Item = &Promotion> {
        self.promotions.iter().filter(|p| p.budget_points.is_some())
    }

    pub fn promotion(&self, promotion_id: &str) -> Option<&Promotion> {
        self.promotions.iter().find(|p| p.promotion_id == promotion_id)
    }

    /// Minor-unit digits of the program currency (validated on configuration).
    pub fn currency_digits(&self) -> u32 {
        currency_digits(&self.currency).unwrap_or(2)
    }

    pub fn tier_index(&self, name: &str) -> Option<usize> {
        self.tiers.iter().position(|t| t.name == name)
    }

    /// The highest tier whose threshold `qualifying_points` reaches.
    pub fn tier_for(&self, qualifying_points: i64) -> usize {
        self.tiers
            .iter()
            .rposition(|t| t.threshold_points <= qualifying_points)
            .unwrap_or(0)
    }

    pub fn reward(&self, reward_id: &str) -> Option<&RewardDef> {
        self.rewards.iter().find(|r| r.reward_id == reward_id)
    }
}

/// The program in force, as passed inside member commands (an external fact for the member).
/// Shared, not copied: every command of a version carries the same program (a replay decides
/// hundreds of thousands of commands with one), so cloning a snapshot clones two pointers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramSnapshot {
    pub version: u64,
    pub config: Arc<ProgramConfig>,
    pub locations: Arc<BTreeSet<String>>,
}
