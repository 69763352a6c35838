//! Demo customer tokens for the `/widget-demo` page (`--widget-demo`, env `WIDGET_DEMO`, off
//! by default): the page plays the merchant's backend and signs a token for a demo member with
//! the org's newest active signing secret, server-side, so the secret never reaches the browser.
//!
//! Never enable it in production: anyone who can load the page gets a token for any member the
//! page lets them name.

use chrono::Utc;
use common::credentials::Credentials;
use common::customer_token::{self, RECOMMENDED_LIFETIME};

/// Signs demo customer tokens; exists only when `--widget-demo` is set.
#[derive(Clone)]
pub struct DemoTokens {
    credentials: Credentials,
}

impl DemoTokens {
    /// Demo tokens when `enabled`, else `None`.
    pub fn new(enabled: bool, credentials: &Credentials) -> Option<Self> {
        enabled.then(|| {
            tracing::warn!("--widget-demo is on: /widget-demo signs customer tokens for anyone who asks");
            Self {
                credentials: credentials.clone(),
            }
        })
    }

    /// A token for `subject` (a member's external id or member id) of `org`, valid for the
    /// recommended 15 minutes, signed with the org's newest active secret; `None` if the org has
    /// no active secret (`command-service keys signing-secret create --org <org>`).
    pub async fn token(&self, org: &str, subject: &str) -> anyhow::Result<Option<String>> {
        let secrets = self.credentials.org_secrets(org).await?;
        let newest = secrets
            .iter()
            .filter(|secret| !secret.revoked)
            .find_map(|secret| secret.secret.as_deref());
        Ok(newest.map(|secret| customer_token::sign(secret, org, subject, Utc::now(), RECOMMENDED_LIFETIME)))
    }
}
