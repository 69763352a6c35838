//! Given/when/then tests of the `Program` aggregate (SPEC §3): validation that names the
//! offending field, versioning, idempotent re-configuration and locations.

mod common;

use common::*;
use cqrs_es::test::TestFramework;
use domain::program::{Configuration, NewLocation};
use domain::program::{Program, ProgramCommand, ProgramConfig, ProgramError, ProgramEvent};

fn program_aggregate() -> TestFramework<Program> {
    TestFramework::with(())
}

fn configure(config: ProgramConfig, day: i64) -> ProgramCommand {
    ProgramCommand::Configure(Configuration {
        org_id: ORG.into(),
        config,
        at: at(day, 9),
    })
}

fn configured(version: u64, config: ProgramConfig, day: i64) -> ProgramEvent {
    ProgramEvent::ProgramConfigured {
        org_id: ORG.into(),
        version,
        config,
        configured_at: at(day, 9),
    }
}

fn register(location_id: &str, name: &str) -> ProgramCommand {
    ProgramCommand::RegisterLocation(NewLocation {
        org_id: ORG.into(),
        location_id: location_id.into(),
        name: name.into(),
        at: at(0, 8),
    })
}

fn registered(location_id: &str, name: &str) -> ProgramEvent {
    ProgramEvent::LocationRegistered {
        org_id: ORG.into(),
        location_id: location_id.into(),
        name: name.into(),
        registered_at: at(0, 8),
    }
}

/// Asserts that configuring `change`d default config is refused for `field` with `message`.
fn refused(change: impl FnOnce(&mut ProgramConfig), field: &str, message: &str) {
    let mut config = config();
    change(&mut config);
    program_aggregate()
        .given_no_previous_events()
        .when(configure(config, 0))
        .then_expect_error(ProgramError::InvalidConfig {
            field: field.into(),
            message: message.into(),
        });
}

fn richer_config() -> ProgramConfig {
    let mut config = config();
    config.earn_rate = 2;
    config
}

// ---------------------------------------------------------------------------------------------
// Versions
// ---------------------------------------------------------------------------------------------

#[test]
fn first_configuration_is_version_1() {
    program_aggregate()
        .given_no_previous_events()
        .when(configure(config(), 0))
        .then_expect_events(vec![configured(1, config(), 0)]);
}

#[test]
fn every_change_bumps_the_version() {
    program_aggregate()
        .given(vec![configured(1, config(), 0)])
        .when(configure(richer_config(), 5))
        .then_expect_events(vec![configured(2, richer_config(), 5)]);
}

#[test]
fn identical_re_put_is_no_new_version() {
    program_aggregate()
        .given(vec![
            configured(1, config(), 0),
            configured(2, richer_config(), 5),
        ])
        .when(configure(richer_config(), 6))
        .then_expect_events(vec![]);
}

#[test]
fn returning_to_an_earlier_configuration_is_a_new_version() {
    program_aggregate()
        .given(vec![
            configured(1, config(), 0),
            configured(2, richer_config(), 5),
        ])
        .when(configure(config(), 6))
        .then_expect_events(vec![configured(3, config(), 6)]);
}

#[test]
fn registering_a_location_keeps_the_rules_version() {
    // Member events record the version of the *rules* they were computed with; a new store
    // changes no rule.
    program_aggregate()
        .given(vec![configured(1, config(), 0), registered(STORE, "Main street")])
        .when(configure(richer_config(), 5))
        .then_expect_events(vec![configured(2, richer_config(), 5)]);
}

// ---------------------------------------------------------------------------------------------
// Validation: each error names the field
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_currency_is_refused() {
    let mut config = config();
    config.currency = "EURO".into();
    program_aggregate()
        .given_no_previous_events()
        .when(configure(config, 0))
        .then_expect_error(ProgramError::UnknownCurrency("EURO".into()));
}

#[test]
fn lowercase_currency_code_is_refused() {
    let mut config = config();
    config.currency = "eur".into();
    program_aggregate()
        .given_no_previous_events()
        .when(configure(config, 0))
        .then_expect_error(ProgramError::UnknownCurrency("eur".into()));
}

#[test]
fn earn_rate_of_zero_is_refused() {
    refused(|c| c.earn_rate = 0, "earn_rate", "must be between 1 and 1000000");
}

#[test]
fn empty_tier_ladder_is_refused() {
    refused(|c| c.tiers.clear(), "tiers", "at least one tier is required");
}

#[test]
fn first_tier_must_start_at_zero() {
    refused(
        |c| c.tiers[0].threshold_points = 10,
        "tiers[0].threshold_points",
        "the first tier must start at 0",
    );
}

#[test]
fn tier_thresholds_must_strictly_increase() {
    refused(
        |c| c.tiers[2].threshold_points = 500,
        "tiers[2].threshold_points",
        "thresholds must be strictly increasing",
    );
}

#[test]
fn tier_names_must_be_unique() {
    refused(
        |c| c.tiers[1].name = "Bronze".into(),
        "tiers[1].name",
        "tier names must be unique",
    );
}

#[test]
fn tier_name_is_measured_in_characters_not_bytes() {
    // 40 characters, 80 bytes in UTF-8: within the 64-character limit.
    let mut config = config();
    config.tiers[3].name = "é".repeat(40);
    program_aggregate()
        .given_no_previous_events()
        .when(configure(config.clone(), 0))
        .then_expect_events(vec![configured(1, config, 0)]);
}

#[test]
fn tier_name_longer_than_64_characters_is_refused() {
    refused(
        |c| c.tiers[3].name = "P".repeat(65),
        "tiers[3].name",
        "must be 1 to 64 characters",
    );
}

#[test]
fn tier_multiplier_of_zero_is_refused() {
    refused(
        |c| c.tiers[1].multiplier_bps = 0,
        "tiers[1].multiplier_bps",
        "must be between 1 and 100000",
    );
}

#[test]
fn reward_costing_nothing_is_refused() {
    refused(
        |c| c.rewards[1].points_cost = 0,
        "rewards[1].points_cost",
        "must be greater than 0",
    );
}

#[test]
fn duplicate_reward_ids_are_refused() {
    refused(
        |c| c.rewards[2].reward_id = "tote".into(),
        "rewards[2].reward_id",
        "reward ids must be unique",
    );
}

#[test]
fn stamp_card_must_issue_a_reward_of_the_catalogue() {
    refused(
        |c| c.stamp_cards[0].reward_id = "free-muffin".into(),
        "stamp_cards[0].reward_id",
        "must name a reward of the catalogue",
    );
}

#[test]
fn stamp_card_needing_no_stamps_is_refused() {
    refused(
        |c| c.stamp_cards[0].stamps_required = 0,
        "stamp_cards[0].stamps_required",
        "must be between 1 and 1000",
    );
}

#[test]
fn stamp_card_with_a_negative_minimum_amount_is_refused() {
    refused(
        |c| c.stamp_cards[0].min_amount_minor = -1,
        "stamp_cards[0].min_amount_minor",
        "must not be negative",
    );
}

#[test]
fn expiry_of_zero_days_is_refused() {
    refused(
        |c| c.expiry_days = Some(0),
        "expiry_days",
        "must be between 1 and 36500, or null for never",
    );
}

#[test]
fn expiry_beyond_the_calendar_is_refused() {
    // 4294967295 days is 11 million years: every purchase's expiry date would overflow.
    refused(
        |c| c.expiry_days = Some(u32::MAX),
        "expiry_days",
        "must be between 1 and 36500, or null for never",
    );
}

#[test]
fn qualification_window_of_zero_days_is_refused() {
    refused(
        |c| c.qualification_window_days = 0,
        "qualification_window_days",
        "must be between 1 and 36500",
    );
}

#[test]
fn qualification_window_beyond_the_calendar_is_refused() {
    refused(
        |c| c.qualification_window_days = u32::MAX,
        "qualification_window_days",
        "must be between 1 and 36500",
    );
}

#[test]
fn downgrade_grace_beyond_the_calendar_is_refused() {
    refused(
        |c| c.downgrade_grace_days = u32::MAX,
        "downgrade_grace_days",
        "must be at most 36500",
    );
}

#[test]
fn refused_configuration_appends_nothing_and_keeps_the_version() {
    let mut broken = richer_config();
    broken.earn_rate = -1;
    program_aggregate()
        .given(vec![configured(1, config(), 0)])
        .when(configure(broken, 1))
        .then_expect_error(ProgramError::InvalidConfig {
            field: "earn_rate".into(),
            message: "must be between 1 and 1000000".into(),
        });
}

#[test]
fn configuring_another_orgs_program_is_refused() {
    program_aggregate()
        .given(vec![configured(1, config(), 0)])
        .when(ProgramCommand::Configure(Configuration {
            org_id: "globex".into(),
            config: config(),
            at: at(1, 9),
        }))
        .then_expect_error(ProgramError::WrongOrg {
            expected: ORG.into(),
            got: "globex".into(),
        });
}

#[test]
fn configuring_with_an_invalid_org_id_is_refused() {
    program_aggregate()
        .given_no_previous_events()
        .when(ProgramCommand::Configure(Configuration {
            org_id: "-acme".into(),
            config: config(),
            at: at(1, 9),
        }))
        .then_expect_error(ProgramError::InvalidOrgId("-acme".into()));
}

// ---------------------------------------------------------------------------------------------
// Locations
// ---------------------------------------------------------------------------------------------

#[test]
fn registering_a_location_records_its_trimmed_name() {
    program_aggregate()
        .given(vec![configured(1, config(), 0)])
        .when(register(STORE, "  Main street "))
        .then_expect_events(vec![registered(STORE, "Main street")]);
}

#[test]
fn registering_the_same_location_again_is_one_registration() {
    program_aggregate()
        .given(vec![registered(STORE, "Main street")])
        .when(register(STORE, "Main street"))
        .then_expect_events(vec![]);
}

#[test]
fn registering_a_taken_location_id_under_another_name_is_refused() {
    program_aggregate()
        .given(vec![registered(STORE, "Main street")])
        .when(register(STORE, "Harbour"))
        .then_expect_error(ProgramError::LocationAlreadyRegistered(STORE.into()));
}

#[test]
fn location_id_must_be_a_slug() {
    program_aggregate()
        .given_no_previous_events()
        .when(register("Store 1", "Main street"))
        .then_expect_error(ProgramError::InvalidLocationId("Store 1".into()));
}

#[test]
fn location_without_a_name_is_refused() {
    program_aggregate()
        .given_no_previous_events()
        .when(register(STORE, "   "))
        .then_expect_error(ProgramError::InvalidLocationName);
}

#[test]
fn snapshot_carries_the_version_rules_and_locations_in_force() {
    let mut program = Program::default();
    for event in [
        configured(1, config(), 0),
        registered(STORE, "Main street"),
        configured(2, richer_config(), 5),
    ] {
        cqrs_es::Aggregate::apply(&mut program, event);
    }
    let snapshot = program.snapshot().unwrap();
    assert_eq!(snapshot.version, 2);
    assert_eq!(*snapshot.config, richer_config());
    assert_eq!(
        snapshot.locations.iter().cloned().collect::<Vec<_>>(),
        vec![STORE.to_owned()]
    );
    assert_eq!(Program::default().snapshot(), None);
}
