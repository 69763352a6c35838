//! The typed command-API client (`loyalty-client`) against the real command service: every
//! typed call reads the service's answer into its type, and a refusal comes back as the API's
//! own error (status, code, field). The wire format itself is checked by `command_api.rs`.

use chrono::{Duration, Utc};
use loyalty_client::{
    Adjustment, Enrolment, Error, JobRequest, Location, MemberRef, Program, Purchase, Redemption, Refund,
    Reward, StampCard,
};
use loyalty_tests::{spawn_command_service, OrgKeys, TestDb, TestNats};
use uuid::Uuid;

const ORG: &str = "acme";

fn program() -> Program {
    Program {
        earn_rate: Some(1),
        rewards: vec![Reward {
            reward_id: "coffee".into(),
            name: "Coffee".into(),
            points_cost: 50,
            active: None,
        }],
        stamp_cards: vec![StampCard {
            card_id: "coffee-card".into(),
            name: "Coffee card".into(),
            stamps_required: 3,
            reward_id: "coffee".into(),
            min_amount_minor: Some(500),
        }],
        expiry_days: Some(Some(365)),
        ..Program::new("EUR")
    }
}

fn purchase(transaction_id: &str, amount_minor: i64) -> Purchase {
    Purchase {
        transaction_id: transaction_id.into(),
        location_id: "store-1".into(),
        amount_minor,
        currency: "EUR".into(),
        occurred_at: Utc::now() - Duration::seconds(1),
        items: None,
    }
}

#[tokio::test]
async fn every_typed_call_reads_its_answer_and_refusals_are_typed() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let service = spawn_command_service(&db, &nats).await;
    let keys = OrgKeys::create(&db, ORG).await;
    let admin = service.client(&keys.admin).typed().clone();
    let pos = service.client(&keys.pos).typed().clone();

    let configured = admin.configure_program(ORG, "program", &program()).await.unwrap();
    assert_eq!((configured.org_id.as_str(), configured.program_version), (ORG, 1));
    let location = Location {
        location_id: "store-1".into(),
        name: "Store 1".into(),
    };
    admin.register_location(ORG, "location", &location).await.unwrap();
    let read = pos.program(ORG).await.unwrap();
    assert_eq!(read.locations, [location]);
    let config = read.config.expect("configured");
    assert_eq!((config.earn_rate, config.rewards.len()), (Some(1), 1));

    let member_id = Uuid::new_v4();
    let enrolment = Enrolment {
        member_id: Some(member_id),
        external_id: Some("card 1/2".into()),
        display_name: Some("Ann".into()),
    };
    let enrolled = pos.enroll(ORG, "enrol", &enrolment).await.unwrap();
    assert_eq!((enrolled.member_id, enrolled.balance), (member_id, 0));
    assert_eq!(enrolled.events[0].event_type, "MemberEnrolled");

    // By id and by external id (a free-text id, escaped in the path).
    let by_id = MemberRef::Id(member_id);
    let by_card = MemberRef::External("card 1/2");
    let bought = pos
        .record_purchase(ORG, by_id, "buy-1", &purchase("T-1", 12_300))
        .await
        .unwrap();
    assert_eq!((bought.balance, bought.last_sequence()), (123, Some(3)));
    let bought = pos
        .record_purchase(ORG, by_card, "buy-2", &purchase("T-2", 5_000))
        .await
        .unwrap();
    assert_eq!(bought.balance, 173);
    let refund = Refund {
        refund_id: "R-1".into(),
        transaction_id: "T-1".into(),
        amount_minor: 2_300,
    };
    let refunded = pos
        .refund_purchase(ORG, by_id, "refund-1", &refund)
        .await
        .unwrap();
    assert_eq!(refunded.balance, 150);
    let redemption = Redemption {
        redemption_id: "D-1".into(),
        reward_id: "coffee".into(),
    };
    let redeemed = pos
        .redeem_reward(ORG, by_card, "redeem-1", &redemption)
        .await
        .unwrap();
    assert_eq!(redeemed.balance, 100);
    let adjustment = Adjustment {
        adjustment_id: "A-1".into(),
        delta: 25,
        reason: "goodwill".into(),
    };
    let adjusted = admin
        .adjust_points(ORG, by_id, "adjust-1", &adjustment)
        .await
        .unwrap();
    assert_eq!(adjusted.balance, 125);

    for member in [by_id, by_card] {
        let view = pos.member(ORG, member).await.unwrap();
        assert_eq!((view.member_id, view.balance), (member_id, 125));
        assert_eq!(view.external_id.as_deref(), Some("card 1/2"));
        assert_eq!(
            (view.lifetime_earned, view.clawed_back, view.redeemed),
            (173, 23, 50)
        );
        assert_eq!(view.stamp_cards[0].stamps, 1);
    }

    let job = JobRequest { as_of: Utc::now() };
    let expired = admin.expire_points(ORG, "expire", &job).await.unwrap();
    assert_eq!(
        (expired.job.as_str(), expired.members, expired.events),
        ("ExpirePoints", 1, 0)
    );
    let reevaluated = admin.reevaluate_tiers(ORG, "tiers", &job).await.unwrap();
    assert_eq!(reevaluated.job, "ReevaluateTier");

    // A refusal is the API's error, typed: two coffees leave 25 points, a third is refused.
    let coffee = |id: &str| Redemption {
        redemption_id: id.into(),
        reward_id: "coffee".into(),
    };
    for id in ["D-2", "D-3"] {
        pos.redeem_reward(ORG, by_id, id, &coffee(id)).await.unwrap();
    }
    let error = pos
        .redeem_reward(ORG, by_id, "D-4", &coffee("D-4"))
        .await
        .unwrap_err();
    let Error::Api { status, body, .. } = &error else {
        panic!("not an API refusal: {error}");
    };
    assert_eq!(
        (status.as_u16(), body.error.code.as_str()),
        (422, "insufficient_points")
    );
    assert_eq!(error.kind(), "HTTP 422 insufficient_points");
    let error = pos.member(ORG, MemberRef::Id(Uuid::new_v4())).await.unwrap_err();
    assert_eq!(error.kind(), "HTTP 404 member_not_found");
    let error = pos
        .adjust_points(ORG, by_id, "adjust-2", &adjustment)
        .await
        .unwrap_err();
    assert_eq!(
        (error.status().map(|s| s.as_u16()), error.code()),
        (Some(403), Some("forbidden"))
    );

    service.stop().await.unwrap();
    nats.cleanup().await;
    db.cleanup().await;
}
