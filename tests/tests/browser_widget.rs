//! The storefront widget in a real headless Chromium, embedded the way a shop embeds it: a
//! page on another origin (a server of its own in this test) loads `/widget.js` from the
//! query service and places `<loyalty-widget>` with the org's publishable key and a customer
//! token its backend signed (SPEC §10). The balance follows POS purchases live, without a
//! reload; the shopper redeems and is refused when short; a token shows its own member only;
//! expired and wrongly signed tokens are said to be so; member-typed names stay text; the
//! shop's CSS stays out. The demo page signs its own tokens, only when enabled. Screenshots
//! at desktop and phone width land in `target/test-output/screenshots/`.

mod query_support;

use std::time::{Duration, Instant};

use fantoccini::Locator;
use loyalty_tests::browser::{Browser, DESKTOP, PHONE};
use query_support::{Stack, ORG};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

/// What the widget says about tokens (widget/element.js).
const EXPIRED: &str = "Your session has expired. Please sign in again to see your points.";
const REFUSED: &str = "We could not confirm it is you. Please sign in again to see your points.";

/// A customer token for `subject`, signed with `secret`, issued `age` ago, living `lifetime`.
fn token(secret: &str, org: &str, subject: &str, age: Duration, lifetime: Duration) -> String {
    let issued = chrono::Utc::now() - chrono::Duration::from_std(age).unwrap();
    common::customer_token::sign(secret, org, subject, issued, lifetime)
}

fn fresh(secret: &str, subject: &str) -> String {
    token(secret, ORG, subject, Duration::ZERO, Duration::from_secs(900))
}

/// The shop's page: loud CSS of its own, the widget script from the query service.
struct ShopPage {
    url: String,
    stop: CancellationToken,
}

impl ShopPage {
    async fn serve(stack: &Stack, customer_token: &str) -> Self {
        let html = format!(
            r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>A shop</title>
<style>
  body {{ font-family: Georgia, serif; margin: 16px; }}
  p, span, li, button, strong, h2, h3 {{ color: rgb(255, 0, 0) !important; font-size: 40px !important; }}
  .points {{ display: none !important; }}
</style>
<script src="{widget}" defer></script>
</head><body><h1>A shop</h1>
<loyalty-widget org="{ORG}" publishable-key="{key}" customer-token="{customer_token}"></loyalty-widget>
</body></html>"#,
            widget = stack.query.url("/widget.js"),
            key = stack.keys.publishable,
        );
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(move || async move { axum::response::Html(html) }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let cancelled = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { cancelled.cancelled().await })
                .await
        });
        Self { url, stop }
    }
}

impl Drop for ShopPage {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// `textContent` of `css` inside the widget's shadow root (null when absent).
async fn text(browser: &Browser, css: &str) -> Value {
    browser
        .eval(
            "const root = document.querySelector('loyalty-widget')?.shadowRoot;
             const el = root && root.querySelector(arguments[0]);
             return el ? el.textContent : null;",
            vec![json!(css)],
        )
        .await
        .unwrap()
}

/// Waits until the widget's balance reads `points`; returns how long that took.
async fn wait_balance(browser: &Browser, points: i64, timeout: Duration) -> Duration {
    let started = Instant::now();
    let script = format!(
        "const el = document.querySelector('loyalty-widget')?.shadowRoot?.querySelector('.points');
         return el != null && el.textContent.replace(/,/g, '') === '{points}';"
    );
    if let Err(error) = browser.wait_for(&script, timeout).await {
        let shown = text(browser, ".points").await;
        let status = text(browser, ".status").await;
        panic!("{error}; the balance reads {shown}, the status {status}");
    }
    started.elapsed()
}

/// Waits until the widget's status line reads `expected`.
async fn wait_status(browser: &Browser, expected: &str) {
    let script = format!(
        "const el = document.querySelector('loyalty-widget')?.shadowRoot?.querySelector('.status');
         return el != null && el.textContent === {};",
        json!(expected)
    );
    if let Err(error) = browser.wait_for(&script, WAIT).await {
        panic!("{error}; the status reads {}", text(browser, ".status").await);
    }
}

/// A stack, a signing secret, and a member `card-ada` ("Ada") with `euros` of purchases.
async fn with_ada(euros: i64) -> (Stack, String, Uuid) {
    let stack = Stack::start().await;
    let secret = loyalty_tests::create_signing_secret(&stack.db, ORG).await;
    let ada = stack.enroll("card-ada", Some("Ada")).await;
    stack.purchase(ada, "rcpt-1", euros * 100).await;
    stack.wait_for_balance(ada, euros).await;
    (stack, secret, ada)
}

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
    assert_eq!(
        text(&browser, ".outcomes li").await,
        "Redeemed Free coffee. Enjoy!"
    );

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
    stack.wait_for_balance(ada, 50).await;

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
    wait_balance(&browser, 50, WAIT).await;
    assert_eq!(text(&browser, ".member").await, "Hi, Ada");
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
