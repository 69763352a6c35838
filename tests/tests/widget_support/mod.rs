//! What the widget's browser tests share: a shop page on an origin of its own that embeds the
//! widget, customer tokens, and reading the widget's shadow DOM.

use std::time::{Duration, Instant};

use loyalty_tests::browser::Browser;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::query_support::{Stack, ORG};

pub const WAIT: Duration = Duration::from_secs(20);

/// What the widget says about tokens (widget/element.js).
pub const EXPIRED: &str = "Your session has expired. Please sign in again to see your points.";
pub const REFUSED: &str = "We could not confirm it is you. Please sign in again to see your points.";

/// A customer token for `subject`, signed with `secret`, issued `age` ago, living `lifetime`.
pub fn token(secret: &str, org: &str, subject: &str, age: Duration, lifetime: Duration) -> String {
    let issued = chrono::Utc::now() - chrono::Duration::from_std(age).unwrap();
    common::customer_token::sign(secret, org, subject, issued, lifetime)
}

pub fn fresh(secret: &str, subject: &str) -> String {
    token(secret, ORG, subject, Duration::ZERO, Duration::from_secs(900))
}

/// The shop's page: loud CSS of its own, the widget script from the query service.
pub struct ShopPage {
    pub url: String,
    stop: CancellationToken,
}

impl ShopPage {
    pub async fn serve(stack: &Stack, customer_token: &str) -> Self {
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
pub async fn text(browser: &Browser, css: &str) -> Value {
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
pub async fn wait_balance(browser: &Browser, points: i64, timeout: Duration) -> Duration {
    let started = Instant::now();
    let script = format!(
        "const el = document.querySelector('loyalty-widget')?.shadowRoot?.querySelector('.points');
         return el != null && !el.parentElement.hidden && el.textContent.replace(/,/g, '') === '{points}';"
    );
    if let Err(error) = browser.wait_for(&script, timeout).await {
        let shown = text(browser, ".points").await;
        let status = text(browser, ".status").await;
        panic!("{error}; the balance reads {shown}, the status {status}");
    }
    started.elapsed()
}

/// Waits until `css` inside the widget reads `expected` (the first element it matches).
pub async fn wait_text(browser: &Browser, css: &str, expected: &str) {
    let script = format!(
        "const el = document.querySelector('loyalty-widget')?.shadowRoot?.querySelector({});
         return el != null && el.textContent === {};",
        json!(css),
        json!(expected)
    );
    if let Err(error) = browser.wait_for(&script, WAIT).await {
        panic!("{error}; {css} reads {}", text(browser, css).await);
    }
}

/// Waits until the widget's status line reads `expected`.
pub async fn wait_status(browser: &Browser, expected: &str) {
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
pub async fn with_ada(euros: i64) -> (Stack, String, Uuid) {
    let stack = Stack::start().await;
    let secret = loyalty_tests::create_signing_secret(&stack.db, ORG).await;
    let ada = stack.enroll("card-ada", Some("Ada")).await;
    stack.purchase(ada, "rcpt-1", euros * 100).await;
    stack.wait_for_balance(ada, euros).await;
    (stack, secret, ada)
}
