//! Customer tokens (SPEC §10), signed as a merchant's backend signs them: a JWT (HS256) with
//! `sub` = the member's `external_id` or `member_id`, `aud` = the org, `iat` and `exp` (at most
//! 24 h later; 15 minutes recommended), with one of the org's signing secrets (`lks_...`, its
//! UTF-8 bytes as the HMAC key). The browser gets the token, never the secret.
//!
//! ```
//! use std::time::Duration;
//! use loyalty_client::customer_token::{sign, CustomerToken};
//!
//! let token = sign(&CustomerToken::new("acme", "card-42", Duration::from_secs(15 * 60)), "lks_...");
//! assert_eq!(token.split('.').count(), 3);
//! ```

use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// The longest a token may live; the query and command APIs refuse longer ones.
pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// What a token says: whose member, of which org, from when, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerToken {
    /// The org (`aud`).
    pub org: String,
    /// The member (`sub`): its external id or its member id.
    pub subject: String,
    /// `iat`.
    pub issued_at: DateTime<Utc>,
    /// `exp` − `iat`.
    pub lifetime: Duration,
}

impl CustomerToken {
    /// A token for `subject` of `org`, issued now, living `lifetime`.
    pub fn new(org: impl Into<String>, subject: impl Into<String>, lifetime: Duration) -> Self {
        Self {
            org: org.into(),
            subject: subject.into(),
            issued_at: Utc::now(),
            lifetime,
        }
    }

    /// The same token issued at `issued_at` (e.g. in the past, for an expired one).
    pub fn issued_at(self, issued_at: DateTime<Utc>) -> Self {
        Self { issued_at, ..self }
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

/// The JWT of `token`, signed with `secret` (HS256).
pub fn sign(token: &CustomerToken, secret: &str) -> String {
    let iat = token.issued_at.timestamp();
    let lifetime = i64::try_from(token.lifetime.as_secs()).unwrap_or(i64::MAX);
    let claims = Claims {
        sub: &token.subject,
        aud: &token.org,
        iat,
        exp: iat.saturating_add(lifetime),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    // HS256 over plain claims cannot fail.
    .expect("signing a customer token")
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    #[test]
    fn the_claims_are_those_of_the_contract() {
        let token = CustomerToken::new("acme", "card-42", Duration::from_secs(900));
        let jwt = sign(&token, "lks_secret");
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&["acme"]);
        let decoded = jsonwebtoken::decode::<serde_json::Value>(
            &jwt,
            &DecodingKey::from_secret(b"lks_secret"),
            &validation,
        )
        .unwrap();
        let claims = decoded.claims;
        assert_eq!(claims["sub"], "card-42");
        assert_eq!(claims["aud"], "acme");
        assert_eq!(claims["iat"], token.issued_at.timestamp());
        assert_eq!(claims["exp"], token.issued_at.timestamp() + 900);
        assert_eq!(decoded.header.alg, Algorithm::HS256);
    }
}
