//! What the dashboard's browser tests share: an org with enough history for every chart, the
//! API's own numbers, and reading charts and tables off the page.

use std::time::Duration;

use fantoccini::Locator;
use loyalty_tests::browser::Browser;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::query_support::{Stack, LOCATION, ORG};

pub const WAIT: Duration = Duration::from_secs(20);

/// A member's display name that would run a script if it were ever parsed as HTML.
pub const HOSTILE_NAME: &str = "<img src=x onerror=\"window.__pwned=1\">Eve";

/// The stack's program with a welcome bonus (60 points of budget), two achievements and the
/// given extra promotions.
pub fn program(more_promotions: Value) -> Value {
    let mut promotions = vec![json!({"promotion_id": "welcome", "name": "Welcome bonus",
        "starts_at": "2024-01-01T00:00:00Z", "effect": {"bonus": {"points": 5}},
        "conditions": {"first_purchase": true}, "budget_points": 60})];
    promotions.extend(more_promotions.as_array().unwrap().iter().cloned());
    json!({
        "currency": "EUR", "earn_rate": 1,
        "stamp_cards": [{"card_id": "coffee", "name": "Coffee card", "stamps_required": 3,
                         "reward_id": "free-coffee"}],
        "rewards": [{"reward_id": "free-coffee", "name": "Free coffee", "points_cost": 10},
                    {"reward_id": "tote-bag", "name": "Tote bag", "points_cost": 500}],
        "promotions": promotions,
        "achievements": [
            {"achievement_id": "two-visits", "name": "Two visits", "badge": "Regular",
             "criteria": {"purchases": {"count": 2}}, "reward_points": 10},
            {"achievement_id": "big-spender", "name": "Big spender", "badge": "Big spender",
             "criteria": {"spend": {"amount_minor": 20000}}, "reward_points": 50}
        ],
    })
}

/// 23 members (more than a page of 20), 21 of them with purchases, a redemption, a promotion
/// that has awarded points, achievements on their way, a simulation report, and RFM scores.
pub async fn populated() -> (Stack, Vec<Uuid>) {
    let stack = Stack::start().await;
    let started = chrono::Utc::now() - chrono::Duration::days(80);
    stack
        .command(
            reqwest::Method::PUT,
            &format!("/v1/orgs/{ORG}/program"),
            &stack.keys.admin,
            program(json!([])),
        )
        .await;
    stack
        .command(
            reqwest::Method::POST,
            &format!("/v1/orgs/{ORG}/locations"),
            &stack.keys.admin,
            json!({"location_id": "harbour", "name": "Harbour"}),
        )
        .await;
    let mut members = Vec::new();
    for i in 0..23 {
        let name = if i == 3 {
            HOSTILE_NAME.to_owned()
        } else {
            format!("Member {i:02}")
        };
        members.push(stack.enroll(&format!("card-{i:02}"), Some(&name)).await);
    }
    // Purchases spread over the last ten weeks, so that recency and the liability vary.
    for (i, member) in members.iter().enumerate().take(21) {
        let euros = 5 + 37 * (i as i64 % 7) + i as i64;
        let days_ago = (i as i64 * 11) % 70;
        purchase(&stack, *member, &format!("rcpt-{i}"), euros * 100, days_ago).await;
        if i % 3 == 0 {
            purchase(&stack, *member, &format!("rcpt-{i}-b"), 2_000, days_ago / 2).await;
        }
    }
    // The all-time leader bought at the harbour, so the main street's board differs.
    stack
        .command(
            reqwest::Method::POST,
            &format!("/v1/orgs/{ORG}/members/{}/purchases", members[20]),
            &stack.keys.pos,
            json!({"transaction_id": "harbour-1", "location_id": "harbour", "amount_minor": 90_000,
                   "currency": "EUR", "occurred_at": chrono::Utc::now()}),
        )
        .await;
    stack
        .command(
            reqwest::Method::POST,
            &format!("/v1/orgs/{ORG}/members/{}/redemptions", members[6]),
            &stack.keys.pos,
            json!({"redemption_id": "r-1", "reward_id": "free-coffee"}),
        )
        .await;
    // What if every purchase had earned 2 more points?
    stack
        .command(
            reqwest::Method::POST,
            &format!("/v1/orgs/{ORG}/program/simulations"),
            &stack.keys.admin,
            json!({"from": started, "to": chrono::Utc::now(),
                   "draft": program(json!([{"promotion_id": "two-more", "name": "Two more",
                       "starts_at": "2024-01-01T00:00:00Z", "effect": {"bonus": {"points": 2}},
                       "stackable": true}]))}),
        )
        .await;
    loyalty_tests::wait_projected(stack.db.pool(), WAIT).await;
    projector::rfm::recompute(stack.db.pool(), "rm", ORG, chrono::Utc::now())
        .await
        .unwrap();
    (stack, members)
}

/// A purchase at the main street `days_ago` days ago.
pub async fn purchase(stack: &Stack, member: Uuid, transaction_id: &str, amount_minor: i64, days_ago: i64) {
    stack
        .command(
            reqwest::Method::POST,
            &format!("/v1/orgs/{ORG}/members/{member}/purchases"),
            &stack.keys.pos,
            json!({"transaction_id": transaction_id, "location_id": LOCATION, "amount_minor": amount_minor,
                   "currency": "EUR", "occurred_at": chrono::Utc::now() - chrono::Duration::days(days_ago)}),
        )
        .await;
}

/// Everything the dashboard shows, straight from the API.
pub async fn api_numbers(stack: &Stack) -> Value {
    stack
        .query
        .graphql(
            Some(&stack.keys.analyst),
            "query($org: ID!) {
               rfmGrid(orgId: $org) { r f segment count }
               segmentCounts(orgId: $org) { segment count }
               segmentTransitionCounts(orgId: $org, days: 30) { day from to count }
               tierDistribution(orgId: $org) { tier count }
               liability(orgId: $org) { points }
               liabilityHistory(orgId: $org, days: 90) { day points change }
               promotionStats(orgId: $org) { promotionId name uses points members budgetPoints budgetLeft }
               leaderboard(orgId: $org, period: ALL_TIME, first: 10) { rank displayName points }
               achievementStats(orgId: $org) { achievementId name started halfway close unlocked }
               simulations(orgId: $org) { simulationId purchases actualPoints draftPoints liabilityDelta
                 byPromotion { key actualPoints draftPoints } }
               located: leaderboard(orgId: $org, period: MONTH, locationId: \"main-street\", first: 10) { rank displayName points }
             }",
            json!({"org": ORG}),
        )
        .await
        .data()
        .clone()
}

/// The series data and categories of chart `name`, as ECharts holds them.
pub async fn chart(browser: &Browser, name: &str) -> Value {
    browser
        .eval(
            "const el = document.querySelector(`[data-chart=\"${arguments[0]}\"]`);
             const option = echarts.getInstanceByDom(el).getOption();
             return { series: option.series.map((s) => s.data),
                      categories: (option.xAxis || [])[0] ? option.xAxis[0].data : null,
                      yCategories: (option.yAxis || [])[0] ? option.yAxis[0].data : null };",
            vec![json!(name)],
        )
        .await
        .unwrap()
}

/// The cells of table `name`, row by row, numbers without their thousands separators.
pub async fn table(browser: &Browser, name: &str) -> Vec<Vec<String>> {
    let rows = browser
        .eval(
            "const table = document.querySelector(`[data-table=\"${arguments[0]}\"]`);
             if (!table) return null;
             return [...table.tBodies[0].rows].map((row) =>
               [...row.cells].map((cell) => cell.classList.contains('num')
                 ? cell.textContent.replace(/,/g, '') : cell.textContent));",
            vec![json!(name)],
        )
        .await
        .unwrap();
    serde_json::from_value(rows).unwrap_or_else(|_| panic!("no table {name}"))
}

pub fn numbers(values: &Value, field: &str) -> Vec<i64> {
    values
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[field].as_i64().unwrap())
        .collect()
}

pub fn strings(values: &Value, field: &str) -> Vec<String> {
    values
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[field].as_str().unwrap_or("").to_owned())
        .collect()
}

pub async fn sign_in(browser: &Browser, stack: &Stack, key: &str) {
    browser.goto(&stack.query.url("/dashboard")).await.unwrap();
    let client = browser.client();
    client
        .wait()
        .for_element(Locator::Id("login-org"))
        .await
        .unwrap()
        .send_keys(ORG)
        .await
        .unwrap();
    client
        .find(Locator::Id("login-key"))
        .await
        .unwrap()
        .send_keys(key)
        .await
        .unwrap();
    client
        .find(Locator::Css("form.login button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

pub async fn wait_ready(browser: &Browser) {
    browser
        .wait_for(
            "return document.body.dataset.ready === 'true'
                 && document.querySelector('[data-table=members]') !== null;",
            WAIT,
        )
        .await
        .unwrap();
}
