//! Given/when/then tests of the `Member` aggregate: each states one rule of SPEC §3/§4 and
//! asserts the exact events a command appends, or the exact typed error (which appends nothing).

mod common;

use chrono::Duration;
use common::*;
use domain::ids::IdProblem;
use domain::member::{MemberCommand, MemberError, MemberEvent, MAX_CLOCK_SKEW};
use domain::member::{NewMember, Purchase, Receipt, TierReview};
use domain::program::ProgramSnapshot;

fn stamp(transaction_id: &str, day: i64, hour: i64, stamps: u32) -> MemberEvent {
    let occurred_at = at(day, hour);
    MemberEvent::StampCollected {
        card_id: "coffee".into(),
        transaction_id: transaction_id.into(),
        day: occurred_at.date_naive(),
        stamps,
        stamps_required: 3,
        occurred_at,
    }
}

fn upgraded(
    from: &str,
    to: &str,
    multiplier_bps: u32,
    qualifying_points: i64,
    day: i64,
    hour: i64,
) -> MemberEvent {
    MemberEvent::TierUpgraded {
        from: from.into(),
        to: to.into(),
        multiplier_bps,
        qualifying_points,
        occurred_at: at(day, hour),
        program_version: 1,
    }
}

fn no_stamp_cards() -> ProgramSnapshot {
    program_with(|c| c.stamp_cards.clear())
}

/// `command` (a purchase) as received by the server at `recorded_at`.
fn received_at(command: MemberCommand, recorded: chrono::DateTime<chrono::Utc>) -> MemberCommand {
    match command {
        MemberCommand::RecordPurchase(Purchase {
            receipt:
                Receipt {
                    transaction_id,
                    location_id,
                    amount_minor,
                    currency,
                    occurred_at,
                    ..
                },
            program,
            ..
        }) => MemberCommand::RecordPurchase(Purchase {
            receipt: Receipt {
                transaction_id,
                location_id,
                amount_minor,
                currency,
                occurred_at,
                items: None,
            },
            program,
            recorded_at: recorded,
            budgets_left: Default::default(),
        }),
        other => panic!("not a purchase: {other:?}"),
    }
}

/// The tuples: the purchase (day, amount, points earned) and the refund (amount, total refunded,
/// points clawed back).
fn refunded(
    refund_id: &str,
    transaction_id: &str,
    (purchase_day, purchase_amount_minor, purchase_points_earned): (i64, i64, i64),
    (amount_minor, refunded_total_minor, points_clawed_back): (i64, i64, i64),
    balance_after: i64,
    qualifying_points: i64,
    day: i64,
) -> MemberEvent {
    MemberEvent::PurchaseRefunded {
        refund_id: refund_id.into(),
        transaction_id: transaction_id.into(),
        location_id: STORE.into(),
        purchase_occurred_at: at(purchase_day, 10),
        purchase_amount_minor,
        purchase_points_earned,
        amount_minor,
        refunded_total_minor,
        points_clawed_back,
        balance_after,
        qualifying_points,
        occurred_at: at(day, 12),
    }
}

// ---------------------------------------------------------------------------------------------
// Enrolment
// ---------------------------------------------------------------------------------------------

#[test]
fn enrolment_starts_the_member_in_the_lowest_tier_of_the_program_in_force() {
    member()
        .given_no_previous_events()
        .when(enroll())
        .then_expect_events(vec![enrolled()]);
}

#[test]
fn enrolling_an_enrolled_member_again_is_refused() {
    member()
        .given(vec![enrolled()])
        .when(enroll())
        .then_expect_error(MemberError::AlreadyEnrolled);
}

#[test]
fn enrolment_with_an_invalid_org_id_is_refused() {
    let command = MemberCommand::Enroll(NewMember {
        org_id: "Acme Corp".into(),
        member_id: member_id(),
        external_id: None,
        display_name: None,
        program: program(),
        at: at(0, 0),
    });
    member()
        .given_no_previous_events()
        .when(command)
        .then_expect_error(MemberError::InvalidOrgId("Acme Corp".into()));
}

#[test]
fn enrolment_with_a_blank_external_id_is_refused() {
    let command = MemberCommand::Enroll(NewMember {
        org_id: ORG.into(),
        member_id: member_id(),
        external_id: Some("   ".into()),
        display_name: None,
        program: program(),
        at: at(0, 0),
    });
    member()
        .given_no_previous_events()
        .when(command)
        .then_expect_error(MemberError::InvalidId {
            field: "external_id",
            problem: IdProblem::Empty,
        });
}

#[test]
fn display_name_that_is_an_email_address_is_refused_because_leaderboards_show_it() {
    let command = MemberCommand::Enroll(NewMember {
        org_id: ORG.into(),
        member_id: member_id(),
        external_id: None,
        display_name: Some("ada@example.com".into()),
        program: program(),
        at: at(0, 0),
    });
    member()
        .given_no_previous_events()
        .when(command)
        .then_expect_error(MemberError::InvalidDisplayName(
            "must not be an email address or a phone number",
        ));
}

#[test]
fn purchase_for_a_member_who_is_not_enrolled_is_refused() {
    member()
        .given_no_previous_events()
        .when(purchase("t1", 1000, at(1, 10)))
        .then_expect_error(MemberError::NotEnrolled);
}

// ---------------------------------------------------------------------------------------------
// Earning
// ---------------------------------------------------------------------------------------------

#[test]
fn purchase_earns_floor_of_amount_times_earn_rate_per_whole_currency_unit() {
    // 19.99 EUR at 1 point per 1.00 → floor(1999 × 1 / 100) = 19.
    member()
        .given(given(vec![]))
        .when(purchase("t1", 1999, at(1, 10)))
        .then_expect_events(vec![
            purchased("t1", 1999, at(1, 10), (19, "Bronze", 10_000), 19, 19, 19),
            stamp("t1", 1, 10, 1),
        ]);
}

#[test]
fn a_receipt_time_finer_than_microseconds_is_recorded_at_the_store_precision() {
    // The event store and read models keep microseconds; the refund of this purchase is later
    // matched against the time the read model kept.
    let printed = at(1, 10) + Duration::nanoseconds(123_456_789);
    let kept = at(1, 10) + Duration::microseconds(123_456);
    member()
        .given(given(vec![]))
        .when(purchase("t1", 1999, printed))
        .then_expect_events(vec![
            purchased("t1", 1999, kept, (19, "Bronze", 10_000), 19, 19, 19),
            MemberEvent::StampCollected {
                card_id: "coffee".into(),
                transaction_id: "t1".into(),
                day: kept.date_naive(),
                stamps: 1,
                stamps_required: 3,
                occurred_at: kept,
            },
        ]);
    // The same receipt sent again is recognised as the same purchase.
    member()
        .given(given(vec![purchase("t1", 1999, printed)]))
        .when(purchase("t1", 1999, printed))
        .then_expect_events(vec![]);
}

#[test]
fn earn_rate_multiplies_before_the_floor() {
    // floor(1999 × 3 / 100) = floor(59.97) = 59, not 3 × 19 = 57.
    let program = program_with(|c| {
        c.earn_rate = 3;
        c.stamp_cards.clear();
    });
    member()
        .given(given(vec![]))
        .when(purchase_in("t1", 1999, at(1, 10), program))
        .then_expect_events(vec![purchased(
            "t1",
            1999,
            at(1, 10),
            (59, "Bronze", 10_000),
            59,
            59,
            59,
        )]);
}

#[test]
fn zero_decimal_currency_earns_per_minor_unit() {
    let jpy = program_with(|c| {
        c.currency = "JPY".into();
        c.stamp_cards.clear();
    });
    member()
        .given(given(vec![]))
        .when(purchase_in("t1", 480, at(1, 10), jpy))
        .then_expect_events(vec![MemberEvent::PurchaseRecorded {
            transaction_id: "t1".into(),
            location_id: STORE.into(),
            amount_minor: 480,
            currency: "JPY".into(),
            occurred_at: at(1, 10),
            program_version: 1,
            base_points: 480,
            tier: "Bronze".into(),
            multiplier_bps: 10_000,
            points_earned: 480,
            expires_at: Some(at(366, 10)),
            balance_after: 480,
            qualifying_points: 480,
            items: None,
            breakdown: without_promotions(480, 480),
        }]);
}

#[test]
fn three_decimal_currency_divides_by_a_thousand() {
    // 1.999 BHD → floor(1999 / 1000) = 1 point.
    let bhd = program_with(|c| {
        c.currency = "BHD".into();
        c.stamp_cards.clear();
    });
    member()
        .given(given(vec![]))
        .when(purchase_in("t1", 1999, at(1, 10), bhd))
        .then_expect_events(vec![MemberEvent::PurchaseRecorded {
            transaction_id: "t1".into(),
            location_id: STORE.into(),
            amount_minor: 1999,
            currency: "BHD".into(),
            occurred_at: at(1, 10),
            program_version: 1,
            base_points: 1,
            tier: "Bronze".into(),
            multiplier_bps: 10_000,
            points_earned: 1,
            expires_at: Some(at(366, 10)),
            balance_after: 1,
            qualifying_points: 1,
            items: None,
            breakdown: without_promotions(1, 1),
        }]);
}

#[test]
fn silver_member_earns_floor_of_base_times_multiplier() {
    // Silver (1.25×): base 19 → floor(19 × 12500 / 10000) = floor(23.75) = 23.
    member()
        .given(given(vec![purchase("t1", 50_000, at(1, 10))]))
        .when(purchase("t2", 1999, at(2, 10)))
        .then_expect_events(vec![
            purchased("t2", 1999, at(2, 10), (19, "Silver", 12_500), 23, 523, 523),
            stamp("t2", 2, 10, 2),
        ]);
}

#[test]
fn purchase_that_crosses_a_threshold_earns_at_the_old_multiplier_then_upgrades() {
    member()
        .given(given(vec![purchase("t1", 49_000, at(1, 10))]))
        .when(purchase("t2", 2_000, at(2, 10)))
        .then_expect_events(vec![
            purchased("t2", 2_000, at(2, 10), (20, "Bronze", 10_000), 20, 510, 510),
            stamp("t2", 2, 10, 2),
            upgraded("Bronze", "Silver", 12_500, 510, 2, 10),
        ]);
}

#[test]
fn purchase_that_crosses_two_thresholds_upgrades_straight_to_the_higher_tier() {
    member()
        .given(given(vec![]))
        .when(purchase_in("t1", 250_000, at(1, 10), no_stamp_cards()))
        .then_expect_events(vec![
            purchased(
                "t1",
                250_000,
                at(1, 10),
                (2_500, "Bronze", 10_000),
                2_500,
                2_500,
                2_500,
            ),
            upgraded("Bronze", "Gold", 15_000, 2_500, 1, 10),
        ]);
}

#[test]
fn late_offline_purchase_counts_later_purchases_toward_the_upgrade() {
    // 400 points earned at 12:00; a terminal that was offline sends a 09:00 receipt at 13:00.
    // The member's qualifying points are now 550 ≥ 500: the upgrade is due, even though the
    // late receipt's own time is before the 12:00 purchase.
    let offline = received_at(purchase("t2", 15_000, at(5, 9)), at(5, 13));
    member()
        .given(given(vec![purchase("t1", 40_000, at(5, 12))]))
        .when(offline)
        .then_expect_events(vec![
            purchased("t2", 15_000, at(5, 9), (150, "Bronze", 10_000), 150, 550, 550),
            upgraded("Bronze", "Silver", 12_500, 550, 5, 9),
        ]);
}

#[test]
fn purchase_recorded_after_the_qualification_window_does_not_qualify() {
    // A receipt from 400 days ago earns its points but is outside the 365-day window now.
    let stale = received_at(
        purchase_in("t1", 60_000, at(1, 10), no_stamp_cards()),
        at(401, 10),
    );
    member()
        .given(given(vec![]))
        .when(stale)
        .then_expect_events(vec![purchased(
            "t1",
            60_000,
            at(1, 10),
            (600, "Bronze", 10_000),
            600,
            600,
            0,
        )]);
}

#[test]
fn same_transaction_id_with_the_same_details_is_the_same_purchase_and_earns_nothing_more() {
    member()
        .given(given(vec![purchase("t1", 1_000, at(1, 10))]))
        .when(purchase("t1", 1_000, at(1, 10)))
        .then_expect_events(vec![]);
}

#[test]
fn same_transaction_id_with_different_details_is_a_conflict() {
    member()
        .given(given(vec![purchase("t1", 1_000, at(1, 10))]))
        .when(purchase("t1", 2_000, at(1, 10)))
        .then_expect_error(MemberError::TransactionConflict("t1".into()));
}

#[test]
fn purchase_of_zero_is_refused() {
    member()
        .given(given(vec![]))
        .when(purchase("t1", 0, at(1, 10)))
        .then_expect_error(MemberError::InvalidAmount {
            field: "amount_minor",
        });
}

#[test]
fn purchase_of_a_negative_amount_is_refused() {
    member()
        .given(given(vec![]))
        .when(purchase("t1", -500, at(1, 10)))
        .then_expect_error(MemberError::InvalidAmount {
            field: "amount_minor",
        });
}

#[test]
fn purchase_in_an_unknown_currency_is_refused() {
    let command = MemberCommand::RecordPurchase(Purchase {
        receipt: Receipt {
            transaction_id: "t1".into(),
            location_id: STORE.into(),
            amount_minor: 1_000,
            currency: "EUX".into(),
            occurred_at: at(1, 10),
            items: None,
        },
        program: program(),
        recorded_at: at(1, 10),
        budgets_left: Default::default(),
    });
    member()
        .given(given(vec![]))
        .when(command)
        .then_expect_error(MemberError::UnknownCurrency("EUX".into()));
}

#[test]
fn purchase_in_another_currency_than_the_programs_is_refused() {
    let command = MemberCommand::RecordPurchase(Purchase {
        receipt: Receipt {
            transaction_id: "t1".into(),
            location_id: STORE.into(),
            amount_minor: 1_000,
            currency: "USD".into(),
            occurred_at: at(1, 10),
            items: None,
        },
        program: program(),
        recorded_at: at(1, 10),
        budgets_left: Default::default(),
    });
    member()
        .given(given(vec![]))
        .when(command)
        .then_expect_error(MemberError::CurrencyMismatch {
            expected: "EUR".into(),
            got: "USD".into(),
        });
}

#[test]
fn purchase_at_an_unregistered_location_is_refused() {
    let command = MemberCommand::RecordPurchase(Purchase {
        receipt: Receipt {
            transaction_id: "t1".into(),
            location_id: "store-9".into(),
            amount_minor: 1_000,
            currency: EUR.into(),
            occurred_at: at(1, 10),
            items: None,
        },
        program: program(),
        recorded_at: at(1, 10),
        budgets_left: Default::default(),
    });
    member()
        .given(given(vec![]))
        .when(command)
        .then_expect_error(MemberError::UnknownLocation("store-9".into()));
}

#[test]
fn purchase_with_an_empty_transaction_id_is_refused() {
    member()
        .given(given(vec![]))
        .when(purchase("", 1_000, at(1, 10)))
        .then_expect_error(MemberError::InvalidId {
            field: "transaction_id",
            problem: IdProblem::Empty,
        });
}

#[test]
fn purchase_dated_beyond_the_clock_skew_allowance_is_refused() {
    let occurred_at = at(1, 10) + MAX_CLOCK_SKEW + Duration::seconds(1);
    member()
        .given(given(vec![]))
        .when(received_at(purchase("t1", 1_000, occurred_at), at(1, 10)))
        .then_expect_error(MemberError::OccurredInFuture(occurred_at));
}

#[test]
fn purchase_whose_points_would_overflow_the_balance_is_refused() {
    let mut events = given(vec![]);
    events.push(purchased(
        "t0",
        1_000,
        at(1, 10),
        (10, "Bronze", 10_000),
        i64::MAX - 5,
        i64::MAX - 5,
        0,
    ));
    member()
        .given(events)
        .when(purchase("t1", 1_000, at(2, 10)))
        .then_expect_error(MemberError::Overflow {
            field: "amount_minor",
        });
}

// ---------------------------------------------------------------------------------------------
// Stamp cards
// ---------------------------------------------------------------------------------------------

#[test]
fn purchase_below_the_cards_minimum_amount_collects_no_stamp() {
    member()
        .given(given(vec![]))
        .when(purchase("t1", 499, at(1, 10)))
        .then_expect_events(vec![purchased(
            "t1",
            499,
            at(1, 10),
            (4, "Bronze", 10_000),
            4,
            4,
            4,
        )]);
}

#[test]
fn second_purchase_on_the_same_utc_day_collects_no_second_stamp() {
    member()
        .given(given(vec![purchase("t1", 1_000, at(1, 9))]))
        .when(purchase("t2", 1_000, at(1, 18)))
        .then_expect_events(vec![purchased(
            "t2",
            1_000,
            at(1, 18),
            (10, "Bronze", 10_000),
            10,
            20,
            20,
        )]);
}

#[test]
fn purchases_either_side_of_utc_midnight_each_collect_a_stamp() {
    member()
        .given(given(vec![purchase("t1", 1_000, at(1, 23))]))
        .when(purchase("t2", 1_000, at(2, 1)))
        .then_expect_events(vec![
            purchased("t2", 1_000, at(2, 1), (10, "Bronze", 10_000), 10, 20, 20),
            stamp("t2", 2, 1, 2),
        ]);
}

#[test]
fn full_stamp_card_is_completed_with_its_reward() {
    member()
        .given(given(vec![
            purchase("t1", 1_000, at(1, 10)),
            purchase("t2", 1_000, at(2, 10)),
        ]))
        .when(purchase("t3", 1_000, at(3, 10)))
        .then_expect_events(vec![
            purchased("t3", 1_000, at(3, 10), (10, "Bronze", 10_000), 10, 30, 30),
            stamp("t3", 3, 10, 3),
            MemberEvent::StampCardCompleted {
                card_id: "coffee".into(),
                reward_id: "free-coffee".into(),
                transaction_id: "t3".into(),
                cards_completed: 1,
                occurred_at: at(3, 10),
            },
        ]);
}

#[test]
fn stamp_after_a_completed_card_starts_a_new_card() {
    member()
        .given(given(vec![
            purchase("t1", 1_000, at(1, 10)),
            purchase("t2", 1_000, at(2, 10)),
            purchase("t3", 1_000, at(3, 10)),
        ]))
        .when(purchase("t4", 1_000, at(4, 10)))
        .then_expect_events(vec![
            purchased("t4", 1_000, at(4, 10), (10, "Bronze", 10_000), 10, 40, 40),
            stamp("t4", 4, 10, 1),
        ]);
}

#[test]
fn refund_takes_no_stamp_back() {
    member()
        .given(given(vec![
            purchase("t1", 1_000, at(1, 10)),
            refund("r1", "t1", 1_000, at(1, 12)),
        ]))
        .when(purchase("t2", 1_000, at(2, 10)))
        .then_expect_events(vec![
            purchased("t2", 1_000, at(2, 10), (10, "Bronze", 10_000), 10, 10, 10),
            stamp("t2", 2, 10, 2),
        ]);
}

// ---------------------------------------------------------------------------------------------
// Refunds
// ---------------------------------------------------------------------------------------------

#[test]
fn partial_refund_claws_back_the_floor_of_its_proportion() {
    // 10 points for 10.00; 3.33 refunded → floor(10 × 333 / 1000) = 3.
    member()
        .given(given(vec![purchase("t1", 1_000, at(1, 10))]))
        .when(refund("r1", "t1", 333, at(2, 12)))
        .then_expect_events(vec![refunded("r1", "t1", (1, 1_000, 10), (333, 333, 3), 7, 7, 2)]);
}

#[test]
fn successive_partial_refunds_claw_back_exactly_what_the_purchase_earned() {
    // 3 + 3 + 4 = 10: the last refund takes what cumulative rounding left.
    member()
        .given(given(vec![
            purchase("t1", 1_000, at(1, 10)),
            refund("r1", "t1", 333, at(2, 12)),
            refund("r2", "t1", 333, at(3, 12)),
        ]))
        .when(refund("r3", "t1", 334, at(4, 12)))
        .then_expect_events(vec![refunded(
            "r3",
            "t1",
            (1, 1_000, 10),
            (334, 1_000, 4),
            0,
            0,
            4,
        )]);
}

#[test]
fn refund_after_tier_upgrade_claws_back_points_actually_earned() {
    // t3 earned 125 at Silver (1.25×): a full refund takes 125, not today's 100 × 1.0 or a
    // recomputation.
    member()
        .given(given(vec![
            purchase("t1", 49_000, at(1, 10)),
            purchase("t2", 2_000, at(2, 10)),
            purchase("t3", 10_000, at(3, 10)),
        ]))
        .when(refund("r1", "t3", 10_000, at(4, 12)))
        .then_expect_events(vec![refunded(
            "r1",
            "t3",
            (3, 10_000, 125),
            (10_000, 10_000, 125),
            510,
            510,
            4,
        )]);
}

#[test]
fn refund_of_the_purchase_that_crossed_a_threshold_claws_back_its_old_multiplier_points() {
    member()
        .given(given(vec![
            purchase("t1", 49_000, at(1, 10)),
            purchase("t2", 2_000, at(2, 10)),
            purchase("t3", 10_000, at(3, 10)),
        ]))
        .when(refund("r1", "t2", 2_000, at(4, 12)))
        .then_expect_events(vec![refunded(
            "r1",
            "t2",
            (2, 2_000, 20),
            (2_000, 2_000, 20),
            615,
            615,
            4,
        )]);
}

#[test]
fn refunds_summed_can_never_exceed_the_purchase() {
    member()
        .given(given(vec![
            purchase("t1", 1_000, at(1, 10)),
            refund("r1", "t1", 600, at(2, 12)),
        ]))
        .when(refund("r2", "t1", 401, at(3, 12)))
        .then_expect_error(MemberError::RefundExceedsPurchase { remaining_minor: 400 });
}

#[test]
fn same_refund_id_twice_is_one_refund() {
    member()
        .given(given(vec![
            purchase("t1", 1_000, at(1, 10)),
            refund("r1", "t1", 600, at(2, 12)),
        ]))
        .when(refund("r1", "t1", 600, at(2, 12)))
        .then_expect_events(vec![]);
}

#[test]
fn same_refund_id_with_another_amount_is_refused() {
    member()
        .given(given(vec![
            purchase("t1", 1_000, at(1, 10)),
            refund("r1", "t1", 600, at(2, 12)),
        ]))
        .when(refund("r1", "t1", 100, at(3, 12)))
        .then_expect_error(MemberError::RefundIdReused("r1".into()));
}

#[test]
fn refund_of_an_unknown_purchase_is_refused() {
    member()
        .given(given(vec![purchase("t1", 1_000, at(1, 10))]))
        .when(refund("r1", "t9", 100, at(2, 12)))
        .then_expect_error(MemberError::PurchaseNotFound("t9".into()));
}

#[test]
fn refund_of_zero_is_refused() {
    member()
        .given(given(vec![purchase("t1", 1_000, at(1, 10))]))
        .when(refund("r1", "t1", 0, at(2, 12)))
        .then_expect_error(MemberError::InvalidAmount {
            field: "amount_minor",
        });
}

#[test]
fn clawback_of_points_already_spent_takes_the_balance_negative() {
    member()
        .given(given(vec![
            purchase("t1", 10_000, at(1, 10)),
            redeem("rd1", "free-coffee", at(2, 10)),
        ]))
        .when(refund("r1", "t1", 10_000, at(3, 12)))
        .then_expect_events(vec![refunded(
            "r1",
            "t1",
            (1, 10_000, 100),
            (10_000, 10_000, 100),
            -100,
            0,
            3,
        )]);
}

fn owing_100_points() -> Vec<MemberEvent> {
    given(vec![
        purchase("t1", 10_000, at(1, 10)),
        redeem("rd1", "free-coffee", at(2, 10)),
        refund("r1", "t1", 10_000, at(3, 12)),
    ])
}

#[test]
fn nothing_can_be_redeemed_while_the_balance_is_negative() {
    member()
        .given(owing_100_points())
        .when(redeem("rd2", "free-coffee", at(4, 10)))
        .then_expect_error(MemberError::NegativeBalance { balance: -100 });
}

#[test]
fn negative_adjustment_cannot_take_or_keep_the_balance_below_zero() {
    member()
        .given(owing_100_points())
        .when(adjust("a1", -10, "write-off", at(4, 10)))
        .then_expect_error(MemberError::InsufficientPoints {
            balance: -100,
            required: 10,
        });
}

#[test]
fn points_earned_while_owing_repay_the_debt_before_they_can_expire() {
    // -100 + 150 = 50: only the 50 points left after repaying the debt are in a lot.
    member()
        .given(given(vec![
            purchase("t1", 10_000, at(1, 10)),
            redeem("rd1", "free-coffee", at(2, 10)),
            refund("r1", "t1", 10_000, at(3, 12)),
            purchase("t2", 15_000, at(4, 10)),
        ]))
        .when(expire(at(400, 0)))
        .then_expect_events(vec![MemberEvent::PointsExpired {
            as_of: at(400, 0),
            points: 50,
            balance_after: 0,
        }]);
}

// ---------------------------------------------------------------------------------------------
// Rewards
// ---------------------------------------------------------------------------------------------

#[test]
fn redeeming_an_active_reward_debits_its_cost() {
    member()
        .given(given(vec![purchase("t1", 15_000, at(1, 10))]))
        .when(redeem("rd1", "free-coffee", at(2, 10)))
        .then_expect_events(vec![MemberEvent::RewardRedeemed {
            redemption_id: "rd1".into(),
            reward_id: "free-coffee".into(),
            reward_name: "Free coffee".into(),
            points_cost: 100,
            balance_after: 50,
            occurred_at: at(2, 10),
        }]);
}

#[test]
fn redeeming_with_a_balance_below_the_cost_is_refused() {
    member()
        .given(given(vec![purchase("t1", 15_000, at(1, 10))]))
        .when(redeem("rd1", "tote", at(2, 10)))
        .then_expect_error(MemberError::InsufficientPoints {
            balance: 150,
            required: 300,
        });
}

#[test]
fn redeeming_an_inactive_reward_is_refused() {
    member()
        .given(given(vec![purchase("t1", 15_000, at(1, 10))]))
        .when(redeem("rd1", "mug", at(2, 10)))
        .then_expect_error(MemberError::RewardInactive("mug".into()));
}

#[test]
fn redeeming_a_reward_missing_from_the_catalogue_is_refused() {
    member()
        .given(given(vec![purchase("t1", 15_000, at(1, 10))]))
        .when(redeem("rd1", "yacht", at(2, 10)))
        .then_expect_error(MemberError::UnknownReward("yacht".into()));
}

#[test]
fn same_redemption_id_twice_is_one_redemption() {
    member()
        .given(given(vec![
            purchase("t1", 25_000, at(1, 10)),
            redeem("rd1", "free-coffee", at(2, 10)),
        ]))
        .when(redeem("rd1", "free-coffee", at(2, 10)))
        .then_expect_events(vec![]);
}

// ---------------------------------------------------------------------------------------------
// Expiry
// ---------------------------------------------------------------------------------------------

#[test]
fn first_earned_lot_expires_first_expiry_days_after_it_was_earned() {
    member()
        .given(given(vec![
            purchase("t1", 1_000, at(0, 10)),
            purchase("t2", 2_000, at(100, 10)),
        ]))
        .when(expire(at(365, 10)))
        .then_expect_events(vec![MemberEvent::PointsExpired {
            as_of: at(365, 10),
            points: 10,
            balance_after: 20,
        }]);
}

#[test]
fn nothing_expires_a_moment_before_the_expiry_date() {
    member()
        .given(given(vec![purchase("t1", 1_000, at(0, 10))]))
        .when(expire(at(365, 10) - Duration::seconds(1)))
        .then_expect_events(vec![]);
}

#[test]
fn expiring_twice_for_the_same_as_of_is_one_expiry() {
    member()
        .given(given(vec![
            purchase("t1", 1_000, at(0, 10)),
            purchase("t2", 2_000, at(100, 10)),
            expire(at(365, 10)),
        ]))
        .when(expire(at(365, 10)))
        .then_expect_events(vec![]);
}

#[test]
fn redemption_consumes_the_soonest_expiring_lot_first() {
    // Lots of 100 (expiring day 365) and 100 (day 465); the redemption of 100 empties the first.
    let events = given(vec![
        purchase("t1", 10_000, at(0, 10)),
        purchase("t2", 10_000, at(100, 10)),
        redeem("rd1", "free-coffee", at(200, 10)),
    ]);
    member()
        .given(events.clone())
        .when(expire(at(366, 0)))
        .then_expect_events(vec![]);
    member()
        .given(events)
        .when(expire(at(466, 0)))
        .then_expect_events(vec![MemberEvent::PointsExpired {
            as_of: at(466, 0),
            points: 100,
            balance_after: 0,
        }]);
}

#[test]
fn points_never_expire_when_the_program_has_no_expiry() {
    let never = program_with(|c| c.expiry_days = None);
    member()
        .given(given(vec![purchase_in("t1", 1_000, at(0, 10), never)]))
        .when(expire(at(5_000, 0)))
        .then_expect_events(vec![]);
}

// ---------------------------------------------------------------------------------------------
// Adjustments
// ---------------------------------------------------------------------------------------------

#[test]
fn adjustment_with_a_reason_credits_an_expiring_lot() {
    member()
        .given(given(vec![]))
        .when(adjust("a1", 50, "  goodwill for a late order ", at(1, 10)))
        .then_expect_events(vec![MemberEvent::PointsAdjusted {
            adjustment_id: "a1".into(),
            delta: 50,
            reason: "goodwill for a late order".into(),
            expires_at: Some(at(366, 10)),
            balance_after: 50,
            occurred_at: at(1, 10),
        }]);
}

#[test]
fn adjustment_without_a_reason_is_refused() {
    member()
        .given(given(vec![]))
        .when(adjust("a1", 50, "   ", at(1, 10)))
        .then_expect_error(MemberError::ReasonRequired);
}

#[test]
fn adjustment_of_zero_points_is_refused() {
    member()
        .given(given(vec![]))
        .when(adjust("a1", 0, "nothing", at(1, 10)))
        .then_expect_error(MemberError::InvalidDelta);
}

#[test]
fn same_adjustment_id_twice_is_one_adjustment() {
    member()
        .given(given(vec![adjust("a1", 50, "goodwill", at(1, 10))]))
        .when(adjust("a1", 50, "goodwill", at(1, 10)))
        .then_expect_events(vec![]);
}

#[test]
fn same_adjustment_id_with_another_delta_is_refused() {
    member()
        .given(given(vec![adjust("a1", 50, "goodwill", at(1, 10))]))
        .when(adjust("a1", 60, "goodwill", at(1, 10)))
        .then_expect_error(MemberError::AdjustmentIdReused("a1".into()));
}

#[test]
fn negative_adjustment_debits_the_soonest_expiring_points() {
    member()
        .given(given(vec![
            purchase("t1", 10_000, at(0, 10)),
            purchase("t2", 10_000, at(100, 10)),
            adjust("a1", -100, "duplicate receipt", at(150, 10)),
        ]))
        .when(expire(at(366, 0)))
        .then_expect_events(vec![]);
}

// ---------------------------------------------------------------------------------------------
// Tiers
// ---------------------------------------------------------------------------------------------

fn silver_since_day_1() -> Vec<MemberCommand> {
    vec![purchase("t1", 50_000, at(1, 10))]
}

#[test]
fn qualification_ignores_adjustments_and_redemptions() {
    member()
        .given(given(vec![
            purchase("t1", 49_000, at(1, 10)),
            adjust("a1", 1_000, "goodwill", at(1, 11)),
            redeem("rd1", "tote", at(1, 12)),
        ]))
        .when(purchase_in("t2", 500, at(2, 10), no_stamp_cards()))
        .then_expect_events(vec![purchased(
            "t2",
            500,
            at(2, 10),
            (5, "Bronze", 10_000),
            5,
            1_195,
            495,
        )]);
}

#[test]
fn qualification_counts_purchases_net_of_their_clawbacks() {
    // 500 earned, 100 clawed back: 400 < 500 starts Silver's grace period.
    member()
        .given(given(vec![
            purchase("t1", 50_000, at(1, 10)),
            refund("r1", "t1", 10_000, at(1, 12)),
        ]))
        .when(reevaluate(at(2, 0)))
        .then_expect_events(vec![MemberEvent::TierGracePeriodStarted {
            tier: "Silver".into(),
            threshold_points: 500,
            qualifying_points: 400,
            as_of: at(2, 0),
            downgrade_after: at(32, 0),
        }]);
}

#[test]
fn qualification_window_rolls_so_old_purchases_stop_counting() {
    // The window is the 365 days up to as_of: the day-1 10:00 purchase counts an hour before
    // its 365th anniversary and no longer at it.
    let events = given(silver_since_day_1());
    let anniversary = at(1, 10) + days(365);
    member()
        .given(events.clone())
        .when(reevaluate(anniversary - Duration::hours(1)))
        .then_expect_events(vec![]);
    member()
        .given(events)
        .when(reevaluate(anniversary))
        .then_expect_events(vec![MemberEvent::TierGracePeriodStarted {
            tier: "Silver".into(),
            threshold_points: 500,
            qualifying_points: 0,
            as_of: anniversary,
            downgrade_after: anniversary + days(30),
        }]);
}

#[test]
fn refund_below_the_threshold_does_not_downgrade_by_itself() {
    member()
        .given(given(silver_since_day_1()))
        .when(refund("r1", "t1", 50_000, at(2, 12)))
        .then_expect_events(vec![refunded(
            "r1",
            "t1",
            (1, 50_000, 500),
            (50_000, 50_000, 500),
            0,
            0,
            2,
        )]);
}

#[test]
fn reevaluation_within_the_grace_period_keeps_the_tier() {
    let mut commands = silver_since_day_1();
    commands.push(reevaluate(at(400, 0)));
    member()
        .given(given(commands))
        .when(reevaluate(at(429, 23)))
        .then_expect_events(vec![]);
}

#[test]
fn reevaluation_after_the_grace_period_downgrades() {
    let mut commands = silver_since_day_1();
    commands.push(reevaluate(at(400, 0)));
    member()
        .given(given(commands))
        .when(reevaluate(at(430, 0)))
        .then_expect_events(vec![MemberEvent::TierDowngraded {
            from: "Silver".into(),
            to: "Bronze".into(),
            multiplier_bps: 10_000,
            qualifying_points: 0,
            as_of: at(430, 0),
            program_version: 1,
        }]);
}

#[test]
fn downgrade_is_one_tier_at_a_time_with_a_new_grace_period_for_the_next() {
    let mut commands = vec![purchase_in("t1", 500_000, at(1, 10), no_stamp_cards())];
    commands.push(reevaluate(at(400, 0)));
    member()
        .given(given(commands))
        .when(reevaluate(at(430, 0)))
        .then_expect_events(vec![
            MemberEvent::TierDowngraded {
                from: "Platinum".into(),
                to: "Gold".into(),
                multiplier_bps: 15_000,
                qualifying_points: 0,
                as_of: at(430, 0),
                program_version: 1,
            },
            MemberEvent::TierGracePeriodStarted {
                tier: "Gold".into(),
                threshold_points: 2_000,
                qualifying_points: 0,
                as_of: at(430, 0),
                downgrade_after: at(460, 0),
            },
        ]);
}

#[test]
fn reevaluating_twice_for_the_same_as_of_is_one_reevaluation() {
    let mut commands = silver_since_day_1();
    commands.push(reevaluate(at(400, 0)));
    commands.push(reevaluate(at(430, 0)));
    member()
        .given(given(commands))
        .when(reevaluate(at(430, 0)))
        .then_expect_events(vec![]);
}

#[test]
fn purchase_that_restores_the_threshold_during_grace_clears_it() {
    // Silver (1.25×): base 500 → 625 qualifying points in the window ≥ 500.
    let mut commands = silver_since_day_1();
    commands.push(reevaluate(at(400, 0)));
    member()
        .given(given(commands))
        .when(purchase("t2", 50_000, at(410, 10)))
        .then_expect_events(vec![
            purchased(
                "t2",
                50_000,
                at(410, 10),
                (500, "Silver", 12_500),
                625,
                1_125,
                625,
            ),
            stamp("t2", 410, 10, 2),
            MemberEvent::TierGracePeriodCleared {
                tier: "Silver".into(),
                qualifying_points: 625,
                as_of: at(410, 10),
            },
        ]);
}

#[test]
fn reevaluation_with_a_window_reaching_before_the_calendar_counts_every_purchase() {
    // Programs are validated, but the member must not panic on a snapshot it is handed.
    let endless = program_with(|c| c.qualification_window_days = u32::MAX);
    member()
        .given(given(silver_since_day_1()))
        .when(MemberCommand::ReevaluateTier(TierReview {
            as_of: at(4_000, 0),
            program: endless,
        }))
        .then_expect_events(vec![]);
}

#[test]
fn without_a_grace_period_the_first_reevaluation_below_threshold_downgrades() {
    let no_grace = program_with(|c| c.downgrade_grace_days = 0);
    member()
        .given(given(silver_since_day_1()))
        .when(MemberCommand::ReevaluateTier(TierReview {
            as_of: at(400, 0),
            program: no_grace,
        }))
        .then_expect_events(vec![MemberEvent::TierDowngraded {
            from: "Silver".into(),
            to: "Bronze".into(),
            multiplier_bps: 10_000,
            qualifying_points: 0,
            as_of: at(400, 0),
            program_version: 1,
        }]);
}

/// The default program at version 2, where "Gold" was renamed "Gold Club".
fn gold_renamed() -> ProgramSnapshot {
    let mut program = program_with(|c| {
        c.tiers[2].name = "Gold Club".into();
        c.stamp_cards.clear();
    });
    program.version = 2;
    program
}

fn gold_since_day_1() -> Vec<MemberEvent> {
    given(vec![purchase_in("t1", 250_000, at(1, 10), no_stamp_cards())])
}

#[test]
fn purchase_never_moves_a_member_of_a_retired_tier_down_the_ladder() {
    // The member holds "Gold" (1.5×), which the program no longer has. A year later their
    // qualifying points say Bronze, but a purchase may only upgrade: the move down is for the
    // re-evaluation.
    member()
        .given(gold_since_day_1())
        .when(purchase_in("t2", 1_000, at(400, 10), gold_renamed()))
        .then_expect_events(vec![MemberEvent::PurchaseRecorded {
            transaction_id: "t2".into(),
            location_id: STORE.into(),
            amount_minor: 1_000,
            currency: EUR.into(),
            occurred_at: at(400, 10),
            program_version: 2,
            base_points: 10,
            tier: "Gold".into(),
            multiplier_bps: 15_000,
            points_earned: 15,
            expires_at: Some(at(765, 10)),
            balance_after: 2_515,
            qualifying_points: 15,
            items: None,
            breakdown: without_promotions(10, 15),
        }]);
}

#[test]
fn purchase_moves_a_member_of_a_retired_tier_to_its_successor_at_least_as_rewarding() {
    member()
        .given(gold_since_day_1())
        .when(purchase_in("t2", 1_000, at(2, 10), gold_renamed()))
        .then_expect_events(vec![
            MemberEvent::PurchaseRecorded {
                transaction_id: "t2".into(),
                location_id: STORE.into(),
                amount_minor: 1_000,
                currency: EUR.into(),
                occurred_at: at(2, 10),
                program_version: 2,
                base_points: 10,
                tier: "Gold".into(),
                multiplier_bps: 15_000,
                points_earned: 15,
                expires_at: Some(at(367, 10)),
                balance_after: 2_515,
                qualifying_points: 2_515,
                items: None,
                breakdown: without_promotions(10, 15),
            },
            MemberEvent::TierUpgraded {
                from: "Gold".into(),
                to: "Gold Club".into(),
                multiplier_bps: 15_000,
                qualifying_points: 2_515,
                occurred_at: at(2, 10),
                program_version: 2,
            },
        ]);
}

#[test]
fn reevaluation_places_a_member_of_a_retired_tier_on_the_ladder() {
    member()
        .given(gold_since_day_1())
        .when(MemberCommand::ReevaluateTier(TierReview {
            as_of: at(400, 0),
            program: gold_renamed(),
        }))
        .then_expect_events(vec![MemberEvent::TierDowngraded {
            from: "Gold".into(),
            to: "Bronze".into(),
            multiplier_bps: 10_000,
            qualifying_points: 0,
            as_of: at(400, 0),
            program_version: 2,
        }]);
}

#[test]
fn negative_adjustment_within_the_balance_debits_it() {
    member()
        .given(given(vec![purchase("t1", 15_000, at(1, 10))]))
        .when(adjust("a1", -40, "duplicate receipt", at(2, 10)))
        .then_expect_events(vec![MemberEvent::PointsAdjusted {
            adjustment_id: "a1".into(),
            delta: -40,
            reason: "duplicate receipt".into(),
            expires_at: None,
            balance_after: 110,
            occurred_at: at(2, 10),
        }]);
}

#[test]
fn adjustment_that_would_overflow_the_balance_is_refused() {
    let mut events = given(vec![]);
    events.push(purchased(
        "t0",
        1_000,
        at(1, 10),
        (10, "Bronze", 10_000),
        i64::MAX - 5,
        i64::MAX - 5,
        0,
    ));
    member()
        .given(events)
        .when(adjust("a1", 10, "goodwill", at(2, 10)))
        .then_expect_error(MemberError::Overflow { field: "delta" });
}

#[test]
fn redemption_with_a_blank_redemption_id_is_refused() {
    member()
        .given(given(vec![purchase("t1", 15_000, at(1, 10))]))
        .when(redeem(" ", "free-coffee", at(2, 10)))
        .then_expect_error(MemberError::InvalidId {
            field: "redemption_id",
            problem: IdProblem::Empty,
        });
}

#[test]
fn refund_with_an_empty_refund_id_is_refused() {
    member()
        .given(given(vec![purchase("t1", 1_000, at(1, 10))]))
        .when(refund("", "t1", 100, at(2, 12)))
        .then_expect_error(MemberError::InvalidId {
            field: "refund_id",
            problem: IdProblem::Empty,
        });
}

#[test]
fn system_jobs_for_a_member_who_is_not_enrolled_are_refused() {
    member()
        .given_no_previous_events()
        .when(expire(at(1, 0)))
        .then_expect_error(MemberError::NotEnrolled);
}

// ---------------------------------------------------------------------------------------------
// Points past their expiry date are never spendable, even before the expiry job has run.

#[test]
fn redemption_expires_due_points_first_and_spends_only_live_ones() {
    // 150 points from day 0 (expire day 365) and 150 from day 300 (expire day 665).
    let events = given(vec![
        purchase("t1", 15_000, at(0, 10)),
        purchase("t2", 15_000, at(300, 10)),
    ]);
    let reward_cost = config().rewards[0].points_cost;
    member()
        .given(events)
        .when(redeem("rd1", "free-coffee", at(400, 10)))
        .then_expect_events(vec![
            MemberEvent::PointsExpired {
                as_of: at(400, 10),
                points: 150,
                balance_after: 150,
            },
            MemberEvent::RewardRedeemed {
                redemption_id: "rd1".into(),
                reward_id: "free-coffee".into(),
                reward_name: config().rewards[0].name.clone(),
                points_cost: reward_cost,
                balance_after: 150 - reward_cost,
                occurred_at: at(400, 10),
            },
        ]);
}

#[test]
fn redemption_that_only_expired_points_could_pay_is_refused_and_expires_nothing() {
    // 150 points earned on day 0 are due on day 365; on day 400 nothing is spendable.
    member()
        .given(given(vec![purchase("t1", 15_000, at(0, 10))]))
        .when(redeem("rd1", "free-coffee", at(400, 10)))
        .then_expect_error(MemberError::InsufficientPoints {
            balance: 0,
            required: config().rewards[0].points_cost,
        });
}

#[test]
fn negative_adjustment_cannot_spend_expired_points() {
    member()
        .given(given(vec![purchase("t1", 15_000, at(0, 10))]))
        .when(adjust("a1", -100, "goodwill reversal", at(400, 10)))
        .then_expect_error(MemberError::InsufficientPoints {
            balance: 0,
            required: 100,
        });
}
