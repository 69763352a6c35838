//! Scripted scenarios with every read model checked against values worked out by hand from
//! SPEC §3 (EUR, 1 point per euro, Bronze 0 / 1.0×, Silver 500 / 1.25×, Gold 2000 / 1.5×,
//! expiry 365 days, a 3-stamp coffee card for purchases of at least 5.00).

use std::time::Duration;

use chrono::{DateTime, Utc};
use loyalty_tests::{spawn_projector, TestDb, TestNats};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::{program_config, start_relay, t, wait_projected, Log};

async fn rows(pool: &PgPool, sql: &str) -> Vec<Value> {
    sqlx::query_scalar::<_, Value>(&format!("SELECT to_jsonb(x) FROM ({sql}) x"))
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn one(pool: &PgPool, sql: &str) -> Value {
    let mut all = rows(pool, sql).await;
    assert_eq!(all.len(), 1, "{sql}: {all:?}");
    all.remove(0)
}

fn ts(at: &str) -> String {
    // Postgres renders timestamptz in JSON with the session time zone (UTC here).
    t(at).format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
}

#[tokio::test]
async fn a_members_journey_gives_exact_read_models() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let pool = db.pool().clone();
    let relay = start_relay(&db, &nats).await;
    let projector = spawn_projector(&db, &nats, "journey").await;
    let mut log = Log::new(&pool);
    let org = "acme";

    log.configure(org, program_config("EUR"), t("2024-01-01T00:00:00Z"))
        .await;
    log.location(org, "downtown", t("2024-01-01T00:00:00Z")).await;
    log.location(org, "airport", t("2024-01-01T00:00:00Z")).await;
    let alice = log
        .enroll(org, Some("Alice"), Some("card-001"), t("2024-01-02T10:00:00Z"))
        .await;
    let bob = log
        .enroll(org, None, Some("card-002"), t("2024-01-02T11:00:00Z"))
        .await;
    // 400.00 at Bronze: 400 points, first stamp.
    log.purchase(org, alice, "p1", "downtown", 40_000, t("2024-01-03T10:00:00Z"))
        .await;
    // 200.00 at Bronze (the purchase that crosses 500 earns at the old multiplier): 200 points;
    // qualifying 600 → Silver.
    let upgrade = log
        .purchase(org, alice, "p2", "airport", 20_000, t("2024-01-04T11:00:00Z"))
        .await;
    assert_eq!(upgrade.len(), 3, "purchase, stamp, upgrade: {upgrade:?}");
    log.purchase(org, bob, "b1", "airport", 3_000, t("2024-01-04T09:00:00Z"))
        .await;
    log.flush().await;
    wait_projected(&pool, Duration::from_secs(30)).await;
    // Everything above was committed before this instant, nothing below: `as-of` looks here.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let after_upgrade: DateTime<Utc> = Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;

    // 100.00 at Silver: floor(100 × 1.25) = 125; third stamp completes the card.
    log.purchase(org, alice, "p3", "downtown", 10_000, t("2024-01-05T12:00:00Z"))
        .await;
    // 10.00 the same day: floor(10 × 1.25) = 12, no second stamp that day.
    log.purchase(org, alice, "p4", "downtown", 1_000, t("2024-01-05T18:00:00Z"))
        .await;
    // Refund after the upgrade: 50.00 of p2's 200.00 claws back floor(200 × 5000 / 20000) = 50
    // of what p2 actually earned, from p2's week and location.
    log.refund(org, alice, "r1", "p2", 5_000, t("2024-01-10T09:00:00Z"))
        .await;
    // Redemption: 300 points, taken from the soonest-expiring lot (p1: 350 → 50).
    log.redeem(org, alice, "x1", "tote", t("2024-01-11T09:00:00Z"))
        .await
        .unwrap();
    log.adjust(org, alice, "a1", 20, t("2024-01-12T09:00:00Z"))
        .await
        .unwrap();
    // p1 expired on 2025-01-02T10:00 (365 days); p2 expires at 11:00 on 2025-01-03.
    let expired = log.expire(org, alice, t("2025-01-03T10:30:00Z")).await;
    assert_eq!(expired.len(), 1);
    // Qualifying points in the window: p2 150 + p3 125 + p4 12 = 287 < 500: grace starts.
    log.reevaluate(org, alice, t("2025-01-03T10:30:00Z")).await;
    log.flush().await;
    wait_projected(&pool, Duration::from_secs(30)).await;

    // Balance and ledger: 737 earned − 50 clawed back − 300 redeemed + 20 adjusted − 50 expired.
    assert_eq!(
        one(&pool, &format!("SELECT balance, lifetime_earned, redeemed, expired, clawed_back, adjusted, \
                             next_expiry_points, next_expiry_at FROM rm.member_balances WHERE member_id = '{alice}'")).await,
        json!({"balance": 357, "lifetime_earned": 737, "redeemed": 300, "expired": 50, "clawed_back": 50,
               "adjusted": 20, "next_expiry_points": 200, "next_expiry_at": ts("2025-01-03T11:00:00Z")})
    );
    assert_eq!(
        rows(
            &pool,
            &format!(
                "SELECT earned_at, expires_at, remaining FROM rm.member_lots \
                              WHERE member_id = '{alice}' ORDER BY expiry_key, earned_at"
            )
        )
        .await,
        vec![
            json!({"earned_at": ts("2024-01-04T11:00:00Z"), "expires_at": ts("2025-01-03T11:00:00Z"), "remaining": 200}),
            json!({"earned_at": ts("2024-01-05T12:00:00Z"), "expires_at": ts("2025-01-04T12:00:00Z"), "remaining": 125}),
            json!({"earned_at": ts("2024-01-05T18:00:00Z"), "expires_at": ts("2025-01-04T18:00:00Z"), "remaining": 12}),
            json!({"earned_at": ts("2024-01-12T09:00:00Z"), "expires_at": ts("2025-01-11T09:00:00Z"), "remaining": 20}),
        ]
    );
    assert_eq!(
        rows(&pool, &format!("SELECT sequence, event_type, reference, points_delta, balance_after FROM rm.journal_entries \
                              WHERE member_id = '{alice}' ORDER BY sequence")).await,
        vec![
            json!({"sequence": 2, "event_type": "PurchaseRecorded", "reference": "p1", "points_delta": 400, "balance_after": 400}),
            json!({"sequence": 4, "event_type": "PurchaseRecorded", "reference": "p2", "points_delta": 200, "balance_after": 600}),
            json!({"sequence": 7, "event_type": "PurchaseRecorded", "reference": "p3", "points_delta": 125, "balance_after": 725}),
            json!({"sequence": 10, "event_type": "PurchaseRecorded", "reference": "p4", "points_delta": 12, "balance_after": 737}),
            json!({"sequence": 11, "event_type": "PurchaseRefunded", "reference": "r1", "points_delta": -50, "balance_after": 687}),
            json!({"sequence": 12, "event_type": "RewardRedeemed", "reference": "x1", "points_delta": -300, "balance_after": 387}),
            json!({"sequence": 13, "event_type": "PointsAdjusted", "reference": "a1", "points_delta": 20, "balance_after": 407}),
            json!({"sequence": 14, "event_type": "PointsExpired", "reference": null, "points_delta": -50, "balance_after": 357}),
        ]
    );
    assert_eq!(
        rows(
            &pool,
            &format!(
                "SELECT account, delta FROM rm.postings WHERE member_id = '{alice}' AND sequence = 11 \
                              ORDER BY account"
            )
        )
        .await,
        vec![
            json!({"account": "member_points", "delta": -50}),
            json!({"account": "org_liability", "delta": 50})
        ]
    );
    // Liability = Alice 357 + Bob 30; every journal entry sums to zero.
    assert_eq!(
        one(&pool, "SELECT org_id, points FROM rm.org_liability").await,
        json!({"org_id": "acme", "points": 387})
    );
    assert_eq!(
        one(
            &pool,
            "SELECT count(*) AS unbalanced FROM (SELECT 1 FROM rm.postings \
                    GROUP BY org_id, member_id, sequence HAVING sum(delta) <> 0) u"
        )
        .await,
        json!({"unbalanced": 0})
    );
    assert_eq!(
        rows(
            &pool,
            "SELECT external_id, display_name, enrolled_at FROM rm.member_directory ORDER BY enrolled_at"
        )
        .await,
        vec![
            json!({"external_id": "card-001", "display_name": "Alice", "enrolled_at": ts("2024-01-02T10:00:00Z")}),
            json!({"external_id": "card-002", "display_name": null, "enrolled_at": ts("2024-01-02T11:00:00Z")}),
        ]
    );

    // Tier: Silver since p2, in grace until 30 days after the re-evaluation.
    assert_eq!(
        one(
            &pool,
            &format!(
                "SELECT tier, multiplier_bps, qualifying_points, qualifying_as_of, tier_since, \
                             grace_started_at, grace_threshold_points, downgrade_after FROM rm.member_tiers \
                             WHERE member_id = '{alice}'"
            )
        )
        .await,
        json!({"tier": "Silver", "multiplier_bps": 12500, "qualifying_points": 287,
               "qualifying_as_of": ts("2025-01-03T10:30:00Z"), "tier_since": ts("2024-01-04T11:00:00Z"),
               "grace_started_at": ts("2025-01-03T10:30:00Z"), "grace_threshold_points": 500,
               "downgrade_after": ts("2025-02-02T10:30:00Z")})
    );
    assert_eq!(
        rows(
            &pool,
            &format!(
                "SELECT change, from_tier, to_tier, qualifying_points, at FROM rm.tier_history \
                              WHERE member_id = '{alice}' ORDER BY sequence"
            )
        )
        .await,
        vec![
            json!({"change": "enrolled", "from_tier": null, "to_tier": "Bronze", "qualifying_points": 0, "at": ts("2024-01-02T10:00:00Z")}),
            json!({"change": "upgraded", "from_tier": "Bronze", "to_tier": "Silver", "qualifying_points": 600, "at": ts("2024-01-04T11:00:00Z")}),
            json!({"change": "grace_started", "from_tier": "Silver", "to_tier": "Silver", "qualifying_points": 287, "at": ts("2025-01-03T10:30:00Z")}),
        ]
    );
    // Today (long after 2024) nothing is in the window: Gold is 2000 away, Silver needs 500 by
    // the end of the grace period.
    assert_eq!(
        one(&pool, &format!("SELECT tier, qualifying_points, next_tier, points_to_next, points_to_keep, keep_by, in_grace \
                             FROM rm.member_tier_progress WHERE member_id = '{alice}'")).await,
        json!({"tier": "Silver", "qualifying_points": 0, "next_tier": "Gold", "points_to_next": 2000,
               "points_to_keep": 500, "keep_by": ts("2025-02-02T10:30:00Z"), "in_grace": true})
    );

    // Program, stamp cards.
    assert_eq!(
        one(
            &pool,
            "SELECT org_id, version, currency, earn_rate, expiry_days FROM rm.programs"
        )
        .await,
        json!({"org_id": "acme", "version": 1, "currency": "EUR", "earn_rate": 1, "expiry_days": 365})
    );
    assert_eq!(
        rows(
            &pool,
            "SELECT position, name, threshold_points, multiplier_bps FROM rm.program_tiers ORDER BY position"
        )
        .await,
        vec![
            json!({"position": 0, "name": "Bronze", "threshold_points": 0, "multiplier_bps": 10000}),
            json!({"position": 1, "name": "Silver", "threshold_points": 500, "multiplier_bps": 12500}),
            json!({"position": 2, "name": "Gold", "threshold_points": 2000, "multiplier_bps": 15000}),
            json!({"position": 3, "name": "Platinum", "threshold_points": 5000, "multiplier_bps": 20000}),
        ]
    );
    assert_eq!(
        rows(
            &pool,
            "SELECT reward_id, points_cost, active FROM rm.program_rewards ORDER BY reward_id"
        )
        .await,
        vec![
            json!({"reward_id": "free-coffee", "points_cost": 100, "active": true}),
            json!({"reward_id": "tote", "points_cost": 300, "active": true}),
        ]
    );
    assert_eq!(
        rows(&pool, "SELECT location_id FROM rm.program_locations ORDER BY 1").await,
        vec![
            json!({"location_id": "airport"}),
            json!({"location_id": "downtown"})
        ]
    );
    assert_eq!(
        rows(&pool, "SELECT d.display_name, c.card_id, c.stamps, c.stamps_required, c.cards_completed, c.last_stamp_day \
                     FROM rm.stamp_cards c JOIN rm.member_directory d USING (org_id, member_id) ORDER BY d.enrolled_at").await,
        vec![
            json!({"display_name": "Alice", "card_id": "coffee", "stamps": 0, "stamps_required": 3, "cards_completed": 1, "last_stamp_day": "2024-01-05"}),
            json!({"display_name": null, "card_id": "coffee", "stamps": 1, "stamps_required": 3, "cards_completed": 0, "last_stamp_day": "2024-01-04"}),
        ]
    );
    assert_eq!(
        one(
            &pool,
            "SELECT card_id, cards_completed, reward_id, transaction_id FROM rm.stamp_rewards_issued"
        )
        .await,
        json!({"card_id": "coffee", "cards_completed": 1, "reward_id": "free-coffee", "transaction_id": "p3"})
    );

    // RFM raw data.
    assert_eq!(
        one(
            &pool,
            &format!(
                "SELECT first_purchase_at, last_purchase_at, purchases, amount_minor, refunded_minor \
                             FROM rm.rfm_members WHERE member_id = '{alice}'"
            )
        )
        .await,
        json!({"first_purchase_at": ts("2024-01-03T10:00:00Z"), "last_purchase_at": ts("2024-01-05T18:00:00Z"),
               "purchases": 4, "amount_minor": 71000, "refunded_minor": 5000})
    );
    assert_eq!(
        one(
            &pool,
            &format!(
                "SELECT refunded_minor, points_earned, clawed_back FROM rm.purchases \
                             WHERE member_id = '{alice}' AND transaction_id = 'p2'"
            )
        )
        .await,
        json!({"refunded_minor": 5000, "points_earned": 200, "clawed_back": 50})
    );

    // Leaderboards: all in ISO week 2024-W01 and January; the clawback counts against the
    // airport, where p2 was bought, though the refund came in week 2.
    assert_eq!(
        rows(
            &pool,
            &format!(
                "SELECT location_id, period, period_key, points FROM rm.leaderboard_scores \
                              WHERE member_id = '{alice}' ORDER BY location_id, period"
            )
        )
        .await,
        vec![
            json!({"location_id": "", "period": "all", "period_key": "all", "points": 687}),
            json!({"location_id": "", "period": "month", "period_key": "2024-01", "points": 687}),
            json!({"location_id": "", "period": "week", "period_key": "2024-W01", "points": 687}),
            json!({"location_id": "airport", "period": "all", "period_key": "all", "points": 150}),
            json!({"location_id": "airport", "period": "month", "period_key": "2024-01", "points": 150}),
            json!({"location_id": "airport", "period": "week", "period_key": "2024-W01", "points": 150}),
            json!({"location_id": "downtown", "period": "all", "period_key": "all", "points": 537}),
            json!({"location_id": "downtown", "period": "month", "period_key": "2024-01", "points": 537}),
            json!({"location_id": "downtown", "period": "week", "period_key": "2024-W01", "points": 537}),
        ]
    );
    let pseudonym: String = sqlx::query_scalar("SELECT rm.member_pseudonym($1)")
        .bind(bob)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        pseudonym.starts_with("Member ") && !pseudonym.contains("card-002"),
        "{pseudonym}"
    );
    assert_eq!(
        rows(
            &pool,
            "SELECT rank, display_name, points, reached_at FROM rm.leaderboard \
                     WHERE location_id = 'airport' AND period = 'week' AND period_key = '2024-W01' \
                     ORDER BY rank, reached_at, reached_position, member_id"
        )
        .await,
        vec![
            json!({"rank": 1, "display_name": "Alice", "points": 150, "reached_at": ts("2024-01-10T09:00:00Z")}),
            json!({"rank": 2, "display_name": pseudonym, "points": 30, "reached_at": ts("2024-01-04T09:00:00Z")}),
        ]
    );

    // As of a past time: the events committed by then.
    let then = projector::audit::as_of(&pool, org, alice, after_upgrade)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            then.balance,
            then.lifetime_earned,
            then.tier.as_str(),
            then.multiplier_bps
        ),
        (600, 600, "Silver", 12_500)
    );
    let now = projector::audit::as_of(&pool, org, alice, Utc::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((now.balance, now.expired, now.tier.as_str()), (357, 50, "Silver"));
    assert_eq!(
        (now.next_expiry_points, now.next_expiry_at),
        (Some(200), Some(t("2025-01-03T11:00:00Z")))
    );
    let before = t("2020-01-01T00:00:00Z");
    assert_eq!(
        projector::audit::as_of(&pool, org, alice, before).await.unwrap(),
        None
    );
    assert_eq!(
        projector::audit::as_of(&pool, org, Uuid::new_v4(), Utc::now())
            .await
            .unwrap(),
        None
    );

    let audit = projector::audit::audit(&pool, "rm").await.unwrap();
    assert!(audit.is_clean(), "{audit}");

    projector.stop().await.unwrap();
    relay.stop().await;
    nats.cleanup().await;
    db.cleanup().await;
}

/// A purchase only adds a lot, so the projector leaves the stored lots unread: lots added batch
/// after batch are kept in the order debits take them and the next expiry follows them (a
/// backdated purchase expires first; two earned and expiring at the same instant are one lot);
/// a redemption in a later batch takes the soonest first.
#[tokio::test]
async fn lots_added_batch_after_batch_without_reading_the_stored_ones_stay_exact() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let pool = db.pool().clone();
    let relay = start_relay(&db, &nats).await;
    let projector = spawn_projector(&db, &nats, "lots").await;
    let mut log = Log::new(&pool);
    let org = "acme";
    log.configure(org, program_config("EUR"), t("2024-01-01T00:00:00Z"))
        .await;
    log.location(org, "downtown", t("2024-01-01T00:00:00Z")).await;
    let alice = log
        .enroll(org, Some("Alice"), None, t("2024-01-02T10:00:00Z"))
        .await;
    let balance = |pool: PgPool| async move {
        one(
            &pool,
            &format!(
                "SELECT balance, next_expiry_points, next_expiry_at FROM rm.member_balances \
                 WHERE member_id = '{alice}'"
            ),
        )
        .await
    };
    // One purchase per batch: 100.00, 50.00, then two backdated ones that expire first.
    let purchases = [
        ("p1", 10_000, "2024-01-03T10:00:00Z"),
        ("p2", 5_000, "2024-01-04T10:00:00Z"),
        ("p3", 2_000, "2024-01-02T12:00:00Z"),
        ("p4", 500, "2024-01-02T12:00:00Z"),
    ];
    for (txn, amount, at) in purchases {
        log.purchase(org, alice, txn, "downtown", amount, t(at)).await;
        log.flush().await;
        wait_projected(&pool, Duration::from_secs(30)).await;
    }
    assert_eq!(
        balance(pool.clone()).await,
        json!({"balance": 175, "next_expiry_points": 25, "next_expiry_at": ts("2025-01-01T12:00:00Z")})
    );
    let lots = |pool: PgPool| async move {
        rows(
            &pool,
            &format!(
                "SELECT earned_at, remaining FROM rm.member_lots WHERE member_id = '{alice}' \
                 ORDER BY expiry_key, earned_at"
            ),
        )
        .await
    };
    assert_eq!(
        lots(pool.clone()).await,
        vec![
            json!({"earned_at": ts("2024-01-02T12:00:00Z"), "remaining": 25}),
            json!({"earned_at": ts("2024-01-03T10:00:00Z"), "remaining": 100}),
            json!({"earned_at": ts("2024-01-04T10:00:00Z"), "remaining": 50}),
        ]
    );

    // 100 points, soonest expiry first: p3 and p4 (25), then 75 of p1.
    log.redeem(org, alice, "x1", "free-coffee", t("2024-01-05T09:00:00Z"))
        .await
        .unwrap();
    log.flush().await;
    wait_projected(&pool, Duration::from_secs(30)).await;
    assert_eq!(
        lots(pool.clone()).await,
        vec![
            json!({"earned_at": ts("2024-01-03T10:00:00Z"), "remaining": 25}),
            json!({"earned_at": ts("2024-01-04T10:00:00Z"), "remaining": 50}),
        ]
    );
    assert_eq!(
        balance(pool.clone()).await,
        json!({"balance": 75, "next_expiry_points": 25, "next_expiry_at": ts("2025-01-02T10:00:00Z")})
    );
    // The replay, which reads every lot of every event, agrees.
    let audit = projector::audit::audit(&pool, "rm").await.unwrap();
    assert!(audit.is_clean(), "{audit}");
    projector.stop().await.unwrap();
    relay.stop().await;
    nats.cleanup().await;
    db.cleanup().await;
}

/// A debit reads only the first lots it takes from (in the order debits take them), so a long
/// history's lots are not read for a redemption: what it leaves unread, what it spends, what the
/// batch credits beside it and the next expiry all stay exactly the domain's, whether the first
/// lots hold the debit, are spent to the last point, or do not hold it (then all are read).
#[tokio::test]
async fn debits_read_only_the_first_lots_and_leave_the_rest_exact() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let pool = db.pool().clone();
    let relay = start_relay(&db, &nats).await;
    let projector = spawn_projector(&db, &nats, "first-lots").await;
    let mut log = Log::new(&pool);
    let org = "acme";
    log.configure(org, program_config("EUR"), t("2024-01-01T00:00:00Z"))
        .await;
    log.location(org, "downtown", t("2024-01-01T00:00:00Z")).await;
    let alice = log
        .enroll(org, Some("Alice"), None, t("2024-01-01T08:00:00Z"))
        .await;
    let day = |n: i64| t("2024-01-02T09:00:00Z") + chrono::Duration::hours(5 * n);
    // 120 lots of 5 to 24 points, in four batches.
    for n in 0..120 {
        let amount = 500 + (n * 7919 % 20) * 100;
        log.purchase(org, alice, &format!("p{n}"), "downtown", amount, day(n))
            .await;
        if n % 30 == 29 {
            log.flush().await;
        }
    }
    wait_projected(&pool, Duration::from_secs(30)).await;

    // What the projector stored, against the member the command side folds.
    let check = |pool: PgPool, member: domain::Member, step: &'static str| async move {
        let stored = rows(
            &pool,
            &format!(
                "SELECT earned_at, expires_at, remaining FROM rm.member_lots \
                 WHERE member_id = '{alice}' ORDER BY expiry_key, earned_at"
            ),
        )
        .await;
        let expected: Vec<Value> = Vec::<domain::member::Lot>::from(member.lots.clone())
            .into_iter()
            .map(|lot| {
                json!({"earned_at": lot.earned_at.format("%Y-%m-%dT%H:%M:%S+00:00").to_string(),
                       "expires_at": lot.expires_at.map(|at| at.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()),
                       "remaining": lot.remaining})
            })
            .collect();
        assert_eq!(stored, expected, "lots after {step}");
        let next = member.next_expiry();
        assert_eq!(
            one(
                &pool,
                &format!(
                    "SELECT balance, next_expiry_points, next_expiry_at FROM rm.member_balances \
                     WHERE member_id = '{alice}'"
                )
            )
            .await,
            json!({"balance": member.points.balance, "next_expiry_points": next.map(|(p, _)| p),
                   "next_expiry_at": next.map(|(_, at)| at.format("%Y-%m-%dT%H:%M:%S+00:00").to_string())}),
            "balance after {step}"
        );
    };
    check(pool.clone(), log.member_state(org, alice).clone(), "purchases").await;

    // A redemption the first lots hold, beside a purchase at the same instant as a lot it does
    // not read (one lot with it) and a backdated one that expires first.
    log.redeem(org, alice, "r1", "free-coffee", day(121))
        .await
        .unwrap();
    log.purchase(org, alice, "same-instant", "downtown", 1_000, day(100))
        .await;
    log.purchase(org, alice, "backdated", "downtown", 700, day(-3))
        .await;
    log.flush().await;
    wait_projected(&pool, Duration::from_secs(30)).await;
    check(pool.clone(), log.member_state(org, alice).clone(), "a redemption").await;

    // A debit of exactly what the first 32 lots hold spends every lot read: the next expiry is
    // then the stored lots'.
    let first: i64 = log
        .member_state(org, alice)
        .lots
        .iter()
        .take(32)
        .map(|(_, p)| p)
        .sum();
    log.adjust(org, alice, "a1", -first, day(122)).await.unwrap();
    log.flush().await;
    wait_projected(&pool, Duration::from_secs(30)).await;
    check(
        pool.clone(),
        log.member_state(org, alice).clone(),
        "spending the lots read",
    )
    .await;

    // More than the first 32 lots hold: all are read.
    let more: i64 = log
        .member_state(org, alice)
        .lots
        .iter()
        .take(40)
        .map(|(_, p)| p)
        .sum();
    log.adjust(org, alice, "a2", -more, day(123)).await.unwrap();
    log.refund(org, alice, "f1", "p110", 500, day(124)).await;
    log.flush().await;
    wait_projected(&pool, Duration::from_secs(30)).await;
    check(
        pool.clone(),
        log.member_state(org, alice).clone(),
        "a debit beyond the first lots",
    )
    .await;

    // An expiry a year on takes every lot due, however many.
    log.expire(org, alice, day(95) + chrono::Duration::days(366))
        .await;
    log.flush().await;
    wait_projected(&pool, Duration::from_secs(30)).await;
    check(pool.clone(), log.member_state(org, alice).clone(), "an expiry").await;

    let audit = projector::audit::audit(&pool, "rm").await.unwrap();
    assert!(audit.is_clean(), "{audit}");
    projector.stop().await.unwrap();
    relay.stop().await;
    nats.cleanup().await;
    db.cleanup().await;
}

#[tokio::test]
async fn leaderboards_rank_ties_per_period_and_location() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let pool = db.pool().clone();
    let relay = start_relay(&db, &nats).await;
    let projector = spawn_projector(&db, &nats, "boards").await;
    let mut log = Log::new(&pool);
    let org = "ties";
    log.configure(org, program_config("EUR"), t("2024-01-01T00:00:00Z"))
        .await;
    log.location(org, "north", t("2024-01-01T00:00:00Z")).await;
    log.location(org, "south", t("2024-01-01T00:00:00Z")).await;
    let at = t("2024-01-01T00:00:00Z");
    let ann = log.enroll(org, Some("Ann"), None, at).await;
    let bo = log.enroll(org, None, Some("bo@example.com-card"), at).await;
    let cid = log.enroll(org, Some("Cid"), None, at).await;
    let dee = log.enroll(org, Some("Dee"), None, at).await;
    let eve = log.enroll(org, Some("Eve"), None, at).await;
    // ISO week 2024-W10 is Monday 4 March to Sunday 10 March.
    log.purchase(org, ann, "a1", "north", 10_000, t("2024-03-04T10:00:00Z"))
        .await;
    log.purchase(org, bo, "b1", "north", 10_000, t("2024-03-05T10:00:00Z"))
        .await;
    log.purchase(org, cid, "c1", "south", 5_000, t("2024-03-06T10:00:00Z"))
        .await;
    log.purchase(org, cid, "c0", "south", 8_000, t("2024-02-28T10:00:00Z"))
        .await;
    log.purchase(org, eve, "e1", "north", 15_000, t("2024-03-07T10:00:00Z"))
        .await;
    log.purchase(org, dee, "d1", "north", 10_000, t("2024-03-11T10:00:00Z"))
        .await;
    log.flush().await;
    wait_projected(&pool, Duration::from_secs(30)).await;

    let board = |location: &'static str, period: &'static str, key: &'static str| {
        let pool = pool.clone();
        async move {
            rows(&pool, &format!("SELECT rank, display_name AS name, points FROM rm.leaderboard \
                                  WHERE org_id = 'ties' AND location_id = '{location}' AND period = '{period}' \
                                  AND period_key = '{key}' ORDER BY rank, reached_at, reached_position, member_id")).await
        }
    };
    let bo_name: String = sqlx::query_scalar("SELECT rm.member_pseudonym($1)")
        .bind(bo)
        .fetch_one(&pool)
        .await
        .unwrap();
    let e = |rank: i64, name: &str, points: i64| json!({"rank": rank, "name": name, "points": points});
    // Standard competition ranking 1, 2, 2, 4; Ann reached 100 before Bo.
    assert_eq!(
        board("", "week", "2024-W10").await,
        vec![
            e(1, "Eve", 150),
            e(2, "Ann", 100),
            e(2, &bo_name, 100),
            e(4, "Cid", 50)
        ]
    );
    // Eve refunds a third of her purchase two weeks later: 50 points come off week 10 (and off
    // the north store), and Eve reached her 100 last.
    log.refund(org, eve, "er1", "e1", 5_000, t("2024-03-20T10:00:00Z"))
        .await;
    log.flush().await;
    wait_projected(&pool, Duration::from_secs(30)).await;
    assert_eq!(
        board("", "week", "2024-W10").await,
        vec![
            e(1, "Ann", 100),
            e(1, &bo_name, 100),
            e(1, "Eve", 100),
            e(4, "Cid", 50)
        ]
    );
    assert_eq!(board("", "week", "2024-W11").await, vec![e(1, "Dee", 100)]);
    assert_eq!(board("", "week", "2024-W12").await, Vec::<Value>::new());
    assert_eq!(
        board("", "month", "2024-03").await,
        vec![
            e(1, "Ann", 100),
            e(1, &bo_name, 100),
            e(1, "Dee", 100),
            e(1, "Eve", 100),
            e(5, "Cid", 50)
        ]
    );
    assert_eq!(board("", "month", "2024-02").await, vec![e(1, "Cid", 80)]);
    assert_eq!(
        board("", "all", "all").await,
        vec![
            e(1, "Cid", 130),
            e(2, "Ann", 100),
            e(2, &bo_name, 100),
            e(2, "Dee", 100),
            e(2, "Eve", 100)
        ]
    );
    assert_eq!(
        board("north", "week", "2024-W10").await,
        vec![e(1, "Ann", 100), e(1, &bo_name, 100), e(1, "Eve", 100)]
    );
    assert_eq!(board("south", "all", "all").await, vec![e(1, "Cid", 130)]);
    // Redemptions do not count.
    log.adjust(org, ann, "gift", 500, t("2024-03-21T10:00:00Z"))
        .await
        .unwrap();
    log.redeem(org, ann, "r1", "tote", t("2024-03-21T11:00:00Z"))
        .await
        .unwrap();
    log.flush().await;
    wait_projected(&pool, Duration::from_secs(30)).await;
    assert_eq!(board("", "all", "all").await[1], e(2, "Ann", 100));
    // No external id or e-mail ever appears as a name.
    let names: Vec<String> = sqlx::query_scalar("SELECT DISTINCT display_name FROM rm.leaderboard")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(names.iter().all(|n| !n.contains('@')), "{names:?}");
    // Ann buys again in week 12, then returns a fifth of her week-10 purchase: week 10 is no
    // longer her latest, and still loses the 20 points clawed back; the month loses them too.
    log.purchase(org, ann, "a2", "north", 5_000, t("2024-03-22T10:00:00Z"))
        .await;
    log.refund(org, ann, "ar1", "a1", 2_000, t("2024-03-23T10:00:00Z"))
        .await;
    log.flush().await;
    wait_projected(&pool, Duration::from_secs(30)).await;
    assert_eq!(
        board("", "week", "2024-W10").await,
        vec![
            e(1, &bo_name, 100),
            e(1, "Eve", 100),
            e(3, "Ann", 80),
            e(4, "Cid", 50)
        ]
    );
    assert_eq!(board("north", "week", "2024-W12").await, vec![e(1, "Ann", 50)]);
    assert_eq!(board("", "month", "2024-03").await[0], e(1, "Ann", 130));
    let audit = projector::audit::audit(&pool, "rm").await.unwrap();
    assert!(audit.is_clean(), "{audit}");

    projector.stop().await.unwrap();
    relay.stop().await;
    nats.cleanup().await;
    db.cleanup().await;
}
