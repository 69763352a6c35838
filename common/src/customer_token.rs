//! Customer tokens (SPEC §10): a JWT (HS256) that a merchant's backend signs with one of its
//! org's signing secrets for the logged-in shopper, so that a widget in the shopper's browser
//! reads (and redeems for) that shopper's member only.
//!
//! Claims: `sub` = the member's `external_id` or `member_id`, `aud` = the org, `exp` at most
//! [`MAX_LIFETIME`] ahead, `iat`. [`verify`] checks them with the `jsonwebtoken` crate against
//! the org's active secrets, and says precisely why a token is refused ([`TokenError`]).

use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::signing_secrets::OrgSecret;

/// The longest a token may live (`exp` − `iat`, and `exp` − now).
pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// The lifetime SPEC §10 recommends, and the one demo tokens get.
pub const RECOMMENDED_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Clock difference tolerated between the merchant's backend and us.
pub const LEEWAY: Duration = Duration::from_secs(30);
/// Longest `sub` accepted (an external id or a member id).
pub const MAX_SUBJECT_LEN: usize = 255;

/// The claims of a customer token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerClaims {
    /// The member: its `external_id` or its `member_id`.
    pub sub: String,
    /// The org.
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issue time, seconds since the epoch.
    pub iat: i64,
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub org_id: String,
    /// The member as the token names it (`external_id` or `member_id`).
    pub subject: String,
    pub expires_at: DateTime<Utc>,
    /// The secret that signed it.
    pub secret_id: Uuid,
}

/// Why a customer token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the customer token is malformed: {0}")]
    Malformed(String),
    #[error("the customer token has expired")]
    Expired,
    #[error("the customer token is not signed by any active signing secret of org '{0}'")]
    BadSignature(String),
    #[error("the customer token was signed with a revoked signing secret")]
    RevokedSecret,
    #[error("the customer token is for org '{token}', not '{org}'")]
    WrongOrg { token: String, org: String },
    #[error("the customer token lives too long: `exp` may be at most 24 h after `iat` and after now")]
    TooLongLived,
}

impl TokenError {
    /// A stable name of the reason, for clients (`extensions.reason`) and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "malformed",
            TokenError::Expired => "expired",
            TokenError::BadSignature(_) => "bad_signature",
            TokenError::RevokedSecret => "revoked_secret",
            TokenError::WrongOrg { .. } => "wrong_org",
            TokenError::TooLongLived => "too_long_lived",
        }
    }
}

/// Signs a token for `subject` of `org` with `secret`, issued `issued_at`, living `lifetime`.
pub fn sign(secret: &str, org: &str, subject: &str, issued_at: DateTime<Utc>, lifetime: Duration) -> String {
    let iat = issued_at.timestamp();
    let claims = CustomerClaims {
        sub: subject.to_owned(),
        aud: org.to_owned(),
        iat,
        exp: iat.saturating_add(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX)),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    // HS256 with serializable claims cannot fail.
    .expect("signing a customer token")
}

/// Checks `token` for `org` against the org's `secrets` (active and revoked) at `now`.
pub fn verify(
    token: &str,
    org: &str,
    secrets: &[OrgSecret],
    now: DateTime<Utc>,
) -> Result<Customer, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(describe(e.kind())))?;
    if header.alg != Algorithm::HS256 {
        return Err(TokenError::Malformed(format!(
            "`alg` must be HS256, not {:?}",
            header.alg
        )));
    }
    // The audience first, unverified, only to say "another org" rather than "bad signature"
    // when a token of another org is presented: it is still refused either way.
    if let Ok(peek) = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(token) {
        let audiences: Vec<&str> = match peek.claims.get("aud") {
            Some(serde_json::Value::String(aud)) => vec![aud.as_str()],
            Some(serde_json::Value::Array(auds)) => auds.iter().filter_map(|a| a.as_str()).collect(),
            _ => Vec::new(),
        };
        if !audiences.is_empty() && !audiences.contains(&org) {
            return Err(TokenError::WrongOrg {
                token: audiences.join(", "),
                org: org.to_owned(),
            });
        }
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&[org]);
    validation.set_required_spec_claims(&["exp", "sub", "aud"]);
    validation.leeway = LEEWAY.as_secs();

    let mut signed_by_revoked = false;
    for secret in secrets {
        let Some(key) = &secret.secret else { continue };
        let key = DecodingKey::from_secret(key.as_bytes());
        match jsonwebtoken::decode::<CustomerClaims>(token, &key, &validation) {
            Ok(_) if secret.revoked => signed_by_revoked = true,
            Ok(data) => return check_claims(data.claims, org, secret.secret_id, now),
            Err(error) => match error.kind() {
                ErrorKind::InvalidSignature => continue,
                // Every check after the signature: this secret signed it.
                _ if secret.revoked => signed_by_revoked = true,
                ErrorKind::ExpiredSignature => return Err(TokenError::Expired),
                other => return Err(TokenError::Malformed(describe(other))),
            },
        }
    }
    if signed_by_revoked {
        Err(TokenError::RevokedSecret)
    } else {
        Err(TokenError::BadSignature(org.to_owned()))
    }
}

fn check_claims(
    claims: CustomerClaims,
    org: &str,
    secret_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Customer, TokenError> {
    let leeway = i64::try_from(LEEWAY.as_secs()).unwrap_or(i64::MAX);
    let max = i64::try_from(MAX_LIFETIME.as_secs()).unwrap_or(i64::MAX);
    if claims.exp.saturating_add(leeway) < now.timestamp() {
        return Err(TokenError::Expired);
    }
    if claims.iat > now.timestamp().saturating_add(leeway) {
        return Err(TokenError::Malformed("`iat` is in the future".to_owned()));
    }
    if claims.exp.saturating_sub(claims.iat) > max
        || claims.exp > now.timestamp().saturating_add(max + leeway)
    {
        return Err(TokenError::TooLongLived);
    }
    if claims.sub.is_empty() || claims.sub.len() > MAX_SUBJECT_LEN {
        return Err(TokenError::Malformed(format!(
            "`sub` must be 1 to {MAX_SUBJECT_LEN} characters"
        )));
    }
    let expires_at = Utc
        .timestamp_opt(claims.exp, 0)
        .single()
        .ok_or_else(|| TokenError::Malformed("`exp` is out of range".to_owned()))?;
    Ok(Customer {
        org_id: org.to_owned(),
        subject: claims.sub,
        expires_at,
        secret_id,
    })
}

fn describe(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::MissingRequiredClaim(claim) => format!("the `{claim}` claim is missing"),
        ErrorKind::InvalidClaimFormat(claim) => format!("the `{claim}` claim has the wrong type"),
        ErrorKind::InvalidAlgorithm => "`alg` must be HS256".to_owned(),
        ErrorKind::Json(error) => format!("the claims are not as expected ({error})"),
        ErrorKind::Base64(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => {
            "not a JWT (three base64url parts separated by dots)".to_owned()
        }
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(id: u128, value: &str, revoked: bool) -> OrgSecret {
        OrgSecret {
            secret_id: Uuid::from_u128(id),
            secret: Some(value.to_owned()),
            revoked,
        }
    }

    fn token(secret: &str, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn a_token_signed_by_any_active_secret_names_its_member() {
        let now = Utc::now();
        let secrets = [secret(1, "old", false), secret(2, "new", false)];
        for (id, value) in [(1, "old"), (2, "new")] {
            let signed = sign(value, "acme", "card-1", now, RECOMMENDED_LIFETIME);
            let customer = verify(&signed, "acme", &secrets, now).unwrap();
            assert_eq!(customer.subject, "card-1");
            assert_eq!(customer.org_id, "acme");
            assert_eq!(customer.secret_id, Uuid::from_u128(id));
            assert_eq!(customer.expires_at.timestamp(), now.timestamp() + 900);
        }
    }

    #[test]
    fn every_refusal_says_why() {
        let now = Utc::now();
        let t = now.timestamp();
        let secrets = [secret(1, "active", false), secret(2, "revoked", true)];
        let cases = [
            (
                sign(
                    "active",
                    "acme",
                    "m",
                    now - chrono::Duration::hours(2),
                    RECOMMENDED_LIFETIME,
                ),
                "expired",
            ),
            (
                sign("wrong", "acme", "m", now, RECOMMENDED_LIFETIME),
                "bad_signature",
            ),
            (
                sign("revoked", "acme", "m", now, RECOMMENDED_LIFETIME),
                "revoked_secret",
            ),
            (
                sign("active", "globex", "m", now, RECOMMENDED_LIFETIME),
                "wrong_org",
            ),
            (
                sign(
                    "active",
                    "acme",
                    "m",
                    now,
                    MAX_LIFETIME + Duration::from_secs(3600),
                ),
                "too_long_lived",
            ),
            (
                token(
                    "active",
                    serde_json::json!({"sub": "m", "aud": "acme", "iat": t, "exp": t + 60 + 24 * 3600}),
                ),
                "too_long_lived",
            ),
            (
                token(
                    "active",
                    serde_json::json!({"sub": "m", "aud": "acme", "exp": t + 60}),
                ),
                "malformed",
            ),
            (
                token(
                    "active",
                    serde_json::json!({"sub": "m", "aud": "acme", "iat": t, "exp": "never"}),
                ),
                "malformed",
            ),
            (
                token(
                    "active",
                    serde_json::json!({"aud": "acme", "iat": t, "exp": t + 60}),
                ),
                "malformed",
            ),
            (
                token(
                    "active",
                    serde_json::json!({"sub": "", "aud": "acme", "iat": t, "exp": t + 60}),
                ),
                "malformed",
            ),
            (
                token(
                    "active",
                    serde_json::json!({"sub": "m", "aud": "acme", "iat": t + 3600, "exp": t + 3660}),
                ),
                "malformed",
            ),
            ("not.a.jwt".to_owned(), "malformed"),
            ("".to_owned(), "malformed"),
        ];
        for (token, reason) in cases {
            let error = verify(&token, "acme", &secrets, now).unwrap_err();
            assert_eq!(error.reason(), reason, "{token}: {error}");
        }
    }

    #[test]
    fn other_algorithms_are_refused() {
        let now = Utc::now().timestamp();
        let claims = serde_json::json!({"sub": "m", "aud": "acme", "iat": now, "exp": now + 60});
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(b"active"),
        )
        .unwrap();
        let error = verify(&hs512, "acme", &[secret(1, "active", false)], Utc::now()).unwrap_err();
        assert_eq!(error.reason(), "malformed", "{error}");
        // `alg: none` with no signature.
        let parts: Vec<&str> = hs512.split('.').collect();
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
        assert!(verify(&none, "acme", &[secret(1, "active", false)], Utc::now()).is_err());
    }

    #[test]
    fn a_secret_of_another_pepper_verifies_nothing() {
        let now = Utc::now();
        let unusable = OrgSecret {
            secret_id: Uuid::from_u128(1),
            secret: None,
            revoked: false,
        };
        let signed = sign("whatever", "acme", "m", now, RECOMMENDED_LIFETIME);
        let error = verify(&signed, "acme", &[unusable], now).unwrap_err();
        assert_eq!(error.reason(), "bad_signature");
    }
}
