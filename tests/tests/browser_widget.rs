//! The storefront widget in a real headless Chromium, embedded the way a shop embeds it: a
//! page on another origin (a server of its own in this test) loads `/widget.js` from the
//! query service and places `<loyalty-widget>`. The balance follows POS purchases live,
//! without a reload; member-typed names stay text; the shop's CSS stays out of the widget.
//! Screenshots at desktop and phone width land in `target/test-output/screenshots/`.

mod query_support;

use std::time::{Duration, Instant};

use loyalty_tests::browser::{Browser, DESKTOP, PHONE};
use query_support::{Stack, ORG};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

/// The shop's page: loud CSS of its own, the widget script from the query service.
struct ShopPage {
    url: String,
    stop: CancellationToken,
}

impl ShopPage {
    async fn serve(stack: &Stack, attributes: &str) -> Self {
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
<loyalty-widget {attributes}></loyalty-widget>
</body></html>"#,
            widget = stack.query.url("/widget.js"),
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
const TEXT: &str = "const root = document.querySelector('loyalty-widget')?.shadowRoot;
                    const el = root && root.querySelector(arguments[0]);
                    return el ? el.textContent : null;";

async fn text(browser: &Browser, css: &str) -> Value {
    browser.eval(TEXT, vec![json!(css)]).await.unwrap()
}

/// Waits until the widget's balance reads `points`; returns how long that took.
async fn wait_balance(browser: &Browser, points: i64, timeout: Duration) -> Duration {
    let started = Instant::now();
    let script = format!(
        "const root = document.querySelector('loyalty-widget')?.shadowRoot;
         const el = root && root.querySelector('.points');
         return el !== null && el !== undefined && el.textContent.replace(/,/g, '') === '{points}';"
    );
    if let Err(error) = browser.wait_for(&script, timeout).await {
        let shown = text(browser, ".points").await;
        let status = text(browser, ".status").await;
        panic!("{error}; the balance reads {shown}, the status {status}");
    }
    started.elapsed()
}

fn dev_attributes(stack: &Stack, member: Uuid) -> String {
    format!(
        r#"org="{ORG}" publishable-key="{}" member-id="{member}""#,
        stack.keys.storefront
    )
}

#[tokio::test]
async fn the_balance_follows_a_pos_purchase_without_a_reload() {
    let stack = Stack::start().await;
    let ada = stack.enroll("card-ada", Some("Ada")).await;
    stack.purchase(ada, "rcpt-1", 1_200).await;
    stack.wait_for_balance(ada, 12).await;
    let shop = ShopPage::serve(&stack, &dev_attributes(&stack, ada)).await;
    let browser = Browser::start().await.unwrap();
    browser.goto(&shop.url).await.unwrap();
    wait_balance(&browser, 12, WAIT).await;
    assert_eq!(text(&browser, ".member").await, "Hi, Ada");

    // A mark on the page: a reload would lose it.
    browser
        .eval("window.__sameDocument = true;", vec![])
        .await
        .unwrap();
    stack.purchase(ada, "rcpt-2", 3_050).await;
    let took = wait_balance(&browser, 42, Duration::from_secs(2)).await;
    assert!(took < Duration::from_secs(2), "shown after {took:?}");
    let same = browser
        .eval("return window.__sameDocument === true;", vec![])
        .await
        .unwrap();
    assert_eq!(same, json!(true), "the page was not reloaded");

    // The activity lists the purchase with its points breakdown (after the re-read).
    browser
        .wait_for(
            "const root = document.querySelector('loyalty-widget').shadowRoot;
             const first = root.querySelector('.activity li');
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
    assert_eq!(
        text(&browser, ".rewards li .name").await,
        "Free coffee",
        "the 10-point reward is affordable"
    );
    assert_eq!(
        text(&browser, ".next-reward").await,
        "Next: Tote bag \u{2014} 458 points to go"
    );

    browser.screenshot("widget-host-desktop", DESKTOP).await.unwrap();
    drop(browser);
    drop(shop);
    stack.cleanup().await;
}

#[tokio::test]
async fn member_names_stay_text_and_the_shops_css_stays_out() {
    let stack = Stack::start().await;
    let name = "<img src=x onerror=\"window.__pwned=1\">Mallory";
    let member = stack.enroll("card-m", Some(name)).await;
    stack.purchase(member, "rcpt-1", 2_000).await;
    stack.wait_for_balance(member, 20).await;
    let shop = ShopPage::serve(&stack, &dev_attributes(&stack, member)).await;
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
    let overflow = browser
        .eval(
            "const widget = document.querySelector('loyalty-widget');
             return widget.getBoundingClientRect().right <= document.documentElement.clientWidth
                 && widget.scrollWidth <= widget.clientWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(overflow, json!(true));
    drop(browser);
    drop(shop);
    stack.cleanup().await;
}
