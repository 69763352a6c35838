//! What whole member events do to the rows of every read model.

use chrono::TimeZone as _;

use super::*;

fn enrolled(key: &MemberKey) -> (MemberState, Writes) {
    let mut state = MemberState::default();
    let mut writes = Writes::default();
    let event = MemberEvent::MemberEnrolled {
        org_id: key.org_id.clone(),
        member_id: key.member_id,
        external_id: None,
        display_name: None,
        enrolled_at: Utc.timestamp_opt(0, 0).unwrap(),
        tier: "Bronze".into(),
        multiplier_bps: 10_000,
        program_version: 1,
    };
    apply_member(&mut state, key, &meta(1), &event, &mut writes).unwrap();
    (state, writes)
}

fn meta(sequence: i64) -> EventMeta {
    EventMeta {
        sequence,
        global_position: sequence,
        committed_at: Utc.timestamp_opt(0, 0).unwrap(),
    }
}

fn purchase(txn: &str, points: i64, balance_after: i64) -> MemberEvent {
    let at = Utc.with_ymd_and_hms(2024, 1, 3, 10, 0, 0).unwrap();
    MemberEvent::PurchaseRecorded {
        transaction_id: txn.into(),
        location_id: "shop".into(),
        amount_minor: points * 100,
        currency: "EUR".into(),
        occurred_at: at,
        program_version: 1,
        base_points: points,
        tier: "Bronze".into(),
        multiplier_bps: 10_000,
        points_earned: points,
        expires_at: Some(at + chrono::Duration::days(365)),
        balance_after,
        qualifying_points: points,
        items: None,
        breakdown: domain::member::earn::Breakdown {
            base: points,
            tier_points: points,
            promotions: Vec::new(),
            cap_cut: 0,
            total: points,
        },
    }
}

#[test]
fn events_of_a_member_that_is_not_enrolled_are_refused() {
    let key = MemberKey {
        org_id: "o".into(),
        member_id: Uuid::new_v4(),
    };
    let error = apply_member(
        &mut MemberState::default(),
        &key,
        &meta(1),
        &purchase("t", 10, 10),
        &mut Writes::default(),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "PurchaseRecorded for a member that is not enrolled"
    );
}

#[test]
fn a_balance_after_that_disagrees_with_the_ledger_is_refused() {
    let key = MemberKey {
        org_id: "o".into(),
        member_id: Uuid::new_v4(),
    };
    let (mut state, _) = enrolled(&key);
    let mut writes = Writes::default();
    apply_member(&mut state, &key, &meta(2), &purchase("a", 10, 10), &mut writes).unwrap();
    assert_eq!(writes.ledger.journal.len(), 1);
    assert_eq!(writes.ledger.postings.iter().map(|p| p.delta).sum::<i64>(), 0);
    assert_eq!(writes.ledger.liability["o"], 10);
    let error = apply_member(
        &mut state,
        &key,
        &meta(3),
        &purchase("b", 10, 25),
        &mut Writes::default(),
    )
    .unwrap_err();
    assert!(error.to_string().contains("balance_after 25"), "{error}");
    let error = apply_member(
        &mut state,
        &key,
        &meta(3),
        &purchase("a", 10, 20),
        &mut Writes::default(),
    )
    .unwrap_err();
    assert_eq!(error.to_string(), "purchase 'a' is already recorded");
}

#[test]
fn a_refund_must_match_the_purchase_it_names() {
    let key = MemberKey {
        org_id: "o".into(),
        member_id: Uuid::new_v4(),
    };
    let (mut state, _) = enrolled(&key);
    apply_member(
        &mut state,
        &key,
        &meta(2),
        &purchase("a", 10, 10),
        &mut Writes::default(),
    )
    .unwrap();
    let at = Utc.with_ymd_and_hms(2024, 1, 3, 10, 0, 0).unwrap();
    let refund = |txn: &str, total: i64| MemberEvent::PurchaseRefunded {
        refund_id: "r".into(),
        transaction_id: txn.into(),
        location_id: "shop".into(),
        purchase_occurred_at: at,
        purchase_amount_minor: 1_000,
        purchase_points_earned: 10,
        amount_minor: 500,
        refunded_total_minor: total,
        points_clawed_back: 5,
        balance_after: 5,
        qualifying_points: 5,
        occurred_at: at,
    };
    let mut writes = Writes::default();
    let unknown = apply_member(
        &mut state.clone(),
        &key,
        &meta(3),
        &refund("zz", 500),
        &mut Writes::default(),
    );
    assert!(unknown.unwrap_err().to_string().contains("does not have"));
    let wrong_total = apply_member(
        &mut state.clone(),
        &key,
        &meta(3),
        &refund("a", 900),
        &mut Writes::default(),
    );
    assert!(wrong_total.unwrap_err().to_string().contains("does not match"));
    apply_member(&mut state, &key, &meta(3), &refund("a", 500), &mut writes).unwrap();
    let purchase = &state.purchases["a"];
    assert_eq!((purchase.refunded_minor, purchase.clawed_back), (500, 5));
    assert_eq!(state.balance.as_ref().unwrap().points.clawed_back, 5);
    // The clawback counts against the purchase's own location and periods: the member's
    // current ones, so no closed row changes.
    assert!(writes.leaderboard.0.is_empty());
    for location in ["", "shop"] {
        let row = &state.leaderboard[location];
        assert_eq!(
            [&row.week, &row.month, &row.all].map(|s| (s.key.as_str(), s.points)),
            [("2024-W01", 5), ("2024-01", 5), ("all", 5)]
        );
    }
}

#[test]
fn every_table_of_the_schema_belongs_to_one_read_model_or_to_the_progress() {
    let migrations = [
        include_str!("../../../schema/migrations/0004_read_models.sql"),
        include_str!("../../../schema/migrations/0007_promotion_read_models.sql"),
        include_str!("../../../schema/migrations/0008_achievements_and_simulations.sql"),
        include_str!("../../../schema/migrations/0017_leaderboard_current.sql"),
    ];
    let lines = || migrations.iter().flat_map(|migration| migration.lines());
    let mut created: Vec<&str> = lines()
        .filter_map(|line| line.strip_prefix("CREATE TABLE rm."))
        .map(str::trim)
        .collect();
    let renames = lines()
        .filter_map(|line| line.strip_prefix("ALTER TABLE rm."))
        .filter_map(|line| line.trim_end_matches(';').split_once(" RENAME TO "));
    for (from, to) in renames {
        created.retain(|table| *table != from);
        created.push(to);
    }
    for dropped in lines().filter_map(|line| line.strip_prefix("DROP TABLE rm.")) {
        created.retain(|table| *table != dropped.trim_end_matches(';'));
    }
    let mut owned: Vec<&str> = ReadModel::ALL
        .iter()
        .flat_map(|model| model.tables().iter().copied())
        .chain(crate::progress::TABLES.iter().copied())
        .collect();
    created.sort_unstable();
    owned.sort_unstable();
    assert_eq!(owned, created);
    let names: std::collections::BTreeSet<&str> = ReadModel::ALL.iter().map(|m| m.as_str()).collect();
    assert_eq!(names.len(), ReadModel::ALL.len());
}

fn promoted(txn: &str, balance_after: i64, promotions: &[(&str, i64, Option<i64>)]) -> MemberEvent {
    let extra: i64 = promotions.iter().map(|(_, points, _)| points).sum();
    let mut event = purchase(txn, 10, balance_after);
    if let MemberEvent::PurchaseRecorded {
        points_earned,
        breakdown,
        ..
    } = &mut event
    {
        *points_earned += extra;
        breakdown.total += extra;
        breakdown.promotions = promotions
            .iter()
            .map(
                |(id, points, budget_left)| domain::member::earn::PromotionPoints {
                    promotion_id: (*id).into(),
                    points: *points,
                    budget_left: *budget_left,
                },
            )
            .collect();
    }
    event
}

#[test]
fn promotion_uses_count_points_and_first_uses_and_refunds_change_nothing() {
    let key = MemberKey {
        org_id: "o".into(),
        member_id: Uuid::new_v4(),
    };
    let (mut state, _) = enrolled(&key);
    let mut writes = Writes::default();
    let a = promoted("a", 25, &[("double", 10, Some(90)), ("hello", 5, None)]);
    state.apply(&key, &meta(2), &a, &mut writes).unwrap();
    // The cap took all of `double`'s extra: still a use.
    let b = promoted("b", 35, &[("double", 0, Some(90))]);
    state.apply(&key, &meta(3), &b, &mut writes).unwrap();
    let stats = |id: &str| writes.promotions.stats[&("o".to_owned(), id.to_owned())];
    assert_eq!(
        stats("double"),
        promotions::StatsDelta {
            uses: 2,
            points: 10,
            members: 1,
            budget_drawn: 10
        }
    );
    assert_eq!(
        stats("hello"),
        promotions::StatsDelta {
            uses: 1,
            points: 5,
            members: 1,
            budget_drawn: 0
        }
    );
    assert_eq!(writes.promotions.uses.len(), 3);
    assert_eq!(writes.promotions.daily.len(), 2);
    assert_eq!(writes.applied[&ReadModel::Promotions], 2);

    let at = Utc.with_ymd_and_hms(2024, 1, 3, 10, 0, 0).unwrap();
    let refund = MemberEvent::PurchaseRefunded {
        refund_id: "r".into(),
        transaction_id: "a".into(),
        location_id: "shop".into(),
        purchase_occurred_at: at,
        purchase_amount_minor: 1_000,
        purchase_points_earned: 25,
        amount_minor: 1_000,
        refunded_total_minor: 1_000,
        points_clawed_back: 25,
        balance_after: 10,
        qualifying_points: 10,
        occurred_at: at,
    };
    let mut after_refund = Writes::default();
    state.apply(&key, &meta(4), &refund, &mut after_refund).unwrap();
    assert!(after_refund.promotions.uses.is_empty() && after_refund.promotions.stats.is_empty());

    // A purchase naming a promotion twice is refused, and leaves the member's uses as before.
    let twice = promoted("c", 30, &[("new", 5, None), ("new", 5, None)]);
    let error = state
        .apply(&key, &meta(5), &twice, &mut Writes::default())
        .unwrap_err();
    assert!(error.to_string().contains("twice"), "{error}");
    assert_eq!(
        state.promotions.iter().map(String::as_str).collect::<Vec<_>>(),
        ["double", "hello"]
    );
}

#[test]
fn a_version_1_purchase_applies_no_promotion() {
    let key = MemberKey {
        org_id: "o".into(),
        member_id: Uuid::new_v4(),
    };
    let (mut state, _) = enrolled(&key);
    // A purchase as stored before promotions existed: no items, no breakdown.
    let payload = serde_json::json!({"PurchaseRecorded": {
        "transaction_id": "old", "location_id": "shop", "amount_minor": 1_250, "currency": "EUR",
        "occurred_at": "2024-01-03T10:00:00Z", "program_version": 1, "base_points": 12, "tier": "Bronze",
        "multiplier_bps": 10_000, "points_earned": 12, "expires_at": null, "balance_after": 12,
        "qualifying_points": 12}});
    let event = domain::codec::decode_member("PurchaseRecorded", "1", payload).unwrap();
    let mut writes = Writes::default();
    state.apply(&key, &meta(2), &event, &mut writes).unwrap();
    assert_eq!(state.balance.as_ref().unwrap().points.balance, 12);
    assert!(writes.promotions.uses.is_empty() && writes.promotions.stats.is_empty());
    assert!(!writes.applied.contains_key(&ReadModel::Promotions));
}

#[test]
fn a_breakdown_that_does_not_add_up_to_the_points_earned_is_refused() {
    let key = MemberKey {
        org_id: "o".into(),
        member_id: Uuid::new_v4(),
    };
    let (mut state, _) = enrolled(&key);
    let mut event = promoted("a", 15, &[("hello", 5, None)]);
    if let MemberEvent::PurchaseRecorded { breakdown, .. } = &mut event {
        breakdown.promotions[0].points = 6;
    }
    let error = state
        .apply(&key, &meta(2), &event, &mut Writes::default())
        .unwrap_err();
    assert!(error.to_string().contains("adds up to Some(16)"), "{error}");
    assert!(state.promotions.is_empty());
}

#[test]
fn an_event_a_later_read_model_refuses_leaves_the_member_as_it_was_lots_included() {
    let key = MemberKey {
        org_id: "o".into(),
        member_id: Uuid::new_v4(),
    };
    let (mut state, _) = enrolled(&key);
    let mut writes = Writes::default();
    state
        .apply(&key, &meta(2), &purchase("a", 10, 10), &mut writes)
        .unwrap();
    let before = state.clone();
    let at = Utc.with_ymd_and_hms(2024, 1, 3, 10, 0, 0).unwrap();
    // The balance and its lots take the clawback first; the purchases then refuse the refund.
    let refund = MemberEvent::PurchaseRefunded {
        refund_id: "r".into(),
        transaction_id: "unknown".into(),
        location_id: "shop".into(),
        purchase_occurred_at: at,
        purchase_amount_minor: 1_000,
        purchase_points_earned: 10,
        amount_minor: 500,
        refunded_total_minor: 500,
        points_clawed_back: 5,
        balance_after: 5,
        qualifying_points: 5,
        occurred_at: at,
    };
    let refused = state.apply(&key, &meta(3), &refund, &mut writes);
    assert!(refused.unwrap_err().to_string().contains("does not have"));
    assert_eq!(state.balance, before.balance);
    assert_eq!(format!("{state:?}"), format!("{before:?}"));
    assert_eq!(state.balance.as_ref().unwrap().lots.total(), 10);
}
