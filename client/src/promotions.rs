//! Promotions (SPEC §9, §11): the program's campaigns, the earn cap, and the admin calls that
//! add, change and end one promotion (`/v1/orgs/{org}/promotions...`).

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::program::ProgramView;
use crate::{Client, Error};

/// One promotion of the program. Settings left `None` (or `false`/`0`) take the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promotion {
    pub promotion_id: String,
    pub name: String,
    pub starts_at: DateTime<Utc>,
    /// Excluded; `None`: no end.
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    #[serde(default, skip_serializing_if = "Conditions::is_empty")]
    pub conditions: Conditions,
    pub effect: Effect,
    #[serde(default)]
    pub stackable: bool,
    #[serde(default)]
    pub priority: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Limit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_points: Option<i64>,
}

impl Promotion {
    /// A promotion running from `starts_at` for ever, on every purchase, with `effect`.
    pub fn new(promotion_id: &str, name: &str, starts_at: DateTime<Utc>, effect: Effect) -> Self {
        Self {
            promotion_id: promotion_id.to_owned(),
            name: name.to_owned(),
            starts_at,
            ends_at: None,
            schedule: None,
            conditions: Conditions::default(),
            effect,
            stackable: false,
            priority: 0,
            limit: None,
            budget_points: None,
        }
    }
}

/// A weekly window in the program's time zone: on `days` (`mon` ... `sun`), from `from`
/// (included) to `to` (excluded), both `HH:MM`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub days: Vec<String>,
    pub from: String,
    pub to: String,
}

/// What a purchase must satisfy; every condition is optional and all must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conditions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_amount_minor: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_purchase: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inactive_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skus: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<String>>,
}

impl Conditions {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The extra points a promotion adds: `{"multiplier": {"multiplier_bps"}}`,
/// `{"bonus": {"points"}}` or `{"per_unit": {"points"}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Multiplier { multiplier_bps: u32 },
    Bonus { points: i64 },
    PerUnit { points: i64 },
}

/// At most `count` uses per member per `period` (`day`, `week`, `month` or `promotion`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    pub count: u32,
    pub period: String,
}

/// The most points a member earns from purchases per `period` (`day`, `week` or `month`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarnCap {
    pub points: i64,
    pub period: String,
}

/// The optional body of `POST .../promotions/{promotion_id}/end`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PromotionEnd {
    /// Default now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<DateTime<Utc>>,
}

impl Client {
    /// `POST /v1/orgs/{org}/promotions`: adds a promotion (answered 201 with the program).
    pub async fn add_promotion(
        &self,
        org: &str,
        idempotency_key: &str,
        promotion: &Promotion,
    ) -> Result<ProgramView, Error> {
        self.write(
            Method::POST,
            &["v1", "orgs", org, "promotions"],
            idempotency_key,
            promotion,
        )
        .await
    }

    /// `PUT /v1/orgs/{org}/promotions/{promotion_id}`: replaces the promotion of that id.
    pub async fn change_promotion(
        &self,
        org: &str,
        idempotency_key: &str,
        promotion: &Promotion,
    ) -> Result<ProgramView, Error> {
        self.write(
            Method::PUT,
            &["v1", "orgs", org, "promotions", &promotion.promotion_id],
            idempotency_key,
            promotion,
        )
        .await
    }

    /// `POST /v1/orgs/{org}/promotions/{promotion_id}/end`: ends the promotion at
    /// `end.ends_at` (now by default).
    pub async fn end_promotion(
        &self,
        org: &str,
        idempotency_key: &str,
        promotion_id: &str,
        end: &PromotionEnd,
    ) -> Result<ProgramView, Error> {
        self.write(
            Method::POST,
            &["v1", "orgs", org, "promotions", promotion_id, "end"],
            idempotency_key,
            end,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_promotion_reads_and_writes_the_names_of_the_contract() {
        let json = serde_json::json!({
            "promotion_id": "double-tuesday", "name": "Double points on Tuesday afternoons",
            "starts_at": "2026-01-01T00:00:00Z", "ends_at": null,
            "schedule": {"days": ["tue"], "from": "14:00", "to": "18:00"},
            "conditions": {"min_amount_minor": 1000, "location_ids": ["store-1"], "tiers": ["Gold"],
                           "first_purchase": true, "inactive_days": 60,
                           "skus": ["COF-1"], "categories": ["coffee"]},
            "effect": {"multiplier": {"multiplier_bps": 20000}},
            "stackable": false, "priority": 0,
            "limit": {"count": 1, "period": "day"},
            "budget_points": 1000000
        });
        let promotion: Promotion = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(
            promotion.effect,
            Effect::Multiplier {
                multiplier_bps: 20_000
            }
        );
        assert_eq!(promotion.conditions.inactive_days, Some(60));
        assert_eq!(serde_json::to_value(&promotion).unwrap(), json);

        let bonus = Promotion::new(
            "p",
            "P",
            "2026-01-01T00:00:00Z".parse().unwrap(),
            Effect::PerUnit { points: 5 },
        );
        assert_eq!(
            serde_json::to_value(&bonus).unwrap(),
            serde_json::json!({"promotion_id": "p", "name": "P", "starts_at": "2026-01-01T00:00:00Z",
                               "ends_at": null, "effect": {"per_unit": {"points": 5}},
                               "stackable": false, "priority": 0})
        );
    }
}
