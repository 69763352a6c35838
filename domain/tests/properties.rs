//! Property tests of the `Member` aggregate over random command sequences: enrolment, then
//! purchases of random amounts (some sent late by offline terminals, some re-sent), partial and
//! excessive refunds, redemptions, positive and negative adjustments, expiries and tier
//! re-evaluations, with time moving forward by random steps and a random expiry/window/grace
//! policy. After every step the books must balance and the state must be what its events say.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::*;
use cqrs_es::Aggregate;
use domain::ledger::{postings, Account};
use domain::member::{takes_from_lots, Lot, LotKey, Lots, Member, MemberCommand, MemberError, MemberEvent};
use domain::member::{Adjustment, Expiry, NewMember, Purchase, Receipt, Redemption, Refund, TierReview};
use domain::money::{apply_multiplier, base_points, cumulative_clawback};
use domain::program::ProgramSnapshot;
use proptest::prelude::*;
use proptest::sample::Index;

#[derive(Debug, Clone)]
enum Op {
    /// Let time pass.
    Advance {
        hours: i64,
    },
    /// A purchase printed `late_hours` ago; `resend` re-sends an earlier receipt instead.
    Purchase {
        amount_minor: i64,
        late_hours: i64,
        resend: Option<Index>,
    },
    /// A refund of `permille`/1000 of a purchase (above 1000: more than was bought);
    /// `reuse` re-sends an earlier refund id.
    Refund {
        purchase: Index,
        permille: i64,
        reuse: Option<Index>,
    },
    Redeem {
        reward: Index,
        reuse: Option<Index>,
    },
    Adjust {
        delta: i64,
        with_reason: bool,
    },
    /// A negative adjustment of the whole balance, so that later clawbacks go below zero.
    Drain,
    Expire,
    Reevaluate,
    /// A purchase that must be refused: zero, negative or in a foreign currency.
    BadPurchase {
        kind: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..24 * 120_i64).prop_map(|hours| Op::Advance { hours }),
        6 => (prop_oneof![4 => 1..30_000_i64, 1 => 30_000..300_000_i64], prop_oneof![3 => Just(0_i64), 1 => 0..72_i64], proptest::option::weighted(0.1, any::<Index>()))
            .prop_map(|(amount_minor, late_hours, resend)| Op::Purchase { amount_minor, late_hours, resend }),
        3 => (any::<Index>(), 1..1_100_i64, proptest::option::weighted(0.15, any::<Index>()))
            .prop_map(|(purchase, permille, reuse)| Op::Refund { purchase, permille, reuse }),
        2 => (any::<Index>(), proptest::option::weighted(0.15, any::<Index>()))
            .prop_map(|(reward, reuse)| Op::Redeem { reward, reuse }),
        2 => (-600..600_i64, prop::bool::weighted(0.9))
            .prop_map(|(delta, with_reason)| Op::Adjust { delta, with_reason }),
        1 => Just(Op::Drain),
        3 => Just(Op::Expire),
        3 => Just(Op::Reevaluate),
        1 => (0..3_u8).prop_map(|kind| Op::BadPurchase { kind }),
    ]
}

fn policy() -> impl Strategy<Value = ProgramSnapshot> {
    (
        proptest::option::weighted(0.85, 1..400_u32),
        1..400_u32,
        0..60_u32,
    )
        .prop_map(|(expiry_days, window, grace)| {
            program_with(|c| {
                c.expiry_days = expiry_days;
                c.qualification_window_days = window;
                c.downgrade_grace_days = grace;
            })
        })
}

const REWARDS: [&str; 4] = ["free-coffee", "tote", "mug", "yacht"];

/// Turns an abstract step into a command against the member as it is now.
fn command(
    op: &Op,
    member: &Member,
    program: &ProgramSnapshot,
    now: DateTime<Utc>,
    step: usize,
) -> MemberCommand {
    match op {
        Op::Advance { .. } => unreachable!("time steps are not commands"),
        Op::Purchase {
            amount_minor,
            late_hours,
            resend,
        } => {
            if let Some((tx, p)) = resend.and_then(|i| pick(&member.purchases, i)) {
                return MemberCommand::RecordPurchase(Purchase {
                    receipt: Receipt {
                        transaction_id: tx.clone(),
                        location_id: p.location_id.clone(),
                        amount_minor: p.amount_minor,
                        currency: p.currency.clone(),
                        occurred_at: p.occurred_at,
                        items: None,
                    },
                    program: program.clone(),
                    recorded_at: now,
                    budgets_left: Default::default(),
                });
            }
            MemberCommand::RecordPurchase(Purchase {
                receipt: Receipt {
                    transaction_id: format!("t{step}"),
                    location_id: STORE.into(),
                    amount_minor: *amount_minor,
                    currency: EUR.into(),
                    occurred_at: now - Duration::hours(*late_hours),
                    items: None,
                },
                program: program.clone(),
                recorded_at: now,
                budgets_left: Default::default(),
            })
        }
        Op::Refund {
            purchase,
            permille,
            reuse,
        } => {
            let (transaction_id, amount) = match pick(&member.purchases, *purchase) {
                Some((tx, p)) => (tx.clone(), (p.amount_minor * permille / 1000).max(1)),
                None => ("t-none".to_owned(), 100),
            };
            let refund_id = reuse
                .and_then(|i| pick(&member.refunds, i))
                .map_or(format!("r{step}"), |(id, _)| id.clone());
            MemberCommand::RefundPurchase(Refund {
                refund_id,
                transaction_id,
                amount_minor: amount,
                program: program.clone(),
                at: now,
            })
        }
        Op::Redeem { reward, reuse } => {
            let reward_id = *reward.get(&REWARDS);
            let redemption_id = reuse
                .and_then(|i| pick(&member.redemptions, i))
                .map_or(format!("rd{step}"), |(id, _)| id.clone());
            MemberCommand::RedeemReward(Redemption {
                redemption_id,
                reward_id: reward_id.into(),
                reward: program.config.reward(reward_id).cloned(),
                at: now,
            })
        }
        Op::Adjust { delta, with_reason } => MemberCommand::AdjustPoints(Adjustment {
            adjustment_id: format!("a{step}"),
            delta: *delta,
            reason: if *with_reason {
                "support ticket".into()
            } else {
                " ".into()
            },
            expiry_days: program.config.expiry_days,
            at: now,
        }),
        Op::Drain => MemberCommand::AdjustPoints(Adjustment {
            adjustment_id: format!("a{step}"),
            delta: -member.points.balance.max(1),
            reason: "account closed".into(),
            expiry_days: program.config.expiry_days,
            at: now,
        }),
        Op::Expire => MemberCommand::ExpirePoints(Expiry { as_of: now }),
        Op::Reevaluate => MemberCommand::ReevaluateTier(TierReview {
            as_of: now,
            program: program.clone(),
        }),
        Op::BadPurchase { kind } => MemberCommand::RecordPurchase(Purchase {
            receipt: Receipt {
                transaction_id: format!("bad{step}"),
                location_id: STORE.into(),
                amount_minor: match kind {
                    0 => 0,
                    1 => -1_000,
                    _ => 1_000,
                },
                currency: if *kind == 2 { "USD".into() } else { EUR.into() },
                occurred_at: now,
                items: None,
            },
            program: program.clone(),
            recorded_at: now,
            budgets_left: Default::default(),
        }),
    }
}

fn pick<V>(map: &std::collections::BTreeMap<String, V>, index: Index) -> Option<(&String, &V)> {
    if map.is_empty() {
        None
    } else {
        map.iter().nth(index.index(map.len()))
    }
}

/// The books as the event log alone tells them.
#[derive(Debug, Default)]
struct Books {
    member_account: i64,
    liability_account: i64,
    earned: i64,
    adjusted: i64,
    redeemed: i64,
    expired: i64,
    clawed_back: i64,
}

fn is_system_job(command: &MemberCommand) -> bool {
    matches!(
        command,
        MemberCommand::ExpirePoints(Expiry { .. }) | MemberCommand::ReevaluateTier(TierReview { .. })
    )
}

/// Checks one accepted event against the books and the member state it produced.
fn check_event(
    event: &MemberEvent,
    books: &mut Books,
    before: &Member,
    program: &ProgramSnapshot,
) -> Result<(), TestCaseError> {
    // Events are a wire schema: what is stored is what is read back.
    let json = serde_json::to_string(event).unwrap();
    prop_assert_eq!(&serde_json::from_str::<MemberEvent>(&json).unwrap(), event);
    let entry = postings(event);
    prop_assert_eq!(
        entry.iter().map(|p| p.delta).sum::<i64>(),
        0,
        "unbalanced entry {:?}",
        event
    );
    for posting in &entry {
        match posting.account {
            Account::MemberPoints => books.member_account += posting.delta,
            Account::OrgLiability => books.liability_account += posting.delta,
        }
    }
    let balance_before = books.member_account
        - entry
            .iter()
            .filter(|p| p.account == Account::MemberPoints)
            .map(|p| p.delta)
            .sum::<i64>();
    match event {
        MemberEvent::PurchaseRecorded {
            amount_minor,
            points_earned,
            base_points: base,
            tier,
            multiplier_bps,
            balance_after,
            ..
        } => {
            books.earned += points_earned;
            // The formula of SPEC §3 with the tier held before the purchase.
            prop_assert_eq!(tier, &before.tier.name);
            let expected_base = base_points(*amount_minor, program.config.earn_rate, 2).unwrap();
            prop_assert_eq!(*base, expected_base);
            prop_assert_eq!(
                *points_earned,
                apply_multiplier(expected_base, *multiplier_bps).unwrap()
            );
            prop_assert_eq!(*balance_after, books.member_account);
        }
        MemberEvent::PurchaseRefunded {
            points_clawed_back,
            balance_after,
            ..
        } => {
            books.clawed_back += points_clawed_back;
            prop_assert_eq!(*balance_after, books.member_account);
        }
        MemberEvent::RewardRedeemed {
            points_cost,
            balance_after,
            ..
        } => {
            prop_assert!(
                balance_before >= 0,
                "redemption accepted while the balance was {}",
                balance_before
            );
            books.redeemed += points_cost;
            prop_assert_eq!(*balance_after, books.member_account);
        }
        MemberEvent::PointsAdjusted {
            delta, balance_after, ..
        } => {
            prop_assert!(
                *delta > 0 || balance_before >= 0,
                "negative adjustment accepted while the balance was {}",
                balance_before
            );
            books.adjusted += delta;
            prop_assert_eq!(*balance_after, books.member_account);
        }
        MemberEvent::PointsExpired {
            points,
            balance_after,
            ..
        } => {
            prop_assert!(*points > 0);
            books.expired += points;
            prop_assert_eq!(*balance_after, books.member_account);
        }
        _ => {}
    }
    // Only a clawback may take a balance below zero or deeper into it.
    if books.member_account < 0 && books.member_account < balance_before {
        prop_assert!(
            matches!(event, MemberEvent::PurchaseRefunded { .. }),
            "{:?} took the balance from {} to {}",
            event,
            balance_before,
            books.member_account
        );
    }
    Ok(())
}

/// Checks the member state against the books after a command.
fn check_state(member: &Member, books: &Books, log: &[MemberEvent]) -> Result<(), TestCaseError> {
    // The qualifying points of any window are those of the purchases in it, net of clawbacks.
    for purchase in member.purchases.values() {
        for (as_of, window_days) in [
            (purchase.occurred_at, 1),
            (purchase.occurred_at + Duration::hours(5), 2),
        ] {
            let start = as_of - Duration::days(window_days);
            let expected: i64 = member
                .purchases
                .values()
                .filter(|p| p.occurred_at > start && p.occurred_at <= as_of)
                .map(|p| p.points_earned - p.clawed_back)
                .sum();
            prop_assert_eq!(member.qualifying_points(as_of, window_days as u32), expected);
        }
    }
    // Σ member postings = balance = −liability.
    prop_assert_eq!(books.member_account, member.points.balance);
    prop_assert_eq!(books.liability_account, -member.points.balance);
    prop_assert_eq!(
        member.points.balance,
        books.earned + books.adjusted - books.redeemed - books.expired - books.clawed_back
    );
    prop_assert_eq!(
        member.points.balance,
        member.points.lifetime_earned + member.points.adjusted
            - member.points.redeemed
            - member.points.expired
            - member.points.clawed_back
    );
    prop_assert_eq!(
        (
            member.points.lifetime_earned,
            member.points.adjusted,
            member.points.redeemed,
            member.points.expired,
            member.points.clawed_back
        ),
        (
            books.earned,
            books.adjusted,
            books.redeemed,
            books.expired,
            books.clawed_back
        )
    );
    // Lots hold exactly the points the member has (none while owing).
    prop_assert!(
        member.lots.iter().all(|(_, points)| points > 0),
        "empty lot in {:?}",
        member.lots
    );
    let in_lots = member.lots.total();
    prop_assert_eq!(in_lots, member.points.balance.max(0), "lots {:?}", member.lots);
    // Every purchase's refunds stay within it and claw back exactly the cumulative share.
    for (tx, p) in &member.purchases {
        prop_assert!(p.refunded_minor <= p.amount_minor, "{} over-refunded", tx);
        prop_assert_eq!(
            p.clawed_back,
            cumulative_clawback(p.points_earned, p.refunded_minor, p.amount_minor).unwrap()
        );
    }
    // The state is exactly what its events say.
    prop_assert_eq!(&replay(log), member);
    Ok(())
}

fn run(program: ProgramSnapshot, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut member = Member::default();
    let mut log = Vec::new();
    let mut books = Books::default();
    let mut now = at(0, 0);

    let enrolment = MemberCommand::Enroll(NewMember {
        org_id: ORG.into(),
        member_id: member_id(),
        external_id: None,
        display_name: None,
        program: program.clone(),
        at: now,
    });
    log.extend(runtime.block_on(decide(&mut member, enrolment)).unwrap());

    for (step, op) in ops.iter().enumerate() {
        if let Op::Advance { hours } = op {
            now += Duration::hours(*hours);
            continue;
        }
        let command = command(op, &member, &program, now, step);
        let before = member.clone();
        match runtime.block_on(decide(&mut member, command.clone())) {
            Ok(events) => {
                let mut state = before.clone();
                for event in &events {
                    check_event(event, &mut books, &state, &program)?;
                    // An event applied to the first lots only (as a projector reads them)
                    // changes them as it changes all the lots, whenever they hold what it takes:
                    // the others stay as they were, or gain what it credits.
                    let splits = std::iter::once(None).chain(state.lots.iter().map(|(key, _)| Some(key)));
                    let mut all = state.clone();
                    all.apply(event.clone());
                    // What the event may change of the lots, saved before it, undoes it.
                    let mut undone = all.lots.clone();
                    undone.restore(state.lots.save_for(event));
                    prop_assert_eq!(&undone, &state.lots, "{} undone", event.type_name());
                    for through in splits {
                        let first: Lots = match through {
                            Some(through) => state.lots.through(through).map(lot).collect(),
                            None => Lots::default(),
                        };
                        if let Some(take) = takes_from_lots(event) {
                            if !take.within(first.total(), through) {
                                continue;
                            }
                        }
                        let mut part = Member {
                            points: state.points,
                            lots: first,
                            ..Member::default()
                        };
                        part.apply(event.clone());
                        for (key, points) in state.lots.iter().filter(|(key, _)| Some(*key) > through) {
                            part.lots.credit(key, points);
                        }
                        prop_assert_eq!(
                            &part.lots,
                            &all.lots,
                            "{} applied to the lots through {:?}",
                            event.type_name(),
                            through
                        );
                    }
                    state = all;
                }
                for event in &events {
                    if let MemberEvent::TierDowngraded { from, to, .. } = event {
                        // Downgrades come only from a re-evaluation, one tier at a time.
                        let by_reevaluation =
                            matches!(command, MemberCommand::ReevaluateTier(TierReview { .. }));
                        prop_assert!(by_reevaluation, "downgrade by {}", command.name());
                        let tiers = &program.config;
                        prop_assert_eq!(tiers.tier_index(from).unwrap(), tiers.tier_index(to).unwrap() + 1);
                    }
                }
                if let MemberCommand::ExpirePoints(Expiry { as_of }) = command {
                    // Nothing due is left behind.
                    let all_due_expired = member.lots.due(as_of) == 0;
                    prop_assert!(
                        all_due_expired,
                        "lots {:?} after expiry as of {}",
                        member.lots,
                        as_of
                    );
                }
                log.extend(events);
                // The system jobs are idempotent for the same as_of.
                if is_system_job(&command) {
                    let again = runtime.block_on(decide(&mut member, command.clone()));
                    prop_assert_eq!(
                        again,
                        Ok(vec![]),
                        "{} repeated for the same as_of",
                        command.name()
                    );
                }
            }
            Err(error) => {
                prop_assert_eq!(
                    &member,
                    &before,
                    "{} failed with {} but changed the state",
                    command.name(),
                    error
                );
                if let Op::BadPurchase { kind } = op {
                    let expected = if *kind == 2 {
                        MemberError::CurrencyMismatch {
                            expected: EUR.into(),
                            got: "USD".into(),
                        }
                    } else {
                        MemberError::InvalidAmount {
                            field: "amount_minor",
                        }
                    };
                    prop_assert_eq!(error, expected);
                }
            }
        }
        check_state(&member, &books, &log)?;
    }
    Ok(())
}

/// Splits `total` into `parts` positive amounts (fewer if `total` is small).
fn lot((key, remaining): (LotKey, i64)) -> Lot {
    Lot {
        earned_at: key.earned_at,
        expires_at: key.expires_at,
        remaining,
    }
}

fn split(total: i64, cuts: &[Index]) -> Vec<i64> {
    let mut points: Vec<i64> = cuts.iter().map(|c| c.index(total as usize) as i64).collect();
    points.push(0);
    points.push(total);
    points.sort_unstable();
    points.dedup();
    points.windows(2).map(|w| w[1] - w[0]).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever the split of a full refund, the clawbacks add up to exactly the points the
    /// purchase earned, each one being the cumulative share minus what earlier refunds took.
    #[test]
    fn refunds_in_any_split_claw_back_exactly_what_the_purchase_earned(
        amount_minor in 1..1_000_000_i64,
        silver in any::<bool>(),
        cuts in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        let mut commands = Vec::new();
        if silver {
            commands.push(purchase("t0", 50_000, at(1, 10)));
        }
        commands.push(purchase("t1", amount_minor, at(2, 10)));
        let mut member = replay(&given(commands));
        let earned = member.purchases["t1"].points_earned;
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (mut refunded, mut clawed) = (0, 0);
        for (i, part) in split(amount_minor, &cuts).into_iter().enumerate() {
            let events = runtime
                .block_on(decide(&mut member, refund(&format!("r{i}"), "t1", part, at(3, 10))))
                .unwrap();
            refunded += part;
            let [MemberEvent::PurchaseRefunded { points_clawed_back, refunded_total_minor, .. }] = events.as_slice() else {
                return Err(TestCaseError::fail(format!("unexpected events {events:?}")));
            };
            prop_assert_eq!(*refunded_total_minor, refunded);
            let total = cumulative_clawback(earned, refunded, amount_minor).unwrap();
            prop_assert_eq!(*points_clawed_back, total - clawed);
            clawed = total;
        }
        prop_assert_eq!(clawed, earned);
        prop_assert_eq!(member.purchases["t1"].clawed_back, earned);
        // Nothing is left to refund.
        let over = runtime.block_on(decide(&mut member, refund("r-over", "t1", 1, at(3, 11))));
        prop_assert_eq!(over, Err(MemberError::RefundExceedsPurchase { remaining_minor: 0 }));
    }

    /// `points = floor(floor(amount × earn_rate / 10^d) × multiplier / 10000)` for any amount,
    /// rate and currency exponent, with the multiplier of the tier held before the purchase.
    #[test]
    fn earning_follows_the_formula_for_any_amount_rate_and_currency(
        seed_minor in prop_oneof![Just(0_i64), 1..10_000_000_i64],
        amount_minor in 1..=domain::member::MAX_AMOUNT_MINOR,
        earn_rate in prop_oneof![1..=10_i64, 1..=1_000_000_i64],
        (currency, digits) in prop_oneof![Just(("EUR", 2_u32)), Just(("JPY", 0)), Just(("BHD", 3))],
    ) {
        let program = program_with(|c| {
            c.currency = currency.into();
            c.earn_rate = earn_rate;
            c.stamp_cards.clear();
        });
        // An earlier purchase puts the member in some tier of the ladder.
        let mut commands = Vec::new();
        if seed_minor > 0 {
            commands.push(purchase_in("t0", seed_minor, at(1, 10), program.clone()));
        }
        let before = replay(&given(commands.clone()));
        let held = program.config.tier_index(&before.tier.name).unwrap();
        let multiplier = program.config.tiers[held].multiplier_bps;

        commands.push(purchase_in("t1", amount_minor, at(2, 10), program.clone()));
        let events = given(commands);
        let Some(MemberEvent::PurchaseRecorded { base_points: base, points_earned, multiplier_bps, tier, .. }) =
            events.iter().find(|e| matches!(e, MemberEvent::PurchaseRecorded { transaction_id, .. } if transaction_id == "t1"))
        else {
            return Err(TestCaseError::fail(format!("no purchase t1 in {events:?}")));
        };
        let expected_base = i128::from(amount_minor) * i128::from(earn_rate) / 10_i128.pow(digits);
        prop_assert_eq!(i128::from(*base), expected_base);
        prop_assert_eq!(tier, &before.tier.name);
        prop_assert_eq!(*multiplier_bps, multiplier);
        prop_assert_eq!(i128::from(*points_earned), expected_base * i128::from(multiplier) / 10_000);
    }

    #[test]
    fn books_balance_and_state_is_its_events_after_every_command(
        program in policy(),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        run(program, ops)?;
    }
}
