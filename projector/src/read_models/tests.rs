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
    // The clawback counts against the purchase's own location and periods.
    assert!(writes.leaderboard.0.iter().all(|(k, op)| op.delta == -5
        && ["", "shop"].contains(&k.location_id.as_str())
        && ["2024-W01", "2024-01", "all"].contains(&k.period_key.as_str())));
}

#[test]
fn every_table_of_the_schema_belongs_to_one_read_model_or_to_the_progress() {
    let migration = include_str!("../../../schema/migrations/0004_read_models.sql");
    let mut created: Vec<&str> = migration
        .lines()
        .filter_map(|line| line.strip_prefix("CREATE TABLE rm."))
        .map(str::trim)
        .collect();
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
