//! Fixtures of the promotion tests: promotions written as the JSON a marketer sends (SPEC §11),
//! and a shop where one enrolled member buys under a program with promotions, through the
//! `Member` aggregate (command in, events out).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use domain::member::earn::{Breakdown, Line};
use domain::member::{Member, MemberCommand, MemberError, MemberEvent, NewMember, Purchase, Receipt};
use domain::program::{ProgramSnapshot, Promotion};
use serde_json::{json, Value};

use super::{config, member_id, snapshot, ORG, STORE};

pub fn utc(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// A promotion `p` named "P" from 2026-01-01 giving a bonus of 10 points, with the fields of
/// `fields` in place of the defaults.
pub fn promo(fields: Value) -> Promotion {
    let mut promotion = json!({"promotion_id": "p", "name": "P", "starts_at": "2026-01-01T00:00:00Z",
                               "effect": {"bonus": {"points": 10}}});
    for (k, v) in fields.as_object().unwrap() {
        promotion[k] = v.clone();
    }
    serde_json::from_value(promotion).unwrap()
}

/// A basket line.
pub fn line(sku: &str, category: &str, quantity: u32, amount_minor: i64) -> Line {
    Line {
        sku: Some(sku.into()),
        category: Some(category.into()),
        quantity,
        amount_minor,
    }
}

/// The applied promotions of a breakdown with their points.
pub fn applied(breakdown: &Breakdown) -> Vec<(&str, i64)> {
    breakdown
        .promotions
        .iter()
        .map(|p| (p.promotion_id.as_str(), p.points))
        .collect()
}

/// One member (enrolled 2025-12-01, Bronze) of the default program in EUR without stamp cards,
/// with `promotions`; the budgets the command service would read are set with [`Shop::budget`].
#[derive(Debug, Clone)]
pub struct Shop {
    pub program: ProgramSnapshot,
    pub member: Member,
    pub budgets: BTreeMap<String, i64>,
}

impl Shop {
    pub fn new(promotions: Vec<Promotion>) -> Shop {
        let mut config = config();
        config.stamp_cards.clear();
        config.promotions = promotions;
        let mut program = snapshot(config);
        Arc::make_mut(&mut program.locations).insert("store-2".into());
        let mut member = Member::default();
        member
            .execute(MemberCommand::Enroll(NewMember {
                org_id: ORG.into(),
                member_id: member_id(),
                external_id: None,
                display_name: None,
                program: program.clone(),
                at: utc("2025-12-01T00:00:00Z"),
            }))
            .unwrap();
        Shop {
            program,
            member,
            budgets: BTreeMap::new(),
        }
    }

    /// The program's time zone.
    pub fn in_zone(mut self, time_zone: &str) -> Self {
        Arc::make_mut(&mut self.program.config).time_zone = time_zone.parse().unwrap();
        self
    }

    pub fn cap(mut self, points: i64, period: &str) -> Self {
        Arc::make_mut(&mut self.program.config).earn_cap =
            Some(serde_json::from_value(json!({"points": points, "period": period})).unwrap());
        self
    }

    /// What is left of a budgeted promotion's budget.
    pub fn budget(mut self, promotion_id: &str, left: i64) -> Self {
        self.budgets.insert(promotion_id.into(), left);
        self
    }

    /// A purchase command at `location` with `items` (`None`: a purchase without lines).
    pub fn purchase_at(
        &self,
        txn: &str,
        amount_minor: i64,
        at: &str,
        location: &str,
        items: Option<Vec<Line>>,
    ) -> MemberCommand {
        MemberCommand::RecordPurchase(self.purchase_body(txn, amount_minor, at, location, items))
    }

    pub fn purchase_body(
        &self,
        txn: &str,
        amount_minor: i64,
        at: &str,
        location: &str,
        items: Option<Vec<Line>>,
    ) -> Purchase {
        Purchase {
            receipt: Receipt {
                transaction_id: txn.into(),
                location_id: location.into(),
                amount_minor,
                currency: "EUR".into(),
                occurred_at: utc(at),
                items,
            },
            program: self.program.clone(),
            recorded_at: utc(at),
            budgets_left: self.budgets.clone(),
        }
    }

    /// Records the purchase and returns the events it appended.
    pub fn record(&mut self, command: MemberCommand) -> Result<Vec<MemberEvent>, MemberError> {
        self.member.execute(command)
    }

    /// Records a purchase at the store without lines; its breakdown.
    pub fn buy(&mut self, txn: &str, amount_minor: i64, at: &str) -> Breakdown {
        self.buy_at(txn, amount_minor, at, STORE, None)
    }

    /// Records a purchase and returns its breakdown, checking that what the event says it
    /// earned is the breakdown's total and that the quote asked just before said the same.
    pub fn buy_at(
        &mut self,
        txn: &str,
        amount_minor: i64,
        at: &str,
        location: &str,
        items: Option<Vec<Line>>,
    ) -> Breakdown {
        let body = self.purchase_body(txn, amount_minor, at, location, items);
        let quoted = self.member.quote(&body).unwrap();
        let events = self.record(MemberCommand::RecordPurchase(body)).unwrap();
        let Some(MemberEvent::PurchaseRecorded {
            points_earned,
            breakdown,
            ..
        }) = events.into_iter().next()
        else {
            panic!("purchase {txn} recorded no PurchaseRecorded event first");
        };
        assert_eq!(
            points_earned, breakdown.total,
            "points_earned is the breakdown's total"
        );
        assert_eq!(quoted, breakdown, "the quote is what the purchase then earned");
        breakdown
    }

    /// The breakdown a purchase at the store would earn now (nothing recorded).
    pub fn quote(&self, amount_minor: i64, at: &str) -> Breakdown {
        self.quote_at(amount_minor, at, STORE, None)
    }

    pub fn quote_at(
        &self,
        amount_minor: i64,
        at: &str,
        location: &str,
        items: Option<Vec<Line>>,
    ) -> Breakdown {
        self.member
            .quote(&self.purchase_body("quote", amount_minor, at, location, items))
            .unwrap()
    }
}
