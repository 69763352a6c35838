//! Given/when/then tests of the program's promotions (SPEC §9, §11): the JSON a marketer sends,
//! validation that names the offending field, and adding, changing and ending one promotion
//! inside the `Program` aggregate, each a new version of the whole program.

mod common;

use chrono::{DateTime, Utc};
use common::promotions::{promo, utc};
use common::*;
use cqrs_es::test::TestFramework;
use domain::calendar::TimeZone;
use domain::program::{Configuration, NewLocation, PromotionEdit, PromotionEnd};
use domain::program::{Program, ProgramCommand, ProgramConfig, ProgramError, ProgramEvent, Promotion};
use serde_json::{json, Value};

fn program_aggregate() -> TestFramework<Program> {
    TestFramework::with(())
}

fn configure(config: ProgramConfig) -> ProgramCommand {
    ProgramCommand::Configure(Configuration {
        org_id: ORG.into(),
        config,
        at: at(0, 9),
    })
}

fn configured(version: u64, config: ProgramConfig, at: DateTime<Utc>) -> ProgramEvent {
    ProgramEvent::ProgramConfigured {
        org_id: ORG.into(),
        version,
        config,
        configured_at: at,
    }
}

fn store_registered() -> ProgramEvent {
    ProgramEvent::LocationRegistered {
        org_id: ORG.into(),
        location_id: STORE.into(),
        name: "Main street".into(),
        registered_at: at(0, 8),
    }
}

fn with_promotions(promotions: Vec<Promotion>) -> ProgramConfig {
    let mut config = config();
    config.promotions = promotions;
    config
}

/// Configuring the default program with `promotions` (JSON) and `fields` is refused for `field`.
fn refused(fields: Value, field: &str) -> String {
    let mut body = serde_json::to_value(config()).unwrap();
    for (k, v) in fields.as_object().unwrap() {
        body[k] = v.clone();
    }
    let config: ProgramConfig = serde_json::from_value(body).unwrap();
    let mut program = Program::default();
    program.evolve(store_registered());
    let error = program.execute(configure(config)).unwrap_err();
    let ProgramError::InvalidConfig {
        field: named,
        message,
    } = &error
    else {
        panic!("not an invalid config: {error:?}");
    };
    assert_eq!(named, field, "{message}");
    assert_eq!(error.field().as_deref(), Some(field));
    assert_eq!(program.version, 0, "a refused program appends nothing");
    message.clone()
}

/// A promotion as JSON, `p` with a bonus, with `fields` in place of the defaults.
fn promotion_json(fields: Value) -> Value {
    serde_json::to_value(promo(fields)).unwrap()
}

/// The path serde names when the program JSON cannot even be read.
fn unreadable(body: Value) -> (String, String) {
    let error = serde_path_to_error::deserialize::<_, ProgramConfig>(body).unwrap_err();
    (error.path().to_string(), error.inner().to_string())
}

// ---------------------------------------------------------------------------------------------
// The JSON of SPEC §11
// ---------------------------------------------------------------------------------------------

#[test]
fn the_program_json_of_the_spec_reads_and_writes_back_the_same() {
    let body = json!({
        "currency": "EUR",
        "time_zone": "Europe/Paris",
        "earn_cap": {"points": 1000, "period": "day"},
        "promotions": [{
            "promotion_id": "double-tuesday", "name": "Double points on Tuesday afternoons",
            "starts_at": "2026-01-01T00:00:00Z", "ends_at": null,
            "schedule": {"days": ["tue"], "from": "14:00", "to": "18:00"},
            "conditions": {"min_amount_minor": 1000, "location_ids": ["store-1"], "tiers": ["Gold"],
                           "first_purchase": true, "inactive_days": 60, "skus": ["COF-1"], "categories": ["coffee"]},
            "effect": {"multiplier": {"multiplier_bps": 20000}},
            "stackable": false, "priority": 0,
            "limit": {"count": 1, "period": "day"},
            "budget_points": 1000000}]
    });
    let config: ProgramConfig = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(config.time_zone.name(), "Europe/Paris");
    assert_eq!(
        config
            .budgeted_promotions()
            .map(|p| p.promotion_id.as_str())
            .collect::<Vec<_>>(),
        ["double-tuesday"]
    );
    config.validate(&[STORE.to_owned()].into()).unwrap();
    let written = serde_json::to_value(&config).unwrap();
    assert_eq!(written["time_zone"], "Europe/Paris");
    assert_eq!(written["earn_cap"], body["earn_cap"]);
    assert_eq!(
        written["promotions"][0]["schedule"],
        body["promotions"][0]["schedule"]
    );
    assert_eq!(
        written["promotions"][0]["effect"],
        body["promotions"][0]["effect"]
    );
    assert_eq!(serde_json::from_value::<ProgramConfig>(written).unwrap(), config);
}

#[test]
fn a_program_stored_before_promotions_reads_as_utc_without_promotions_or_cap() {
    let old = json!({"currency": "EUR", "earn_rate": 1, "tiers": [{"name": "Bronze", "threshold_points": 0,
        "multiplier_bps": 10000}], "stamp_cards": [], "rewards": [], "expiry_days": 365,
        "qualification_window_days": 365, "downgrade_grace_days": 30});
    let config: ProgramConfig = serde_json::from_value(old).unwrap();
    assert_eq!(
        (config.time_zone, config.earn_cap, config.promotions.len()),
        (TimeZone::UTC, None, 0)
    );
}

#[test]
fn unreadable_promotions_name_the_field() {
    let with = |promotion: Value| json!({"currency": "EUR", "promotions": [promotion]});
    let mut bogus = promotion_json(json!({}));
    bogus["conditions"]["bogus"] = json!(1);
    assert_eq!(unreadable(with(bogus)).0, "promotions[0].conditions.bogus");
    let mut bogus = promotion_json(json!({}));
    bogus["colour"] = json!("red");
    assert_eq!(unreadable(with(bogus)).0, "promotions[0].colour");
    let mut two_effects = promotion_json(json!({}));
    two_effects["effect"] = json!({"bonus": {"points": 1}, "per_unit": {"points": 1}});
    assert!(unreadable(with(two_effects))
        .0
        .starts_with("promotions[0].effect"));
    let mut extra = promotion_json(json!({}));
    extra["effect"] = json!({"bonus": {"points": 1, "per": "visit"}});
    assert!(unreadable(with(extra)).0.starts_with("promotions[0].effect"));
    let (path, message) = unreadable(json!({"currency": "EUR", "time_zone": "Europe/Nowhere"}));
    assert_eq!(path, "time_zone");
    assert!(message.contains("IANA"), "{message}");
    let mut late = promotion_json(json!({}));
    late["schedule"] = json!({"days": ["mon"], "from": "09:00", "to": "24:01"});
    assert_eq!(unreadable(with(late)).0, "promotions[0].schedule.to");
    let mut someday = promotion_json(json!({}));
    someday["schedule"] = json!({"days": ["someday"], "from": "09:00", "to": "10:00"});
    assert_eq!(unreadable(with(someday)).0, "promotions[0].schedule.days[0]");
    assert_eq!(
        unreadable(json!({"currency": "EUR", "earn_cap": {"points": 5, "period": "year"}})).0,
        "earn_cap.period"
    );
    assert_eq!(
        unreadable(json!({"currency": "EUR", "earn_cap": {"points": 5, "period": "day", "x": 1}})).0,
        "earn_cap.x"
    );
}

// ---------------------------------------------------------------------------------------------
// Validation against the program and the org
// ---------------------------------------------------------------------------------------------

#[test]
fn a_schedule_window_must_end_after_it_starts() {
    let window = |from: &str, to: &str| json!({"promotions": [promotion_json(json!({"schedule": {"days": ["mon"], "from": from, "to": to}}))]});
    assert!(
        refused(window("18:00", "14:00"), "promotions[0].schedule.to").contains("later than from (18:00)")
    );
    refused(window("14:00", "14:00"), "promotions[0].schedule.to");
    refused(
        json!({"promotions": [promotion_json(json!({"schedule": {"days": [], "from": "09:00", "to": "10:00"}}))]}),
        "promotions[0].schedule.days",
    );
    refused(
        json!({"promotions": [promotion_json(json!({"schedule": {"days": ["mon", "mon"], "from": "09:00", "to": "10:00"}}))]}),
        "promotions[0].schedule.days",
    );
}

#[test]
fn a_multiplier_must_be_between_1_0001_and_10_times() {
    let multiplier = |bps: u32| json!({"promotions": [promotion_json(json!({"effect": {"multiplier": {"multiplier_bps": bps}}}))]});
    for bps in [0, 10_000, 100_001] {
        refused(multiplier(bps), "promotions[0].effect.multiplier.multiplier_bps");
    }
    for bps in [10_001, 100_000] {
        let mut config = config();
        config.promotions = vec![promo(json!({"effect": {"multiplier": {"multiplier_bps": bps}}}))];
        config.validate(&Default::default()).unwrap();
    }
}

#[test]
fn points_budgets_and_caps_must_be_positive() {
    let effect = |effect: Value| json!({"promotions": [promotion_json(json!({"effect": effect}))]});
    for points in [0, -5] {
        refused(
            effect(json!({"bonus": {"points": points}})),
            "promotions[0].effect.bonus.points",
        );
        refused(
            effect(json!({"per_unit": {"points": points}})),
            "promotions[0].effect.per_unit.points",
        );
        refused(
            json!({"promotions": [promotion_json(json!({"budget_points": points}))]}),
            "promotions[0].budget_points",
        );
        refused(
            json!({"earn_cap": {"points": points, "period": "week"}}),
            "earn_cap.points",
        );
    }
    refused(
        json!({"promotions": [promotion_json(json!({"limit": {"count": 0, "period": "day"}}))]}),
        "promotions[0].limit.count",
    );
    refused(
        json!({"promotions": [promotion_json(json!({"conditions": {"min_amount_minor": -1}}))]}),
        "promotions[0].conditions.min_amount_minor",
    );
    refused(
        json!({"promotions": [promotion_json(json!({"conditions": {"inactive_days": 0}}))]}),
        "promotions[0].conditions.inactive_days",
    );
}

#[test]
fn promotion_ids_are_unique_and_names_required() {
    let message = refused(
        json!({"promotions": [promotion_json(json!({"promotion_id": "a"})), promotion_json(json!({"promotion_id": "b"})),
                              promotion_json(json!({"promotion_id": "a"}))]}),
        "promotions[2].promotion_id",
    );
    assert!(message.contains("'a' is used by another promotion"));
    refused(
        json!({"promotions": [promotion_json(json!({"promotion_id": "a/b"}))]}),
        "promotions[0].promotion_id",
    );
    refused(
        json!({"promotions": [promotion_json(json!({"name": " "}))]}),
        "promotions[0].name",
    );
}

#[test]
fn a_promotion_cannot_end_before_it_starts() {
    refused(
        json!({"promotions": [promotion_json(json!({"starts_at": "2026-03-02T00:00:00Z", "ends_at": "2026-03-01T00:00:00Z"}))]}),
        "promotions[0].ends_at",
    );
}

#[test]
fn locations_must_be_registered_for_the_org_and_tiers_on_the_ladder() {
    let message = refused(
        json!({"promotions": [promotion_json(json!({"conditions": {"location_ids": [STORE, "store-9"]}}))]}),
        "promotions[0].conditions.location_ids[1]",
    );
    assert!(message.contains("'store-9' is not a location registered for this org"));
    refused(
        json!({"promotions": [promotion_json(json!({"conditions": {"tiers": ["Gold", "Diamond"]}}))]}),
        "promotions[0].conditions.tiers[1]",
    );
    refused(
        json!({"promotions": [promotion_json(json!({"conditions": {"skus": []}}))]}),
        "promotions[0].conditions.skus",
    );
    refused(
        json!({"promotions": [promotion_json(json!({"conditions": {"categories": ["coffee", "coffee"]}}))]}),
        "promotions[0].conditions.categories[1]",
    );
}

#[test]
fn a_program_naming_a_registered_location_is_a_new_version() {
    let named = with_promotions(vec![promo(json!({"conditions": {"location_ids": [STORE]}}))]);
    program_aggregate()
        .given(vec![store_registered(), configured(1, config(), at(0, 9))])
        .when(configure(named.clone()))
        .then_expect_events(vec![configured(2, named, at(0, 9))]);
}

// ---------------------------------------------------------------------------------------------
// Adding, changing and ending one promotion
// ---------------------------------------------------------------------------------------------

/// A program in force (version 1, one promotion `p`) at the store.
fn in_force() -> Program {
    let mut program = Program::default();
    program.evolve(store_registered());
    program.evolve(configured(1, with_promotions(vec![promo(json!({}))]), at(0, 9)));
    program
}

/// The one event of `command`, checked to be the next version dated when it was decided; its
/// config.
fn next_version(program: &mut Program, command: ProgramCommand) -> ProgramConfig {
    let next = program.version + 1;
    let events = program.execute(command).unwrap();
    let [ProgramEvent::ProgramConfigured {
        org_id,
        version,
        config,
        configured_at,
    }] = events.as_slice()
    else {
        panic!("{events:?}");
    };
    assert_eq!((org_id.as_str(), *version), (ORG, next));
    assert_eq!(*configured_at, decided());
    config.clone()
}

#[test]
fn adding_a_promotion_appends_it_in_a_new_version() {
    let mut program = in_force();
    let added = promo(json!({"promotion_id": "q", "conditions": {"location_ids": [STORE]}}));
    let config = next_version(&mut program, add(added.clone()));
    assert_eq!(config, with_promotions(vec![promo(json!({})), added.clone()]));
    assert_eq!(program.config.as_deref(), Some(&config));
    assert_eq!(
        program.execute(add(added)),
        Err(ProgramError::PromotionExists("q".into()))
    );
    assert_eq!(
        ProgramError::PromotionExists("q".into()).code(),
        "promotion_exists"
    );
}

#[test]
fn an_added_promotion_is_validated_at_its_place_in_the_program() {
    let mut program = in_force();
    let bad = promo(json!({"promotion_id": "q", "effect": {"multiplier": {"multiplier_bps": 9000}}}));
    assert!(matches!(
        program.execute(add(bad)),
        Err(ProgramError::InvalidConfig { field, .. }) if field == "promotions[1].effect.multiplier.multiplier_bps"
    ));
    assert_eq!(program.version, 1);
}

#[test]
fn a_promotion_cannot_be_added_to_a_program_not_configured_yet() {
    let mut program = Program::default();
    program.evolve(store_registered());
    let error = program.execute(add(promo(json!({})))).unwrap_err();
    assert_eq!((error, program.version), (ProgramError::NotConfigured, 0));
}

#[test]
fn changing_a_promotion_replaces_it_and_an_unchanged_one_is_no_new_version() {
    let mut program = in_force();
    let changed = promo(json!({"effect": {"bonus": {"points": 25}}, "stackable": true}));
    assert_eq!(program.execute(change(promo(json!({})))), Ok(vec![]));
    let config = next_version(&mut program, change(changed.clone()));
    assert_eq!(config.promotions, [changed]);
    let error = program
        .execute(change(promo(json!({"promotion_id": "nope"}))))
        .unwrap_err();
    assert_eq!(error, ProgramError::PromotionNotFound("nope".into()));
    assert_eq!(
        (error.code(), error.field().as_deref()),
        ("promotion_not_found", Some("promotion_id"))
    );
    let invalid = promo(json!({"conditions": {"tiers": ["Diamond"]}}));
    assert!(matches!(
        program.execute(change(invalid)),
        Err(ProgramError::InvalidConfig { field, .. }) if field == "promotions[0].conditions.tiers[0]"
    ));
}

fn end(promotion_id: &str, at: &str) -> ProgramCommand {
    ProgramCommand::EndPromotion(PromotionEnd {
        promotion_id: promotion_id.into(),
        ends_at: utc(at),
        at: decided(),
    })
}

/// When the admin commands of these tests are decided.
fn decided() -> DateTime<Utc> {
    utc("2026-06-01T12:00:00Z")
}

fn add(promotion: Promotion) -> ProgramCommand {
    ProgramCommand::AddPromotion(PromotionEdit {
        promotion,
        at: decided(),
    })
}

fn change(promotion: Promotion) -> ProgramCommand {
    ProgramCommand::ChangePromotion(PromotionEdit {
        promotion,
        at: decided(),
    })
}

#[test]
fn ending_a_promotion_sets_its_end_once() {
    let mut program = in_force();
    let config = next_version(&mut program, end("p", "2026-03-03T10:00:00Z"));
    assert_eq!(
        config,
        with_promotions(vec![promo(json!({"ends_at": "2026-03-03T10:00:00Z"}))])
    );
    // Again, or later: it has already ended.
    assert_eq!(program.execute(end("p", "2026-03-03T10:00:00Z")), Ok(vec![]));
    assert_eq!(program.execute(end("p", "2026-04-01T00:00:00Z")), Ok(vec![]));
    // Earlier: the earlier end holds.
    let config = next_version(&mut program, end("p", "2026-03-02T00:00:00Z"));
    assert_eq!(config.promotions[0].ends_at, Some(utc("2026-03-02T00:00:00Z")));
}

#[test]
fn ending_a_promotion_before_it_starts_ends_it_at_its_start() {
    let mut program = Program::default();
    program.evolve(store_registered());
    let starting_in_june = promo(json!({"starts_at": "2026-06-01T00:00:00Z"}));
    program.evolve(configured(1, with_promotions(vec![starting_in_june]), at(0, 9)));
    let config = next_version(&mut program, end("p", "2026-03-03T10:00:00Z"));
    let never_ran = promo(json!({"starts_at": "2026-06-01T00:00:00Z", "ends_at": "2026-06-01T00:00:00Z"}));
    assert_eq!(config.promotions, [never_ran]);
    assert_eq!(
        program.execute(end("q", "2026-03-03T10:00:00Z")),
        Err(ProgramError::PromotionNotFound("q".into()))
    );
}

#[test]
fn two_admins_changing_different_promotions_both_keep_their_change() {
    // Each change is decided against the program in force, not a copy the admin read earlier.
    let mut program = in_force();
    program.execute(add(promo(json!({"promotion_id": "q"})))).unwrap();
    program
        .execute(change(promo(json!({"effect": {"bonus": {"points": 99}}}))))
        .unwrap();
    let ids_and_effects: Vec<_> = program
        .config
        .unwrap()
        .promotions
        .iter()
        .map(|p| (p.promotion_id.clone(), p.effect))
        .collect();
    assert_eq!(
        ids_and_effects,
        [
            (
                "p".to_owned(),
                promo(json!({"effect": {"bonus": {"points": 99}}})).effect
            ),
            ("q".to_owned(), promo(json!({})).effect)
        ]
    );
    assert_eq!(program.version, 3);
}

#[test]
fn a_location_registered_later_may_be_named_by_a_later_promotion() {
    let mut program = in_force();
    let command = add(promo(
        json!({"promotion_id": "q", "conditions": {"location_ids": ["store-2"]}}),
    ));
    assert!(matches!(
        program.execute(command.clone()),
        Err(ProgramError::InvalidConfig { .. })
    ));
    program
        .execute(ProgramCommand::RegisterLocation(NewLocation {
            org_id: ORG.into(),
            location_id: "store-2".into(),
            name: "Station".into(),
            at: at(1, 8),
        }))
        .unwrap();
    next_version(&mut program, command);
}
