//! The projector's cache of members (`projector::member_cache`): a cached state is exactly what
//! a batch would read from Postgres, and a member another writer changed is read again.

use chrono::Duration;
use domain::program::{Achievement, Conditions, Criteria, Effect, Limit, LimitPeriod, Promotion};
use loyalty_tests::TestDb;
use projector::event::Incoming;
use projector::Projector;

use crate::support::{all_events, program_config, random_workload, t, Log, Rng};

/// An org with a promotion and two achievements (the member rows the random workload's
/// programs leave empty): purchases at two stores, some redemptions.
async fn badges_org(log: &mut Log, rng: &mut Rng) {
    let org = "badges";
    let start = t("2024-01-01T00:00:00Z");
    let mut config = program_config("EUR");
    config.promotions = vec![Promotion {
        promotion_id: "welcome".into(),
        name: "Welcome bonus".into(),
        starts_at: start,
        ends_at: None,
        schedule: None,
        conditions: Conditions::default(),
        effect: Effect::Bonus { points: 50 },
        stackable: true,
        priority: 0,
        limit: Some(Limit {
            count: 1,
            period: LimitPeriod::Day,
        }),
        budget_points: None,
    }];
    config.achievements = vec![
        Achievement {
            achievement_id: "regular".into(),
            name: "Regular".into(),
            badge: None,
            criteria: Criteria::Purchases { count: 4 },
            window_days: None,
            reward_points: 20,
        },
        Achievement {
            achievement_id: "explorer".into(),
            name: "Explorer".into(),
            badge: Some("Both stores".into()),
            criteria: Criteria::Locations { count: 2 },
            window_days: None,
            reward_points: 0,
        },
    ];
    log.configure(org, config, start).await;
    for store in ["north", "south"] {
        log.location(org, store, start).await;
    }
    let mut members = Vec::new();
    for name in ["Ada", "Bo", "Cy", "Di", "Ed"] {
        members.push(log.enroll(org, Some(name), None, start).await);
    }
    let mut at = start;
    for n in 0..120 {
        at += Duration::hours(7);
        let member = *rng.pick(&members);
        let store = *rng.pick(&["north", "south"]);
        let amount = 500 + i64::try_from(rng.below(20_000)).unwrap();
        log.purchase(org, member, &format!("p{n}"), store, amount, at)
            .await;
        if rng.below(6) == 0 {
            // Refused when the balance is short: only accepted redemptions append events.
            let _ = log.redeem(org, member, &format!("r{n}"), "free-coffee", at).await;
        }
    }
}

#[tokio::test]
async fn cached_members_are_what_a_batch_would_read_and_another_writer_makes_them_stale() {
    let db = TestDb::new().await;
    let pool = db.pool().clone();
    let mut log = Log::new(&pool);
    let mut rng = Rng::new(0xCAC4_E000);
    random_workload(&mut log, &mut rng, &["cafe", "books"], 30, 2_000, 500).await;
    badges_org(&mut log, &mut rng).await;
    log.flush().await;
    let events = all_events(&pool).await;

    let cached = Projector::new(pool.clone(), "rm")
        .unwrap()
        .with_member_cache(10_000);
    let cache = cached.member_cache().unwrap().clone();
    // A second process on the same schema, without the cache: the members it writes are
    // cached by the first at a checkpoint that is no longer theirs.
    let other = Projector::new(pool.clone(), "rm").unwrap();
    let (mut at, mut by_other, mut redelivered) = (0, 0, 0);
    while at < events.len() {
        let size = 1 + usize::try_from(rng.below(150)).unwrap();
        let batch: Vec<Incoming> = events[at..(at + size).min(events.len())]
            .iter()
            .map(|event| Incoming::Event {
                event: event.clone(),
                from_store: false,
            })
            .collect();
        let projector = if rng.below(5) == 0 {
            by_other += 1;
            &other
        } else {
            &cached
        };
        let report = projector.process(batch.clone()).await.unwrap();
        assert_eq!(report.parked, 0, "{report:?}");
        if rng.below(8) == 0 {
            redelivered += 1;
            let again = cached.process(batch).await.unwrap();
            assert_eq!((again.applied, again.duplicates), (0, again.received));
        }
        let differences = cache.differences(&pool, "rm").await.unwrap();
        assert!(
            differences.is_empty(),
            "cached states that are not what a batch reads: {differences:#?}"
        );
        at += size;
    }
    assert!(by_other > 3 && redelivered > 3, "{by_other} {redelivered}");
    assert!(cache.len() > 60, "{} members cached", cache.len());
    assert!(cache.hits() > 500, "{} hits", cache.hits());
    let achievements: i64 =
        sqlx::query_scalar("SELECT count(*) FROM rm.member_achievements WHERE unlocked_at IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(achievements >= 5, "{achievements} achievements unlocked");

    // Had a stale state been used, the live rows would differ from the replay.
    let audit = projector::audit::audit(&pool, "rm").await.unwrap();
    assert!(audit.is_clean(), "{audit}");
    db.cleanup().await;
}
