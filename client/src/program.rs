//! The program and its locations (admin keys): `PUT`/`GET /v1/orgs/{org}/program`,
//! `POST /v1/orgs/{org}/locations`.

use reqwest::Method;
use serde::{Deserialize, Deserializer, Serialize};

use crate::members::Event;
use crate::promotions::{EarnCap, Promotion};
use crate::{Client, Error};

/// An org's program, as sent to `PUT /v1/orgs/{org}/program` and read back. Settings left
/// `None` take the service's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    /// ISO-4217 code; purchases in any other currency are refused.
    pub currency: String,
    /// Whole points per whole currency unit (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earn_rate: Option<i64>,
    /// Ordered tier ladder, the first starting at 0 (default Bronze/Silver/Gold/Platinum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiers: Option<Vec<Tier>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stamp_cards: Vec<StampCard>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rewards: Vec<Reward>,
    /// Days after which earned points expire: `None` = the default (365), `Some(None)` =
    /// never (sent as `null`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub expiry_days: Option<Option<u32>>,
    /// Rolling window of tier qualification, in days (default 365).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualification_window_days: Option<u32>,
    /// Days below threshold before a re-evaluation may downgrade (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downgrade_grace_days: Option<u32>,
    /// IANA time zone of schedules, limit and cap periods (default `UTC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// The most points a member earns from purchases per local period (default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earn_cap: Option<EarnCap>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub promotions: Vec<Promotion>,
}

/// A field that is present (even as `null`) is `Some`; serde's default makes an absent one `None`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

impl Program {
    /// A program in `currency` with every other setting at the service's default.
    pub fn new(currency: &str) -> Self {
        Self {
            currency: currency.to_owned(),
            earn_rate: None,
            tiers: None,
            stamp_cards: Vec::new(),
            rewards: Vec::new(),
            expiry_days: None,
            qualification_window_days: None,
            downgrade_grace_days: None,
            time_zone: None,
            earn_cap: None,
            promotions: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    pub name: String,
    pub threshold_points: i64,
    /// 10000 = 1.0×.
    pub multiplier_bps: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StampCard {
    pub card_id: String,
    pub name: String,
    pub stamps_required: u32,
    pub reward_id: String,
    /// Smallest purchase that earns a stamp (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_amount_minor: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reward {
    pub reward_id: String,
    pub name: String,
    pub points_cost: i64,
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
}

/// A store location: the body of `POST /v1/orgs/{org}/locations`, and an entry of
/// [`ProgramView::locations`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// Slug `[a-z0-9][a-z0-9-]{0,62}`, unique per org.
    pub location_id: String,
    pub name: String,
}

/// The answer to a program change.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ProgramWrite {
    pub org_id: String,
    /// The program version in force after the change (0: never configured).
    pub program_version: u64,
    /// The events appended (empty when nothing changed).
    pub events: Vec<Event>,
}

/// An org's program as configured, and its locations.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ProgramView {
    pub org_id: String,
    pub version: u64,
    /// `None` until configured.
    pub config: Option<Program>,
    pub locations: Vec<Location>,
}

impl Client {
    /// `PUT /v1/orgs/{org}/program`: configures (or changes) the program.
    pub async fn configure_program(
        &self,
        org: &str,
        idempotency_key: &str,
        program: &Program,
    ) -> Result<ProgramWrite, Error> {
        self.write(
            Method::PUT,
            &["v1", "orgs", org, "program"],
            idempotency_key,
            program,
        )
        .await
    }

    /// `GET /v1/orgs/{org}/program`.
    pub async fn program(&self, org: &str) -> Result<ProgramView, Error> {
        self.get(&["v1", "orgs", org, "program"]).await
    }

    /// `POST /v1/orgs/{org}/locations`: registers a store location.
    pub async fn register_location(
        &self,
        org: &str,
        idempotency_key: &str,
        location: &Location,
    ) -> Result<ProgramWrite, Error> {
        self.write(
            Method::POST,
            &["v1", "orgs", org, "locations"],
            idempotency_key,
            location,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_stay_off_the_wire_and_never_expiring_is_null() {
        let mut program = Program::new("EUR");
        assert_eq!(
            serde_json::to_value(&program).unwrap(),
            serde_json::json!({"currency": "EUR"})
        );
        program.expiry_days = Some(None);
        assert_eq!(
            serde_json::to_value(&program).unwrap(),
            serde_json::json!({"currency": "EUR", "expiry_days": null})
        );
        let read: Program =
            serde_json::from_value(serde_json::json!({"currency": "EUR", "expiry_days": null})).unwrap();
        assert_eq!(read.expiry_days, Some(None));
        let read: Program = serde_json::from_value(serde_json::json!({"currency": "EUR"})).unwrap();
        assert_eq!(read.expiry_days, None);
    }
}
