//! The typed client of the command API (SPEC §8), for the load generator, the tests and any
//! Rust integrator: one method per endpoint, request and answer types that mirror the JSON
//! contract, the `Idempotency-Key` header on every write, and failures typed by status and the
//! API's error body ([`Error`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), loyalty_client::Error> {
//! use loyalty_client::{Client, Enrolment, MemberRef, Program};
//! let admin = Client::new("http://127.0.0.1:8080")?.with_key("lk_admin_...");
//! admin.configure_program("acme", "setup-1", &Program::new("EUR")).await?;
//! let pos = admin.with_key("lk_pos_...");
//! let enrolled = pos.enroll("acme", "enrol-1", &Enrolment::default()).await?;
//! let view = pos.member("acme", MemberRef::Id(enrolled.member_id)).await?;
//! assert_eq!(view.balance, 0);
//! # Ok(()) }
//! ```
//!
//! [`Client::send`] and [`Client::send_bytes`] send anything at all, for requests that are
//! malformed on purpose, and return the answer exactly as received ([`RawResponse`]).
//!
//! [`customer_token`] signs the customer tokens of storefront widgets (SPEC §10), as a
//! merchant's backend does; [`Client::with_customer_token`] sends one with a publishable key.

pub mod customer_token;
mod error;
mod jobs;
mod members;
mod program;
mod promotions;
mod raw;

use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use url::Url;

pub use error::{transport_kind, Error, ErrorBody, ErrorDetail};
pub use jobs::{JobReport, JobRequest};
pub use members::{
    Adjustment, Breakdown, Enrolment, Event, ExpiryView, Item, MemberRef, MemberView, MemberWrite,
    PromotionPoints, Purchase, Quote, Redemption, Refund, StampCardView, TierView,
};
pub use program::{Location, Program, ProgramView, ProgramWrite, Reward, StampCard, Tier};
pub use promotions::{Conditions, EarnCap, Effect, Limit, Promotion, PromotionEnd, Schedule};
pub use raw::RawResponse;
pub use reqwest;

/// The header every write carries; a retry with the same key and body gets the original answer.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// The header a customer token travels in, with the org's publishable key as the bearer key.
pub const CUSTOMER_TOKEN: &str = "X-Customer-Token";

/// A client of one command service, with one API key (or none).
///
/// Cloning is cheap and shares the connection pool; [`Client::with_key`] makes a client of
/// another key on the same pool.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// The base URL without a trailing `/`.
    base_url: String,
    key: Option<String>,
    customer_token: Option<String>,
}

impl Client {
    /// A client of the service at `base_url` (`http://host:port`), without a key, with a 30 s
    /// request timeout.
    pub fn new(base_url: &str) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self::with_http(http, base_url))
    }

    /// A client sending through `http` (its pool, timeouts, ...).
    pub fn with_http(http: reqwest::Client, base_url: &str) -> Self {
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            key: None,
            customer_token: None,
        }
    }

    /// The same client authenticating with `Authorization: Bearer <key>`.
    pub fn with_key(&self, key: impl Into<String>) -> Self {
        Self {
            key: Some(key.into()),
            ..self.clone()
        }
    }

    /// The same client also sending `X-Customer-Token: <token>` (with a publishable key: a
    /// storefront widget acting for its shopper, who may redeem for their own member only).
    pub fn with_customer_token(&self, token: impl Into<String>) -> Self {
        Self {
            customer_token: Some(token.into()),
            ..self.clone()
        }
    }

    /// The same client without credentials.
    pub fn anonymous(&self) -> Self {
        Self {
            key: None,
            customer_token: None,
            ..self.clone()
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `<base>/<segments...>`, each segment percent-encoded (external ids are free text).
    fn url(&self, segments: &[impl AsRef<str>]) -> Result<Url, Error> {
        let bad = || Error::BaseUrl(self.base_url.clone());
        let mut url = Url::parse(&self.base_url).map_err(|_| bad())?;
        url.path_segments_mut()
            .map_err(|()| bad())?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    fn request(&self, method: Method, url: Url, idempotency_key: Option<&str>) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, url);
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        if let Some(token) = &self.customer_token {
            request = request.header(CUSTOMER_TOKEN, token);
        }
        if let Some(idempotency_key) = idempotency_key {
            request = request.header(IDEMPOTENCY_KEY, idempotency_key);
        }
        request
    }

    async fn get<T: DeserializeOwned>(&self, segments: &[impl AsRef<str>]) -> Result<T, Error> {
        let request = self.request(Method::GET, self.url(segments)?, None);
        RawResponse::read(request.send().await?).await?.into_typed()
    }

    async fn write<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[impl AsRef<str>],
        idempotency_key: &str,
        body: &impl Serialize,
    ) -> Result<T, Error> {
        let request = self
            .request(method, self.url(segments)?, Some(idempotency_key))
            .json(body);
        RawResponse::read(request.send().await?).await?.into_typed()
    }
}
