//! The storefront widget in a real headless Chromium, embedded the way a shop embeds it: a
//! page on another origin (a server of its own in this test) loads `/widget.js` from the
//! query service and places `<loyalty-widget>` with the org's publishable key and a customer
//! token its backend signed (SPEC §10). The balance follows POS purchases live, without a
//! reload; the shopper redeems and is refused when short; a token shows its own member only;
//! expired and wrongly signed tokens are said to be so; member-typed names stay text; the
//! shop's CSS stays out. The demo page signs its own tokens, only when enabled. Screenshots
//! at desktop and phone width land in `target/test-output/screenshots/`.

mod query_support;
mod widget_support;

use std::time::Duration;

use fantoccini::key::Key;
use fantoccini::Locator;
use loyalty_tests::browser::{Browser, DESKTOP, PHONE};
use query_support::{Stack, ORG};
use serde_json::{json, Value};
use widget_support::{
    fresh, text, token, wait_balance, wait_status, wait_text, with_ada, ShopPage, EXPIRED, REFUSED, WAIT,
};

#[tokio::test]
async fn the_balance_follows_a_pos_purchase_without_a_reload() {
    let (stack, secret, ada) = with_ada(12).await;
    let shop = ShopPage::serve(&stack, &fresh(&secret, "card-ada")).await;
    let browser = Browser::start().await.unwrap();
    browser.goto(&shop.url).await.unwrap();
    wait_balance(&browser, 12, WAIT).await;
    assert_eq!(text(&browser, ".member").await, "Hi, Ada");

    // Once the live updates are connected (the widget says so), a mark on the page: a reload
    // would lose it.
    browser
        .wait_for(
            "return document.querySelector('loyalty-widget').hasAttribute('data-live');",
            WAIT,
        )
        .await
        .unwrap();
    browser
        .eval("window.__sameDocument = true;", vec![])
        .await
        .unwrap();
    stack.purchase(ada, "rcpt-2", 3_050).await;
    let took = wait_balance(&browser, 42, Duration::from_secs(2)).await;
    assert!(took < Duration::from_secs(2), "shown after {took:?}");
    println!("the widget showed the purchase {took:?} after the POS had its answer");
    let same = browser
        .eval("return window.__sameDocument === true;", vec![])
        .await
        .unwrap();
    assert_eq!(same, json!(true), "the page was not reloaded");

    // The activity lists the purchase with its points breakdown (after the re-read).
    browser
        .wait_for(
            "const first = document.querySelector('loyalty-widget').shadowRoot.querySelector('.activity li');
             return first && first.textContent.includes('Why 30 points?');",
            WAIT,
        )
        .await
        .unwrap();
    let breakdown = browser
        .eval(
            "const d = document.querySelector('loyalty-widget').shadowRoot.querySelector('.activity li details');
             return [...d.querySelectorAll('dt, dd')].map((e) => e.textContent);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        breakdown,
        json!(["Base points", "30", "With your tier", "30", "Total", "30"])
    );
    // The tier bar says where the member stands: 42 of Silver's 500 qualifying points.
    let bar = browser
        .eval(
            "const bar = document.querySelector('loyalty-widget').shadowRoot.querySelector('[role=progressbar]');
             return [bar.getAttribute('aria-valuenow'), bar.getAttribute('aria-valuemax'), bar.getAttribute('aria-label')];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(bar, json!(["42", "500", "Progress to Silver"]));
    assert_eq!(text(&browser, ".to-next").await, "458 points to Silver");
    assert_eq!(text(&browser, ".rewards li .name").await, "Free coffee");
    assert_eq!(
        text(&browser, ".next-reward").await,
        "Next: Tote bag \u{2014} 458 points to go"
    );
    drop(browser);
    drop(shop);
    stack.cleanup().await;
}

#[tokio::test]
async fn redeeming_lowers_the_balance_and_is_refused_when_short() {
    let (stack, secret, ada) = with_ada(25).await;
    // A second cheap reward, so that two redemptions can race for the same points.
    stack
        .command(
            reqwest::Method::PUT,
            &format!("/v1/orgs/{ORG}/program"),
            &stack.keys.admin,
            json!({"currency": "EUR", "earn_rate": 1,
                   "rewards": [{"reward_id": "free-coffee", "name": "Free coffee", "points_cost": 10},
                               {"reward_id": "muffin", "name": "Muffin", "points_cost": 12}]}),
        )
        .await;
    stack
        .query
        .graphql_until(
            &stack.keys.analyst,
            "query($org: ID!) { program(orgId: $org) { rewards { rewardId } } }",
            json!({"org": ORG}),
            WAIT,
            |data| {
                data["program"]["rewards"]
                    .as_array()
                    .is_some_and(|r| r.len() == 2)
            },
        )
        .await;
    let shop = ShopPage::serve(&stack, &fresh(&secret, &ada.to_string())).await;
    let browser = Browser::start().await.unwrap();
    browser.goto(&shop.url).await.unwrap();
    wait_balance(&browser, 25, WAIT).await;

    // A real click on "Redeem" for the coffee: 25 − 10.
    let button = browser
        .in_shadow("loyalty-widget", "button.redeem[data-reward-id=free-coffee]")
        .await
        .unwrap();
    assert_eq!(
        button.attr("aria-label").await.unwrap().as_deref(),
        Some("Redeem Free coffee for 10 points")
    );
    button.click().await.unwrap();
    wait_balance(&browser, 15, Duration::from_secs(2)).await;
    wait_text(&browser, ".outcomes li", "Redeemed Free coffee. Enjoy!").await;

    // 15 points, both rewards affordable; both buttons pressed at once: the first to reach
    // the member's account wins, the other finds the balance short and is refused.
    browser
        .eval(
            "const root = document.querySelector('loyalty-widget').shadowRoot;
             root.querySelectorAll('button.redeem').forEach((button) => button.click());",
            vec![],
        )
        .await
        .unwrap();
    let outcomes = match browser
        .wait_for(
            "const items = document.querySelector('loyalty-widget').shadowRoot.querySelectorAll('.outcomes li');
             return items.length === 3 ? [...items].map((li) => [li.className, li.textContent]) : null;",
            WAIT,
        )
        .await
    {
        Ok(outcomes) => outcomes,
        Err(error) => panic!(
            "{error}: outcomes {}, status {}, balance {}, rewards {}",
            text(&browser, ".outcomes").await,
            text(&browser, ".status").await,
            text(&browser, ".points").await,
            text(&browser, ".rewards-slot").await
        ),
    };
    let outcomes: Vec<(String, String)> = serde_json::from_value(outcomes).unwrap();
    let refusals: Vec<&str> = outcomes
        .iter()
        .filter(|(class, _)| class == "error")
        .map(|(_, text)| text.as_str())
        .collect();
    assert_eq!(refusals.len(), 1, "one of the two is refused: {outcomes:?}");
    let refusal = refusals[0];
    assert!(
        refusal.ends_with("could not be redeemed: you do not have enough points for it yet."),
        "{refusal}"
    );
    let (left, refused) = if refusal.starts_with("Muffin") {
        (5, "Muffin")
    } else {
        (3, "Free coffee")
    };
    assert!(refusal.starts_with(refused));
    wait_balance(&browser, left, WAIT).await;
    // Nothing is affordable any more: no redeem button, the next reward within reach.
    browser
        .wait_for(
            "return document.querySelector('loyalty-widget').shadowRoot.querySelectorAll('button.redeem').length === 0;",
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(
        text(&browser, ".next-reward").await,
        format!("Next: Free coffee \u{2014} {} points to go", 10 - left)
    );
    // The account agrees: two redemptions, 25 − 10 − (10 or 12).
    stack.wait_for_balance(ada, left).await;
    drop(browser);
    drop(shop);
    stack.cleanup().await;
}

#[tokio::test]
async fn a_token_for_one_member_never_shows_another() {
    let (stack, secret, ada) = with_ada(12).await;
    let bob = stack.enroll("card-bob", Some("Bob")).await;
    let shop = ShopPage::serve(&stack, &fresh(&secret, "card-ada")).await;
    let browser = Browser::start().await.unwrap();
    browser.goto(&shop.url).await.unwrap();
    wait_balance(&browser, 12, WAIT).await;
    // Every balance and name the widget ever shows from now on.
    browser
        .eval(
            "const root = document.querySelector('loyalty-widget').shadowRoot;
             window.__seen = [];
             new MutationObserver(() => window.__seen.push(
               root.querySelector('.points').textContent + '|' + root.querySelector('.member').textContent))
               .observe(root, { subtree: true, childList: true, characterData: true });",
            vec![],
        )
        .await
        .unwrap();

    // Bob buys a lot, then Ada a little: Ada's widget moves to Ada's new balance only.
    stack.purchase(bob, "rcpt-bob", 77_700).await;
    stack.purchase(ada, "rcpt-ada", 3_300).await;
    wait_balance(&browser, 45, WAIT).await;
    let seen: Vec<String> =
        serde_json::from_value(browser.eval("return window.__seen;", vec![]).await.unwrap()).unwrap();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|s| !s.contains("777") && !s.contains("Bob")),
        "{seen:?}"
    );
    // And the API the widget talks to refuses Bob to Ada's token, as it refuses a stranger.
    let reply = stack
        .query
        .graphql_as_customer(
            &stack.keys.publishable,
            Some(&fresh(&secret, "card-ada")),
            "query($org: ID!, $id: ID!) { member(orgId: $org, memberId: $id) { balance { points } } }",
            json!({"org": ORG, "id": bob}),
        )
        .await;
    assert_eq!(reply.error_codes(), vec!["FORBIDDEN"]);
    drop(browser);
    drop(shop);
    stack.cleanup().await;
}

#[tokio::test]
async fn expired_and_wrongly_signed_tokens_are_told_apart() {
    let (stack, secret, _ada) = with_ada(12).await;
    let browser = Browser::start().await.unwrap();
    let hour = Duration::from_secs(3600);
    let cases = [
        // Issued an hour ago for 15 minutes.
        (
            token(&secret, ORG, "card-ada", hour, Duration::from_secs(900)),
            EXPIRED,
        ),
        // Signed with something that is not one of the org's secrets.
        (fresh("not-the-secret", "card-ada"), REFUSED),
        // Signed for another org.
        (
            token(
                &secret,
                "globex",
                "card-ada",
                Duration::ZERO,
                Duration::from_secs(900),
            ),
            REFUSED,
        ),
        ("not a token".to_owned(), REFUSED),
    ];
    for (customer_token, message) in cases {
        let shop = ShopPage::serve(&stack, &customer_token).await;
        browser.goto(&shop.url).await.unwrap();
        wait_status(&browser, message).await;
        assert_eq!(text(&browser, ".points").await, "", "no balance is shown");
        let role = browser
            .eval(
                "return document.querySelector('loyalty-widget').shadowRoot.querySelector('.status').getAttribute('role');",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(role, "alert", "announced to screen readers");
    }

    // A token that runs out while the page is open: the widget says so, without a reload.
    let short = token(&secret, ORG, "card-ada", Duration::ZERO, Duration::from_secs(3));
    let shop = ShopPage::serve(&stack, &short).await;
    browser.goto(&shop.url).await.unwrap();
    wait_balance(&browser, 12, WAIT).await;
    wait_status(&browser, EXPIRED).await;
    // The shop hands it a fresh token (as after `loyalty-token-expired`): it carries on.
    browser
        .eval(
            "document.querySelector('loyalty-widget').setAttribute('customer-token', arguments[0]);",
            vec![json!(fresh(&secret, "card-ada"))],
        )
        .await
        .unwrap();
    wait_status(&browser, "").await;
    wait_balance(&browser, 12, WAIT).await;
    drop(browser);
    stack.cleanup().await;
}

#[tokio::test]
async fn member_names_stay_text_and_the_shops_css_stays_out() {
    let stack = Stack::start().await;
    let secret = loyalty_tests::create_signing_secret(&stack.db, ORG).await;
    let name = "<img src=x onerror=\"window.__pwned=1\">Mallory";
    let member = stack.enroll("card-m", Some(name)).await;
    stack.purchase(member, "rcpt-1", 2_000).await;
    stack.wait_for_balance(member, 20).await;
    let shop = ShopPage::serve(&stack, &fresh(&secret, "card-m")).await;
    let browser = Browser::start().await.unwrap();
    browser.goto(&shop.url).await.unwrap();
    wait_balance(&browser, 20, WAIT).await;

    assert_eq!(text(&browser, ".member").await, format!("Hi, {name}"));
    let images = browser
        .eval(
            "return document.querySelector('loyalty-widget').shadowRoot.querySelectorAll('img').length
                  + document.querySelectorAll('img').length;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(images, json!(0), "no markup was made of the name");
    let pwned = browser
        .eval("return window.__pwned === undefined;", vec![])
        .await
        .unwrap();
    assert_eq!(pwned, json!(true));

    // The shop's `p, span { color: red; font-size: 40px }` and `.points { display: none }` do
    // not reach inside the shadow root.
    let style = browser
        .eval(
            "const root = document.querySelector('loyalty-widget').shadowRoot;
             const points = getComputedStyle(root.querySelector('.points'));
             const name = getComputedStyle(root.querySelector('.member'));
             return [points.display, name.color, name.fontSize];",
            vec![],
        )
        .await
        .unwrap();
    assert_ne!(style[0], "none");
    assert_ne!(style[1], "rgb(255, 0, 0)");
    assert_ne!(style[2], "40px");

    // At phone width everything fits the screen: nothing wider than the viewport.
    browser.resize(PHONE).await.unwrap();
    let fits = browser
        .eval(
            "const widget = document.querySelector('loyalty-widget');
             return widget.getBoundingClientRect().right <= document.documentElement.clientWidth
                 && widget.scrollWidth <= widget.clientWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(fits, json!(true));
    drop(browser);
    drop(shop);
    stack.cleanup().await;
}

#[tokio::test]
async fn the_demo_page_signs_a_token_only_when_enabled() {
    // Off by default: no demo page, no token endpoint.
    let plain = Stack::start().await;
    for path in ["/widget-demo", "/widget-demo/token?org=acme&member=card-ada"] {
        let status = reqwest::get(plain.query.url(path)).await.unwrap().status();
        assert_eq!(status, 404, "{path}");
    }
    plain.cleanup().await;

    let stack = Stack::start_with(|config| config.widget_demo = true).await;
    // A promotion running for everyone, and two achievements: one Ada unlocks, one on its way.
    stack
        .command(
            reqwest::Method::PUT,
            &format!("/v1/orgs/{ORG}/program"),
            &stack.keys.admin,
            json!({"currency": "EUR", "earn_rate": 1,
                   "stamp_cards": [{"card_id": "coffee", "name": "Coffee card", "stamps_required": 8,
                                    "reward_id": "free-coffee"}],
                   "rewards": [{"reward_id": "free-coffee", "name": "Free coffee", "points_cost": 40},
                               {"reward_id": "tote-bag", "name": "Tote bag", "points_cost": 250}],
                   "promotions": [{"promotion_id": "happy", "name": "Happy hour", "stackable": true,
                                   "starts_at": "2024-01-01T00:00:00Z", "effect": {"bonus": {"points": 5}}}],
                   "achievements": [
                       {"achievement_id": "two-visits", "name": "Two visits", "badge": "Regular",
                        "criteria": {"purchases": {"count": 2}}, "reward_points": 10},
                       {"achievement_id": "big-spender", "name": "Big spender", "badge": "Big spender",
                        "criteria": {"spend": {"amount_minor": 20000}}, "reward_points": 50}]}),
        )
        .await;
    let ada = stack.enroll("card-ada", Some("Ada")).await;
    // Before the org has a signing secret, the page says what to do.
    let refused = reqwest::get(stack.query.url("/widget-demo/token?org=acme&member=card-ada"))
        .await
        .unwrap();
    assert_eq!(refused.status(), 409);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("keys signing-secret create --org acme"),
        "{body}"
    );
    loyalty_tests::create_signing_secret(&stack.db, ORG).await;
    stack.purchase(ada, "rcpt-1", 4_250).await;
    stack.purchase(ada, "rcpt-2", 800).await;
    // 42 + 5, 8 + 5, and 10 for the badge.
    stack.wait_for_balance(ada, 70).await;

    let page = reqwest::get(stack.query.url("/widget-demo")).await.unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let browser = Browser::start().await.unwrap();
    let url = stack.query.url(&format!(
        "/widget-demo?org={ORG}&key={}&member=card-ada",
        stack.keys.publishable
    ));
    browser.goto(&url).await.unwrap();
    wait_balance(&browser, 70, WAIT).await;
    assert_eq!(text(&browser, ".member").await, "Hi, Ada");
    assert_eq!(text(&browser, ".promotions .name").await, "Happy hour");
    assert_eq!(text(&browser, ".promotions .effect").await, "+5 points");
    assert_eq!(text(&browser, ".badges li").await, "\u{2605}Regular");
    assert_eq!(text(&browser, ".achievements .count").await, "5,050 / 20,000");
    let selected = browser
        .client()
        .find(Locator::Id("member"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(selected.as_deref(), Some("card-ada"));
    browser
        .wait_for(
            "return document.querySelector('loyalty-widget').shadowRoot.querySelectorAll('.activity li').length >= 2;",
            WAIT,
        )
        .await
        .unwrap();
    browser.screenshot("widget-desktop", DESKTOP).await.unwrap();
    browser.screenshot("widget-phone", PHONE).await.unwrap();
    drop(browser);
    stack.cleanup().await;
}

#[tokio::test]
async fn the_widget_works_from_the_keyboard_and_reads_clearly() {
    let (stack, secret, _ada) = with_ada(25).await;
    let shop = ShopPage::serve(&stack, &fresh(&secret, "card-ada")).await;
    let browser = Browser::start().await.unwrap();
    browser.goto(&shop.url).await.unwrap();
    wait_balance(&browser, 25, WAIT).await;

    // Screen readers: the balance is a polite live region; every button and bar has a name.
    let unnamed = browser
        .eval(
            "const root = document.querySelector('loyalty-widget').shadowRoot;
             const balance = root.querySelector('.points');
             const nameless = [...root.querySelectorAll('button, [role=progressbar]')].filter((el) =>
               !(el.getAttribute('aria-label') || el.textContent).trim());
             return [balance.getAttribute('aria-live'), nameless.length,
                     root.querySelectorAll('[role=progressbar]:not([aria-valuetext])').length];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(unnamed, json!(["polite", 0, 0]));

    // Contrast: every text of the widget against the background it sits on, WCAG AA (4.5:1).
    let worst = browser
        .eval(
            "const root = document.querySelector('loyalty-widget').shadowRoot;
             const channels = (c) => c.match(/[\\d.]+/g).map(Number);
             const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255;
               return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
               .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
             const background = (el) => {
               for (let at = el; at; at = at.parentElement || at.getRootNode().host) {
                 const c = channels(getComputedStyle(at).backgroundColor);
                 if (c.length < 4 || c[3] > 0) return c;
               }
               return [255, 255, 255];
             };
             const texts = [...root.querySelectorAll('*')].filter((el) =>
               [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim()));
             const ratios = texts.map((el) => {
               const [a, b] = [lum(channels(getComputedStyle(el).color)), lum(background(el))];
               return [el.className || el.tagName, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)];
             });
             ratios.sort((x, y) => x[1] - y[1]);
             return [texts.length, ratios[0]];",
            vec![],
        )
        .await
        .unwrap();
    assert!(worst[0].as_u64().unwrap() > 20, "{worst}");
    assert!(worst[1][1].as_f64().unwrap() >= 4.5, "lowest contrast: {worst}");
    println!("texts and their lowest contrast: {worst}");

    // Keyboard: Tab reaches the redeem button, which shows where the focus is; Enter redeems.
    let focused_button = "const widget = document.querySelector('loyalty-widget');
         const active = document.activeElement === widget ? widget.shadowRoot.activeElement : null;
         return active && active.matches('button.redeem')
           ? [active.dataset.rewardId, getComputedStyle(active).outlineStyle] : null;";
    let mut reached = Value::Null;
    for _ in 0..30 {
        browser.press(Key::Tab).await.unwrap();
        reached = browser.eval(focused_button, vec![]).await.unwrap();
        if !reached.is_null() {
            break;
        }
    }
    assert_eq!(
        reached,
        json!(["free-coffee", "solid"]),
        "the focus is visible on the button"
    );
    browser.press(Key::Enter).await.unwrap();
    wait_balance(&browser, 15, WAIT).await;
    wait_text(&browser, ".outcomes li", "Redeemed Free coffee. Enjoy!").await;
    drop(browser);
    drop(shop);
    stack.cleanup().await;
}
