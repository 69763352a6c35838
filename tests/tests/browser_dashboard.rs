//! The analyst dashboard in a real headless Chromium: an analyst signs in once with an org
//! and an analyst key, and every chart and table shows the numbers the GraphQL API returns
//! for the same org; the member list filters and pages with the API's cursors; names typed by
//! members stay text; the page carries its Content-Security-Policy. Screenshots at desktop
//! and phone width land in `target/test-output/screenshots/`.

mod dashboard_support;
mod query_support;

use dashboard_support::{
    api_numbers, chart, numbers, populated, sign_in, strings, table, wait_ready, HOSTILE_NAME, WAIT,
};
use fantoccini::Locator;
use loyalty_tests::browser::{Browser, DESKTOP, PHONE};
use query_support::{Stack, LOCATION, ORG};
use serde_json::{json, Value};

#[tokio::test]
async fn the_segment_tier_and_liability_charts_show_the_api_numbers() {
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

    browser.screenshot("dashboard-desktop", DESKTOP).await.unwrap();
    browser.screenshot("dashboard-phone", PHONE).await.unwrap();
    drop(browser);
    stack.cleanup().await;
}

#[tokio::test]
async fn promotions_leaderboards_achievements_and_simulations_show_the_api_numbers() {
    let (stack, _members) = populated().await;
    let api = api_numbers(&stack).await;
    let browser = Browser::start().await.unwrap();
    sign_in(&browser, &stack, &stack.keys.analyst).await;
    wait_ready(&browser).await;

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
