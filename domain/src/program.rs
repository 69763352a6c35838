//! The `Program` aggregate: one per org, versioned (SPEC §3). Every accepted change is an event
//! and bumps `program_version`; member events record the version they were computed with.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::ids::{check_business_id, is_slug};
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
        }
    }

    /// Checks the whole configuration; the error names the offending field.
    pub fn validate(&self) -> Result<(), ProgramError> {
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
        Ok(())
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramSnapshot {
    pub version: u64,
    pub config: ProgramConfig,
    pub locations: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgramCommand {
    Configure {
        org_id: String,
        config: ProgramConfig,
        at: DateTime<Utc>,
    },
    RegisterLocation {
        org_id: String,
        location_id: String,
        name: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProgramEvent {
    ProgramConfigured {
        org_id: String,
        version: u64,
        config: ProgramConfig,
        configured_at: DateTime<Utc>,
    },
    LocationRegistered {
        org_id: String,
        location_id: String,
        name: String,
        registered_at: DateTime<Utc>,
    },
}

impl DomainEvent for ProgramEvent {
    fn event_type(&self) -> String {
        self.type_name().to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl ProgramEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            ProgramEvent::ProgramConfigured { .. } => "ProgramConfigured",
            ProgramEvent::LocationRegistered { .. } => "LocationRegistered",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgramError {
    #[error("{field}: {message}")]
    InvalidConfig { field: String, message: String },
    #[error("currency: unknown ISO-4217 currency code '{0}'")]
    UnknownCurrency(String),
    #[error("org_id: '{0}' is not a valid org id ([a-z0-9][a-z0-9-]{{0,62}})")]
    InvalidOrgId(String),
    #[error("location_id: '{0}' is not a valid location id ([a-z0-9][a-z0-9-]{{0,62}})")]
    InvalidLocationId(String),
    #[error("name: must be 1 to 200 characters")]
    InvalidLocationName,
    #[error("location_id: location '{0}' is already registered")]
    LocationAlreadyRegistered(String),
    #[error("org_id: this program belongs to org '{expected}', not '{got}'")]
    WrongOrg { expected: String, got: String },
}

impl ProgramError {
    /// A stable machine-readable code for API errors.
    pub fn code(&self) -> &'static str {
        match self {
            ProgramError::InvalidConfig { .. } => "invalid_program",
            ProgramError::UnknownCurrency(_) => "unknown_currency",
            ProgramError::InvalidOrgId(_) => "invalid_org_id",
            ProgramError::InvalidLocationId(_) => "invalid_location_id",
            ProgramError::InvalidLocationName => "invalid_location_name",
            ProgramError::LocationAlreadyRegistered(_) => "location_exists",
            ProgramError::WrongOrg { .. } => "wrong_org",
        }
    }

    /// The request field the error is about.
    pub fn field(&self) -> Option<String> {
        match self {
            ProgramError::InvalidConfig { field, .. } => Some(field.clone()),
            ProgramError::UnknownCurrency(_) => Some("currency".into()),
            ProgramError::InvalidOrgId(_) | ProgramError::WrongOrg { .. } => Some("org_id".into()),
            ProgramError::InvalidLocationId(_) | ProgramError::LocationAlreadyRegistered(_) => {
                Some("location_id".into())
            }
            ProgramError::InvalidLocationName => Some("name".into()),
        }
    }
}

/// An org's program and locations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    pub org_id: Option<String>,
    pub version: u64,
    pub config: Option<ProgramConfig>,
    /// location_id → name
    pub locations: BTreeMap<String, String>,
}

impl Program {
    /// The program in force, for member commands; `None` until configured.
    pub fn snapshot(&self) -> Option<ProgramSnapshot> {
        Some(ProgramSnapshot {
            version: self.version,
            config: self.config.clone()?,
            locations: self.locations.keys().cloned().collect(),
        })
    }

    fn check_org(&self, org_id: &str) -> Result<(), ProgramError> {
        if !is_slug(org_id) {
            return Err(ProgramError::InvalidOrgId(org_id.to_owned()));
        }
        match &self.org_id {
            Some(expected) if expected != org_id => Err(ProgramError::WrongOrg {
                expected: expected.clone(),
                got: org_id.to_owned(),
            }),
            _ => Ok(()),
        }
    }
}

impl Aggregate for Program {
    const TYPE: &'static str = "program";
    type Command = ProgramCommand;
    type Event = ProgramEvent;
    type Error = ProgramError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _service: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            ProgramCommand::Configure { org_id, config, at } => {
                self.check_org(&org_id)?;
                config.validate()?;
                // Re-sending the program in force is not a change: no new version.
                if self.config.as_ref() == Some(&config) {
                    return Ok(());
                }
                let event = ProgramEvent::ProgramConfigured {
                    org_id,
                    version: self.version + 1,
                    config,
                    configured_at: at,
                };
                sink.write(event, self).await;
            }
            ProgramCommand::RegisterLocation {
                org_id,
                location_id,
                name,
                at,
            } => {
                self.check_org(&org_id)?;
                if !is_slug(&location_id) {
                    return Err(ProgramError::InvalidLocationId(location_id));
                }
                let name = name.trim().to_owned();
                if name.is_empty() || name.chars().count() > 200 {
                    return Err(ProgramError::InvalidLocationName);
                }
                match self.locations.get(&location_id) {
                    Some(existing) if *existing == name => return Ok(()),
                    Some(_) => return Err(ProgramError::LocationAlreadyRegistered(location_id)),
                    None => {}
                }
                let event = ProgramEvent::LocationRegistered {
                    org_id,
                    location_id,
                    name,
                    registered_at: at,
                };
                sink.write(event, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ProgramEvent::ProgramConfigured {
                org_id,
                version,
                config,
                ..
            } => {
                self.org_id = Some(org_id);
                self.version = version;
                self.config = Some(config);
            }
            ProgramEvent::LocationRegistered {
                org_id,
                location_id,
                name,
                ..
            } => {
                self.org_id = Some(org_id);
                self.locations.insert(location_id, name);
            }
        }
    }
}
