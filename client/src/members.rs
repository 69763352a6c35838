//! Members and their points: enrol, read, purchases, refunds, redemptions, adjustments (admin).
//! Every member endpoint takes the member by id or by external id ([`MemberRef`]).

use chrono::{DateTime, NaiveDate, Utc};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::{Client, Error, RawResponse};

/// Which member: `/members/{member_id}/...` or `/members/by-external-id/{external_id}/...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberRef<'a> {
    Id(Uuid),
    /// The POS customer id or card number.
    External(&'a str),
}

impl MemberRef<'_> {
    /// The path segments of this member's endpoint `action` (its own URL when `None`).
    fn path(&self, org: &str, action: Option<&str>) -> Vec<String> {
        let mut path: Vec<String> = ["v1", "orgs", org, "members"].map(str::to_owned).into();
        match self {
            MemberRef::Id(id) => path.push(id.to_string()),
            MemberRef::External(external) => {
                path.extend(["by-external-id".to_owned(), (*external).to_owned()])
            }
        }
        path.extend(action.map(str::to_owned));
        path
    }
}

/// The body of `POST /v1/orgs/{org}/members`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Enrolment {
    /// The member id to use; by default the service derives one from the `Idempotency-Key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_id: Option<Uuid>,
    /// The POS customer id or card number, unique per org.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Shown on leaderboards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// The body of `POST .../purchases`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Purchase {
    /// The POS transaction (receipt) id, unique per org: sending it again is the same purchase.
    pub transaction_id: String,
    pub location_id: String,
    /// In minor units of `currency` (cents).
    pub amount_minor: i64,
    /// ISO-4217; must be the program's currency.
    pub currency: String,
    /// When the purchase happened (the receipt's time).
    pub occurred_at: DateTime<Utc>,
    /// The basket: lines whose `amount_minor` sum to the purchase's (`None`: one line without
    /// sku or category).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<Item>>,
}

/// A basket line of a purchase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    pub quantity: u32,
    pub amount_minor: i64,
}

/// Why a purchase earns what it earns (SPEC §9): every value is what is awarded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Breakdown {
    pub base: i64,
    /// The base at the member's tier multiplier, after the cap's cut.
    pub tier_points: i64,
    /// Each applied promotion's points, after the cap's cut.
    pub promotions: Vec<PromotionPoints>,
    /// How many points the earn cap cut.
    pub cap_cut: i64,
    pub total: i64,
}

impl Breakdown {
    /// The points promotion `promotion_id` added (0 when it did not apply).
    pub fn promotion_points(&self, promotion_id: &str) -> i64 {
        self.promotions
            .iter()
            .filter(|applied| applied.promotion_id == promotion_id)
            .map(|applied| applied.points)
            .sum()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PromotionPoints {
    pub promotion_id: String,
    pub points: i64,
    /// What is left of the promotion's budget after the purchase (budgeted promotions only).
    #[serde(default)]
    pub budget_left: Option<i64>,
}

/// The answer to a quote: the points a purchase would earn now, and why.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Quote {
    pub points: i64,
    pub breakdown: Breakdown,
}

/// The body of `POST .../refunds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refund {
    pub refund_id: String,
    /// The purchase refunded.
    pub transaction_id: String,
    pub amount_minor: i64,
}

/// The body of `POST .../redemptions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Redemption {
    pub redemption_id: String,
    pub reward_id: String,
}

/// The body of `POST .../adjustments` (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Adjustment {
    pub adjustment_id: String,
    /// Points to add (positive) or remove (negative).
    pub delta: i64,
    /// Why, for the audit trail.
    pub reason: String,
}

/// An event appended by a write.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Event {
    /// Stable type name, e.g. `PurchaseRecorded`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Version of the event's schema.
    pub version: String,
    /// Sequence number of the event in its aggregate.
    pub sequence: u64,
    /// The event's fields.
    pub payload: Value,
}

/// The answer to every member write: `{"member_id", "events", "balance"}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MemberWrite {
    pub member_id: Uuid,
    /// The events this request appended (empty when it changed nothing).
    pub events: Vec<Event>,
    /// The member's points balance after the command.
    pub balance: i64,
    /// Purchases: why the purchase earned what it earned.
    #[serde(default)]
    pub breakdown: Option<Breakdown>,
}

impl MemberWrite {
    /// The highest sequence among the appended events.
    pub fn last_sequence(&self) -> Option<u64> {
        self.events.iter().map(|event| event.sequence).max()
    }
}

/// A member's account as the command side sees it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MemberView {
    pub member_id: Uuid,
    pub org_id: String,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    pub enrolled_at: DateTime<Utc>,
    pub balance: i64,
    pub lifetime_earned: i64,
    pub redeemed: i64,
    pub expired: i64,
    pub clawed_back: i64,
    pub adjusted: i64,
    pub tier: TierView,
    pub next_expiry: Option<ExpiryView>,
    pub stamp_cards: Vec<StampCardView>,
    /// The sequence number of the member's last event.
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TierView {
    pub name: String,
    pub multiplier_bps: u32,
    /// When a pending downgrade may happen, if the member is in a grace period.
    pub downgrade_after: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ExpiryView {
    pub points: i64,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StampCardView {
    pub card_id: String,
    pub stamps: u32,
    pub completed: u32,
    pub last_stamp_day: Option<NaiveDate>,
}

impl Client {
    /// `POST /v1/orgs/{org}/members`: enrols a member (answered 201).
    pub async fn enroll(
        &self,
        org: &str,
        idempotency_key: &str,
        enrolment: &Enrolment,
    ) -> Result<MemberWrite, Error> {
        self.write(
            Method::POST,
            &["v1", "orgs", org, "members"],
            idempotency_key,
            enrolment,
        )
        .await
    }

    /// `GET /v1/orgs/{org}/members/{member_id}` or `.../by-external-id/{external_id}`.
    pub async fn member(&self, org: &str, member: MemberRef<'_>) -> Result<MemberView, Error> {
        self.get(&member.path(org, None)).await
    }

    /// `POST .../purchases`.
    pub async fn record_purchase(
        &self,
        org: &str,
        member: MemberRef<'_>,
        idempotency_key: &str,
        purchase: &Purchase,
    ) -> Result<MemberWrite, Error> {
        self.member_write(org, member, "purchases", idempotency_key, purchase)
            .await
    }

    /// `POST .../purchase-quotes`: the points `purchase` would earn the member now; records
    /// nothing (a read: no `Idempotency-Key`).
    pub async fn quote_purchase(
        &self,
        org: &str,
        member: MemberRef<'_>,
        purchase: &Purchase,
    ) -> Result<Quote, Error> {
        let request = self
            .request(
                Method::POST,
                self.url(&member.path(org, Some("purchase-quotes")))?,
                None,
            )
            .json(purchase);
        RawResponse::read(request.send().await?).await?.into_typed()
    }

    /// `POST .../refunds`.
    pub async fn refund_purchase(
        &self,
        org: &str,
        member: MemberRef<'_>,
        idempotency_key: &str,
        refund: &Refund,
    ) -> Result<MemberWrite, Error> {
        self.member_write(org, member, "refunds", idempotency_key, refund)
            .await
    }

    /// `POST .../redemptions`.
    pub async fn redeem_reward(
        &self,
        org: &str,
        member: MemberRef<'_>,
        idempotency_key: &str,
        redemption: &Redemption,
    ) -> Result<MemberWrite, Error> {
        self.member_write(org, member, "redemptions", idempotency_key, redemption)
            .await
    }

    /// `POST .../adjustments` (admin).
    pub async fn adjust_points(
        &self,
        org: &str,
        member: MemberRef<'_>,
        idempotency_key: &str,
        adjustment: &Adjustment,
    ) -> Result<MemberWrite, Error> {
        self.member_write(org, member, "adjustments", idempotency_key, adjustment)
            .await
    }

    async fn member_write(
        &self,
        org: &str,
        member: MemberRef<'_>,
        action: &str,
        idempotency_key: &str,
        body: &impl Serialize,
    ) -> Result<MemberWrite, Error> {
        self.write(
            Method::POST,
            &member.path(org, Some(action)),
            idempotency_key,
            body,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_addressed_by_id_or_external_id() {
        let id = Uuid::from_u128(7);
        assert_eq!(
            MemberRef::Id(id).path("acme", Some("purchases")),
            ["v1", "orgs", "acme", "members", &id.to_string(), "purchases"]
        );
        assert_eq!(
            MemberRef::External("card 1").path("acme", None),
            ["v1", "orgs", "acme", "members", "by-external-id", "card 1"]
        );
    }

    #[test]
    fn last_sequence_reads_the_write_reply() {
        let answer: MemberWrite = serde_json::from_value(serde_json::json!({
            "member_id": Uuid::nil(), "balance": 5,
            "events": [
                {"type": "PurchaseRecorded", "version": "1", "sequence": 7, "payload": {"points_earned": 5}},
                {"type": "StampCollected", "version": "1", "sequence": 8, "payload": {}}
            ]
        }))
        .unwrap();
        assert_eq!(answer.last_sequence(), Some(8));
        assert_eq!(answer.breakdown, None);
        assert_eq!(answer.events[0].event_type, "PurchaseRecorded");
        let nothing_new = MemberWrite {
            events: Vec::new(),
            ..answer
        };
        assert_eq!(nothing_new.last_sequence(), None);
    }

    #[test]
    fn a_purchase_answer_carries_its_breakdown() {
        let answer: MemberWrite = serde_json::from_value(serde_json::json!({
            "member_id": Uuid::nil(), "balance": 27, "events": [],
            "breakdown": {"base": 10, "tier_points": 10, "cap_cut": 0, "total": 27,
                          "promotions": [{"promotion_id": "b", "points": 7, "budget_left": 3},
                                         {"promotion_id": "x2", "points": 10}]}
        }))
        .unwrap();
        let breakdown = answer.breakdown.unwrap();
        assert_eq!(breakdown.promotion_points("b"), 7);
        assert_eq!(breakdown.promotion_points("x2"), 10);
        assert_eq!(breakdown.promotion_points("other"), 0);
        assert_eq!(breakdown.promotions[0].budget_left, Some(3));
    }

    #[test]
    fn items_stay_off_the_wire_unless_given() {
        let mut purchase = Purchase {
            transaction_id: "T".into(),
            location_id: "s".into(),
            amount_minor: 100,
            currency: "EUR".into(),
            occurred_at: "2026-01-01T00:00:00Z".parse().unwrap(),
            items: None,
        };
        assert!(serde_json::to_value(&purchase).unwrap().get("items").is_none());
        purchase.items = Some(vec![Item {
            sku: Some("COF-1".into()),
            category: None,
            quantity: 2,
            amount_minor: 100,
        }]);
        assert_eq!(
            serde_json::to_value(&purchase).unwrap()["items"],
            serde_json::json!([{"sku": "COF-1", "quantity": 2, "amount_minor": 100}])
        );
    }
}
