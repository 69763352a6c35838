//! The analyst dashboard in a real headless Chromium: an analyst signs in once with an org
//! and an analyst key, and every chart and table shows the numbers the GraphQL API returns
//! for the same org; the member list filters and pages with the API's cursors; names typed by
//! members stay text; the page carries its Content-Security-Policy. Screenshots at desktop
//! and phone width land in `target/test-output/screenshots/`.

mod query_support;

use std::time::Duration;

use fantoccini::Locator;
use loyalty_tests::browser::{Browser, DESKTOP, PHONE};
use query_support::{Stack, LOCATION, ORG};
use serde_json::{json, Value};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

/// A member's display name that would run a script if it were ever parsed as HTML.
const HOSTILE_NAME: &str = "<img src=x onerror=\"window.__pwned=1\">Eve";

/// The stack's program with a welcome bonus (60 points of budget), two achievements and the
/// given extra promotions.
fn program(more_promotions: Value) -> Value {
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
async fn populated() -> (Stack, Vec<Uuid>) {
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
async fn purchase(stack: &Stack, member: Uuid, transaction_id: &str, amount_minor: i64, days_ago: i64) {
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
async fn api_numbers(stack: &Stack) -> Value {
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
async fn chart(browser: &Browser, name: &str) -> Value {
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
async fn table(browser: &Browser, name: &str) -> Vec<Vec<String>> {
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

fn numbers(values: &Value, field: &str) -> Vec<i64> {
    values
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[field].as_i64().unwrap())
        .collect()
}

fn strings(values: &Value, field: &str) -> Vec<String> {
    values
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[field].as_str().unwrap_or("").to_owned())
        .collect()
}

async fn sign_in(browser: &Browser, stack: &Stack, key: &str) {
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

async fn wait_ready(browser: &Browser) {
    browser
        .wait_for(
            "return document.body.dataset.ready === 'true'
                 && document.querySelector('[data-table=members]') !== null;",
            WAIT,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn every_chart_shows_the_numbers_of_the_api() {
    let (stack, _members) = populated().await;
    let api = api_numbers(&stack).await;
    let browser = Browser::start().await.unwrap();

    // A key of the wrong role is refused at the door, with the API's reason.
    sign_in(&browser, &stack, &stack.keys.storefront).await;
    let refusal = browser
        .wait_for(
            "const e = document.querySelector('.form-error');
             return e && e.textContent.includes('analyst') ? e.textContent : null;",
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(refusal, "`liability` requires an analyst key");

    sign_in(&browser, &stack, &stack.keys.analyst).await;
    wait_ready(&browser).await;

    // R × F heatmap: each cell [F-1, R-1, count] is the API's cell.
    let rfm = chart(&browser, "rfm").await;
    let mut shown: Vec<(i64, i64, i64)> = rfm["series"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|cell| {
            let cell = cell.as_array().unwrap();
            (
                cell[1].as_i64().unwrap() + 1,
                cell[0].as_i64().unwrap() + 1,
                cell[2].as_i64().unwrap(),
            )
        })
        .collect();
    let mut expected: Vec<(i64, i64, i64)> = api["rfmGrid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["r"].as_i64().unwrap(),
                c["f"].as_i64().unwrap(),
                c["count"].as_i64().unwrap(),
            )
        })
        .collect();
    shown.sort_unstable();
    expected.sort_unstable();
    assert_eq!(shown, expected);
    assert_eq!(
        shown.iter().map(|c| c.2).sum::<i64>(),
        21,
        "the 21 purchasing members"
    );

    // Segments, tiers: bars in the API's order.
    let segments = chart(&browser, "segments").await;
    assert_eq!(
        segments["series"][0],
        json!(numbers(&api["segmentCounts"], "count"))
    );
    assert_eq!(
        segments["yCategories"],
        json!(strings(&api["segmentCounts"], "segment"))
    );
    let tiers = chart(&browser, "tiers").await;
    assert_eq!(
        tiers["series"][0],
        json!(numbers(&api["tierDistribution"], "count"))
    );
    assert_eq!(
        tiers["categories"],
        json!(strings(&api["tierDistribution"], "tier"))
    );
    assert_eq!(numbers(&api["tierDistribution"], "count").iter().sum::<i64>(), 23);

    // Segment changes: today's first scorings, per segment entered.
    let transitions = chart(&browser, "transitions").await;
    let entered: i64 = transitions["series"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()))
        .sum();
    assert_eq!(
        entered,
        numbers(&api["segmentTransitionCounts"], "count")
            .iter()
            .sum::<i64>()
    );
    assert_eq!(entered, 21);

    // Liability: the headline, the line (ending at the headline) and its table.
    let headline = browser
        .eval(
            "return document.querySelector('[data-kpi=liability]').textContent;",
            vec![],
        )
        .await
        .unwrap();
    let liability = api["liability"]["points"].as_i64().unwrap();
    assert_eq!(headline.as_str().unwrap().replace(',', ""), liability.to_string());
    let line = chart(&browser, "liability").await;
    let history = numbers(&api["liabilityHistory"], "points");
    assert_eq!(line["series"][0], json!(history));
    assert_eq!(history.len(), 90);
    assert_eq!(history.last(), Some(&liability));
    assert_eq!(
        line["categories"],
        json!(strings(&api["liabilityHistory"], "day"))
    );

    // Promotions: points per promotion on the chart, every figure in the table.
    let promotions = chart(&browser, "promotions").await;
    assert_eq!(
        promotions["series"][0],
        json!(numbers(&api["promotionStats"], "points"))
    );
    assert_eq!(
        promotions["series"][1],
        json!(numbers(&api["promotionStats"], "uses"))
    );
    let welcome = &api["promotionStats"][0];
    assert_eq!(
        welcome["budgetLeft"], 0,
        "12 first purchases × 5 points spend the 60: {welcome}"
    );
    assert_eq!(
        table(&browser, "promotions").await,
        vec![vec![
            "Welcome bonus".to_owned(),
            welcome["uses"].to_string(),
            welcome["members"].to_string(),
            "60".to_owned(),
            "60".to_owned(),
            "0".to_owned(),
        ]]
    );

    // Leaderboard: all time org-wide, then this month at one location.
    let board = |entries: &Value| -> Vec<Vec<String>> {
        entries
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                vec![
                    e["rank"].to_string(),
                    e["displayName"].as_str().unwrap().to_owned(),
                    e["points"].to_string(),
                ]
            })
            .collect()
    };
    let shows = |board: &str| {
        format!(
            "const body = document.querySelector('#panel-leaderboard .panel-body');
             return body.dataset.board === '{board}' && body.querySelector('[data-table=leaderboard]') !== null;"
        )
    };
    let select = |id: &'static str, value: &'static str| {
        let browser = &browser;
        async move {
            let element = browser.client().find(Locator::Id(id)).await.unwrap();
            element.select_by_value(value).await.unwrap();
        }
    };
    select("board-period", "ALL_TIME").await;
    browser.wait_for(&shows("ALL_TIME/"), WAIT).await.unwrap();
    assert_eq!(table(&browser, "leaderboard").await, board(&api["leaderboard"]));
    select("board-period", "MONTH").await;
    select("board-location", LOCATION).await;
    browser
        .wait_for(&shows(&format!("MONTH/{LOCATION}")), WAIT)
        .await
        .unwrap();
    let located = board(&api["located"]);
    assert_eq!(table(&browser, "leaderboard").await, located);
    assert_ne!(
        located,
        board(&api["leaderboard"]),
        "the harbour purchase is not on the main street's board"
    );

    // Achievements: one funnel each, started ≥ half way ≥ unlocked, as the API counts them.
    for stats in api["achievementStats"].as_array().unwrap() {
        let funnel = chart(
            &browser,
            &format!("funnel-{}", stats["achievementId"].as_str().unwrap()),
        )
        .await;
        let steps: Vec<(String, i64)> = funnel["series"][0]
            .as_array()
            .unwrap()
            .iter()
            .map(|step| {
                (
                    step["name"].as_str().unwrap().to_owned(),
                    step["value"].as_i64().unwrap(),
                )
            })
            .collect();
        let expected = vec![
            ("Started".to_owned(), stats["started"].as_i64().unwrap()),
            ("Half way".to_owned(), stats["halfway"].as_i64().unwrap()),
            ("Unlocked".to_owned(), stats["unlocked"].as_i64().unwrap()),
        ];
        assert_eq!(steps, expected);
    }
    assert_eq!(
        api["achievementStats"][0]["unlocked"], 8,
        "the members with two purchases"
    );

    // Simulations: the run's totals, and its per-promotion breakdown.
    let simulation = &api["simulations"][0];
    let runs = chart(&browser, "simulations").await;
    assert_eq!(
        runs["series"],
        json!([[simulation["actualPoints"]], [simulation["draftPoints"]]])
    );
    assert_eq!(
        simulation["draftPoints"].as_i64().unwrap() - simulation["actualPoints"].as_i64().unwrap(),
        2 * simulation["purchases"].as_i64().unwrap(),
        "two more points per purchase"
    );
    let detail = chart(&browser, "simulation-detail").await;
    let by_promotion = simulation["byPromotion"].as_array().unwrap();
    assert_eq!(
        detail["categories"],
        json!(strings(&simulation["byPromotion"], "key"))
    );
    assert_eq!(
        detail["series"],
        json!([
            by_promotion
                .iter()
                .map(|p| &p["actualPoints"])
                .collect::<Vec<_>>(),
            by_promotion.iter().map(|p| &p["draftPoints"]).collect::<Vec<_>>()
        ])
    );

    // A name typed by a member is text, never markup.
    let pwned = browser
        .eval("return window.__pwned === undefined;", vec![])
        .await
        .unwrap();
    assert_eq!(pwned, json!(true), "no script ran");
    let shown = browser
        .eval(
            "return [...document.querySelectorAll('td')].some((td) => td.textContent === arguments[0]);",
            vec![json!(HOSTILE_NAME)],
        )
        .await
        .unwrap();
    assert_eq!(shown, json!(true), "the name is shown as the member typed it");

    browser.screenshot("dashboard-desktop", DESKTOP).await.unwrap();
    browser.screenshot("dashboard-phone", PHONE).await.unwrap();
    drop(browser);
    stack.cleanup().await;
}

#[tokio::test]
async fn the_member_list_filters_and_pages_like_the_api() {
    let (stack, _members) = populated().await;
    let browser = Browser::start().await.unwrap();
    sign_in(&browser, &stack, &stack.keys.analyst).await;
    wait_ready(&browser).await;

    // Every control has a label, every chart a name; tables name their columns.
    let unlabelled = browser
        .eval(
            "return [
               [...document.querySelectorAll('input, select')].filter((c) => c.labels.length === 0).length,
               [...document.querySelectorAll('[data-chart]')].filter((c) => !c.getAttribute('aria-label')).length,
               document.querySelectorAll('th:not([scope=col])').length,
               document.querySelectorAll('[data-chart]').length];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        unlabelled.as_array().unwrap()[..3],
        [json!(0), json!(0), json!(0)],
        "{unlabelled}"
    );
    assert!(unlabelled[3].as_u64().unwrap() >= 8, "{unlabelled}");

    let page = |filter: Value, after: Value| {
        let stack = &stack;
        async move {
            stack
                .query
                .graphql(
                    Some(&stack.keys.analyst),
                    "query($org: ID!, $filter: MemberFilter, $after: String) {
                       members(orgId: $org, filter: $filter, first: 20, after: $after) {
                         pageInfo { hasNextPage endCursor }
                         nodes { displayName memberId balance { points } }
                       }
                     }",
                    json!({"org": ORG, "filter": filter, "after": after}),
                )
                .await
                .data()["members"]
                .clone()
        }
    };
    let rows = |nodes: &Value| -> Vec<(String, String)> {
        nodes
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["displayName"].as_str().unwrap().to_owned(),
                    n["balance"]["points"].to_string(),
                )
            })
            .collect()
    };
    let shown = |cells: Vec<Vec<String>>| -> Vec<(String, String)> {
        cells
            .into_iter()
            .map(|row| (row[0].clone(), row[3].clone()))
            .collect()
    };

    // First page, then the next one with the API's cursor.
    let first = page(json!({}), Value::Null).await;
    assert_eq!(first["pageInfo"]["hasNextPage"], true);
    assert_eq!(shown(table(&browser, "members").await), rows(&first["nodes"]));
    let second = page(json!({}), first["pageInfo"]["endCursor"].clone()).await;
    browser
        .client()
        .find(Locator::Css("[data-action=next]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_for(
            "return document.querySelector('.page-label').textContent === 'Page 2';",
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(shown(table(&browser, "members").await), rows(&second["nodes"]));
    assert_eq!(second["nodes"].as_array().unwrap().len(), 3);
    let next_enabled = browser
        .client()
        .find(Locator::Css("[data-action=next]"))
        .await
        .unwrap()
        .is_enabled()
        .await
        .unwrap();
    assert!(!next_enabled, "no page after the last");

    // A segment filter (one that has members, not all of them) brings page 1 of that segment.
    let counts = api_numbers(&stack).await["segmentCounts"].clone();
    let segment = counts
        .as_array()
        .unwrap()
        .iter()
        .find(|c| (1..21).contains(&c["count"].as_i64().unwrap()))
        .expect("a segment with some of the members")["segment"]
        .as_str()
        .unwrap()
        .to_owned();
    let in_segment = page(json!({"segment": segment}), Value::Null).await;
    browser
        .client()
        .find(Locator::Id("members-segment"))
        .await
        .unwrap()
        .select_by_value(&segment)
        .await
        .unwrap();
    let count = in_segment["nodes"].as_array().unwrap().len();
    browser
        .wait_for(
            &format!(
                "const t = document.querySelector('[data-table=members]');
                 return document.querySelector('.page-label').textContent === 'Page 1'
                     && t && t.tBodies[0].rows.length === {count};"
            ),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(
        shown(table(&browser, "members").await),
        rows(&in_segment["nodes"])
    );
    let segments_shown: Vec<String> = table(&browser, "members")
        .await
        .into_iter()
        .map(|row| row[4].clone())
        .collect();
    assert!(segments_shown.iter().all(|s| *s == segment), "{segments_shown:?}");

    // The key lives in the tab's session: a reload needs no sign-in; signing out forgets it.
    browser.client().refresh().await.unwrap();
    wait_ready(&browser).await;
    browser
        .client()
        .find(Locator::Id("sign-out"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let stored = browser
        .eval("return sessionStorage.length;", vec![])
        .await
        .unwrap();
    assert_eq!(stored, json!(0));
    browser.client().refresh().await.unwrap();
    browser
        .client()
        .wait()
        .for_element(Locator::Id("login-key"))
        .await
        .unwrap();
    drop(browser);
    stack.cleanup().await;
}

#[tokio::test]
async fn the_pages_forbid_scripts_and_connections_from_elsewhere() {
    let stack = Stack::start().await;
    let response = reqwest::get(stack.query.url("/dashboard")).await.unwrap();
    assert_eq!(response.status(), 200);
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    // ECharts comes from the binary, and an unchanged file is not sent again.
    let echarts = reqwest::get(stack.query.url("/vendor/echarts.min.js"))
        .await
        .unwrap();
    assert_eq!(echarts.status(), 200);
    let etag = echarts.headers()["etag"].clone();
    assert!(echarts.text().await.unwrap().len() > 500_000);
    let again = reqwest::Client::new()
        .get(stack.query.url("/vendor/echarts.min.js"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    let missing = reqwest::get(stack.query.url("/dashboard/nope.js")).await.unwrap();
    assert_eq!(missing.status(), 404);
    stack.cleanup().await;
}
