//! Property tests of SPEC §9 achievements through the `Member` aggregate: over random
//! achievements (every criterion, with and without windows) and random histories of purchases
//! (some late, at several stores) and refunds, each achievement unlocks at most once and only on
//! a purchase, exactly when its progress reaches the target; its reward is credited once,
//! through balanced postings; the books balance; and a replay of the events rebuilds the same
//! member. Replaying the history through the simulator under the program in force reproduces
//! every point.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Duration;
use common::promotions::*;
use domain::ledger::postings;
use domain::member::{Member, MemberCommand, MemberEvent, Refund};
use domain::program::{Achievement, ProgramEvent};
use domain::simulation::{Draft, Logged, Simulator};
use proptest::prelude::*;
use serde_json::json;

const STORES: [&str; 2] = [common::STORE, "store-2"];

fn achievement(i: usize) -> impl Strategy<Value = Achievement> {
    (
        prop_oneof![
            (1_u32..6).prop_map(|count| json!({"purchases": {"count": count}})),
            (500_i64..20_000).prop_map(|amount| json!({"spend": {"amount_minor": amount}})),
            (1_u32..3).prop_map(|count| json!({"locations": {"count": count}})),
            (1_u32..4).prop_map(|weeks| json!({"weekly_streak": {"weeks": weeks}})),
        ],
        proptest::option::of(30_u32..90),
        0_i64..300,
    )
        .prop_map(move |(criteria, window_days, reward_points)| {
            serde_json::from_value(json!({"achievement_id": format!("a{i}"), "name": format!("A{i}"),
                "criteria": criteria, "window_days": window_days, "reward_points": reward_points}))
            .unwrap()
        })
}

/// A purchase (amount, days after 2026-03-01, store) or a refund (index of an earlier purchase,
/// share of it in percent).
#[derive(Debug, Clone)]
enum Step {
    Buy(i64, i64, usize),
    Refund(prop::sample::Index, i64),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            4 => (100_i64..5_000, 0_i64..60, 0..STORES.len()).prop_map(|(a, d, s)| Step::Buy(a, d, s)),
            1 => (any::<prop::sample::Index>(), 10_i64..=100).prop_map(|(i, p)| Step::Refund(i, p)),
        ],
        1..40,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn achievements_unlock_once_on_purchases_with_balanced_rewards(
        achievements in (0_usize..4).prop_flat_map(|n| (0..n).map(achievement).collect::<Vec<_>>()),
        steps in steps(),
    ) {
        let mut shop = Shop::new(vec![]);
        Arc::make_mut(&mut shop.program.config).achievements = achievements.clone();
        let mut log: Vec<MemberEvent> = Vec::new();
        let mut bought: Vec<(String, i64)> = Vec::new();
        let mut unlocked: BTreeMap<String, usize> = BTreeMap::new();
        for (n, step) in steps.iter().enumerate() {
            let (command, is_purchase) = match step {
                Step::Buy(amount, day, store) => {
                    let at = (utc("2026-03-01T09:00:00Z") + Duration::days(*day)).to_rfc3339();
                    bought.push((format!("t{n}"), *amount));
                    (shop.purchase_at(&format!("t{n}"), *amount, &at, STORES[*store], None), true)
                }
                Step::Refund(index, percent) => {
                    if bought.is_empty() { continue; }
                    let (txn, amount) = index.get(&bought).clone();
                    (MemberCommand::RefundPurchase(Refund {
                        refund_id: format!("r{n}"), transaction_id: txn, amount_minor: (amount * percent / 100).max(1),
                        program: shop.program.clone(), at: utc("2026-05-15T00:00:00Z"),
                    }), false)
                }
            };
            let Ok(events) = shop.record(command) else { continue };
            for event in &events {
                let journal = postings(event);
                prop_assert_eq!(journal.iter().map(|p| p.delta).sum::<i64>(), 0);
                if let MemberEvent::AchievementUnlocked { achievement_id, reward_points, .. } = event {
                    prop_assert!(is_purchase, "a refund never unlocks");
                    *unlocked.entry(achievement_id.clone()).or_default() += 1;
                    let configured = achievements.iter().find(|a| &a.achievement_id == achievement_id).unwrap();
                    prop_assert_eq!(*reward_points, configured.reward_points);
                    prop_assert_eq!(journal.first().map(|p| p.delta).unwrap_or(0), *reward_points);
                }
            }
            log.extend(events);
        }
        for (id, times) in &unlocked {
            prop_assert_eq!(*times, 1, "{} unlocked once", id);
            let state = &shop.member.achievements[id];
            prop_assert!(state.progress >= state.target, "unlocked at its target");
        }
        for a in &achievements {
            if let Some(state) = shop.member.achievements.get(&a.achievement_id) {
                if state.unlocked_at.is_none() {
                    prop_assert!(state.progress < state.target || !unlocked.contains_key(&a.achievement_id));
                }
            }
        }
        let p = shop.member.points;
        prop_assert_eq!(p.balance, p.lifetime_earned + p.adjusted - p.redeemed - p.expired - p.clawed_back);
        let mut replayed = Member::default();
        replayed.execute(MemberCommand::Enroll(domain::member::NewMember {
            org_id: common::ORG.into(), member_id: common::member_id(), external_id: None, display_name: None,
            program: shop.program.clone(), at: utc("2025-12-01T00:00:00Z"),
        })).unwrap();
        for event in log.iter().cloned() {
            replayed.evolve(event);
        }
        prop_assert_eq!(&replayed, &shop.member);

        // The simulator, under the program in force, decides every purchase again identically.
        let mut simulator = Simulator::new(common::ORG, Draft::InForce, utc("2000-01-01T00:00:00Z"), utc("2100-01-01T00:00:00Z"));
        simulator.feed_program(ProgramEvent::ProgramConfigured {
            org_id: common::ORG.into(), version: shop.program.version, config: (*shop.program.config).clone(),
            configured_at: utc("2025-01-01T00:00:00Z"),
        });
        for location in shop.program.locations.iter() {
            simulator.feed_program(ProgramEvent::LocationRegistered {
                org_id: common::ORG.into(), location_id: location.clone(), name: location.clone(),
                registered_at: utc("2025-01-01T00:00:00Z"),
            });
        }
        let mut history = vec![replayed_enrolment(&shop)];
        history.extend(log.iter().cloned());
        for event in history {
            let recorded_at = match &event {
                MemberEvent::PurchaseRecorded { occurred_at, .. } => *occurred_at,
                _ => utc("2026-05-15T00:00:00Z"),
            };
            simulator.feed_member(common::member_id(), event, Logged { recorded_at, command: None });
        }
        let report = simulator.report();
        prop_assert_eq!(report.purchases_changed, 0);
        prop_assert_eq!(report.commands_refused, 0);
        prop_assert_eq!(report.actual_points, report.draft_points);
        prop_assert_eq!(report.actual_reward_points, report.draft_reward_points);
        prop_assert_eq!(report.liability_delta, 0);
    }
}

/// The enrolment event of the shop's member.
fn replayed_enrolment(shop: &Shop) -> MemberEvent {
    MemberEvent::MemberEnrolled {
        org_id: common::ORG.into(),
        member_id: common::member_id(),
        external_id: None,
        display_name: None,
        enrolled_at: utc("2025-12-01T00:00:00Z"),
        tier: shop.program.config.tiers[0].name.clone(),
        multiplier_bps: shop.program.config.tiers[0].multiplier_bps,
        program_version: shop.program.version,
    }
}
