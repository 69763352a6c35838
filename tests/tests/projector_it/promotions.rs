//! Promotion read models (SPEC §9): what each promotion awarded, worked out by hand and
//! checked against the purchase events' own breakdowns; refunds change none of it (statistics
//! are gross of clawbacks), a redelivery changes nothing, and the audit replays it exactly.

use std::collections::BTreeMap;
use std::time::Duration;

use domain::program::{Conditions, Effect, Limit, LimitPeriod, Promotion};
use domain::MemberEvent;
use loyalty_tests::{spawn_projector, TestDb, TestNats};
use sqlx::PgPool;

use crate::support::{
    all_events, program_config, publish, snapshot, start_relay, t, wait_consumer_drained, wait_projected, Log,
};

fn promotion(id: &str, effect: Effect) -> Promotion {
    Promotion {
        promotion_id: id.to_owned(),
        name: format!("Promotion {id}"),
        starts_at: t("2024-01-01T00:00:00Z"),
        ends_at: None,
        schedule: None,
        conditions: Conditions::default(),
        effect,
        stackable: false,
        priority: 0,
        limit: None,
        budget_points: None,
    }
}

/// `double`: 2× the base, non-stackable, a budget of 250 points; `welcome`: +50 points,
/// stackable, once a day per member.
fn promotions() -> Vec<Promotion> {
    let mut double = promotion(
        "double",
        Effect::Multiplier {
            multiplier_bps: 20_000,
        },
    );
    double.budget_points = Some(250);
    let mut welcome = promotion("welcome", Effect::Bonus { points: 50 });
    welcome.stackable = true;
    welcome.limit = Some(Limit {
        count: 1,
        period: LimitPeriod::Day,
    });
    vec![double, welcome]
}

type Stats = Vec<(String, i64, i64, i64, Option<i64>)>;

async fn stats(pool: &PgPool, org: &str) -> Stats {
    sqlx::query_as(
        "SELECT promotion_id, uses, points, members, budget_left FROM rm.promotion_statistics \
         WHERE org_id = $1 ORDER BY position",
    )
    .bind(org)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Uses and points per promotion summed from the purchase events themselves.
fn sums_of_breakdowns(events: &[MemberEvent]) -> BTreeMap<String, (i64, i64)> {
    let mut sums: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for event in events {
        if let MemberEvent::PurchaseRecorded { breakdown, .. } = event {
            for applied in &breakdown.promotions {
                let sum = sums.entry(applied.promotion_id.clone()).or_default();
                sum.0 += 1;
                sum.1 += applied.points;
            }
        }
    }
    sums
}

#[tokio::test]
async fn promotion_statistics_count_awarded_points_once_and_replay_exactly() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let pool = db.pool().clone();
    let relay = start_relay(&db, &nats).await;
    let projector = spawn_projector(&db, &nats, "promotions").await;
    let mut log = Log::new(&pool);
    let org = "promo-shop";
    let mut config = program_config("EUR");
    config.promotions = promotions();
    log.configure(org, config, t("2024-01-01T00:00:00Z")).await;
    log.location(org, "downtown", t("2024-01-01T00:00:00Z")).await;
    let alice = log
        .enroll(org, Some("Alice"), None, t("2024-01-02T10:00:00Z"))
        .await;
    let bob = log
        .enroll(org, Some("Bob"), None, t("2024-01-02T10:00:00Z"))
        .await;

    let mut events = Vec::new();
    // 100.00 at Bronze: 100 tier points, double +100 (budget 250 → 150), welcome +50 = 250.
    events.extend(
        log.purchase(org, alice, "a1", "downtown", 10_000, t("2024-01-03T10:00:00Z"))
            .await,
    );
    // Same day: double +100 (→ 50 left), welcome used up today = 200.
    events.extend(
        log.purchase(org, alice, "a2", "downtown", 10_000, t("2024-01-03T11:00:00Z"))
            .await,
    );
    // Bob: double gets the 50 left of its budget, welcome +50 = 200.
    events.extend(
        log.purchase(org, bob, "b1", "downtown", 10_000, t("2024-01-03T12:00:00Z"))
            .await,
    );
    // Next day: the budget is spent; welcome again = 40 + 50 = 90.
    events.extend(
        log.purchase(org, bob, "b2", "downtown", 4_000, t("2024-01-04T09:00:00Z"))
            .await,
    );
    let totals: Vec<i64> = events
        .iter()
        .filter_map(|e| match e {
            MemberEvent::PurchaseRecorded { breakdown, .. } => Some(breakdown.total),
            _ => None,
        })
        .collect();
    assert_eq!(totals, [250, 200, 200, 90], "{events:#?}");
    log.flush().await;
    wait_projected(&pool, Duration::from_secs(30)).await;

    let expected: Stats = vec![
        ("double".into(), 3, 250, 2, Some(0)),
        ("welcome".into(), 3, 150, 2, None),
    ];
    assert_eq!(stats(&pool, org).await, expected);
    let sums = sums_of_breakdowns(&events);
    for (id, uses, points, _, _) in &expected {
        assert_eq!(sums[id], (*uses, *points), "{id}");
    }
    let daily: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT promotion_id, day::text, uses, points FROM rm.promotion_daily WHERE org_id = $1 ORDER BY 1, 2",
    )
    .bind(org)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        daily,
        [
            ("double".into(), "2024-01-03".into(), 3, 250),
            ("welcome".into(), "2024-01-03".into(), 2, 100),
            ("welcome".into(), "2024-01-04".into(), 1, 50),
        ]
    );
    let uses: Vec<(String, String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT transaction_id, promotion_id, points, budget_left FROM rm.promotion_uses \
         WHERE org_id = $1 AND member_id = $2 ORDER BY 1, 2",
    )
    .bind(org)
    .bind(alice)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        uses,
        [
            ("a1".into(), "double".into(), 100, Some(150)),
            ("a1".into(), "welcome".into(), 50, None),
            ("a2".into(), "double".into(), 100, Some(50)),
        ]
    );

    // A refund claws back part of a promoted purchase: the statistics stay gross.
    let refund = log
        .refund(org, alice, "r1", "a1", 5_000, t("2024-01-05T10:00:00Z"))
        .await;
    assert!(matches!(
        refund.first(),
        Some(MemberEvent::PurchaseRefunded {
            points_clawed_back: 125,
            ..
        })
    ));
    log.flush().await;
    wait_projected(&pool, Duration::from_secs(30)).await;
    assert_eq!(stats(&pool, org).await, expected);

    // The program read model shows the promotions in order.
    let program: Vec<(String, i32, Option<i64>)> = sqlx::query_as(
        "SELECT promotion_id, position, budget_points FROM rm.program_promotions WHERE org_id = $1 ORDER BY position",
    )
    .bind(org)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        program,
        [("double".into(), 0, Some(250)), ("welcome".into(), 1, None)]
    );

    // Everything again without message ids: nothing changes.
    wait_consumer_drained(&nats, "promotions", Duration::from_secs(30)).await;
    let before = snapshot(&pool).await;
    publish(&nats, &all_events(&pool).await, false).await;
    wait_consumer_drained(&nats, "promotions", Duration::from_secs(30)).await;
    assert_eq!(
        snapshot(&pool).await,
        before,
        "a redelivery changed the read models"
    );

    // The audit rebuilds the promotion tables from the log and finds them equal.
    let audit = projector::audit::audit(&pool, "rm").await.unwrap();
    assert!(audit.is_clean(), "{audit}");
    for table in [
        "promotion_uses",
        "promotion_stats",
        "promotion_daily",
        "program_promotions",
    ] {
        let summary = audit.tables.iter().find(|s| s.table == table).unwrap();
        assert!(
            summary.live_rows > 0 && summary.live_rows == summary.replay_rows,
            "{summary:?}"
        );
    }

    projector.stop().await.unwrap();
    relay.stop().await;
    nats.cleanup().await;
    db.cleanup().await;
}
