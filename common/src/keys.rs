//! API keys: one table (`api_keys`) for every role of every org.
//!
//! A key looks like `lk_<role>_<32 base62 characters>` (about 190 random bits). Only its SHA-256
//! is stored, with the first 8 random characters as `key_prefix` so an operator can recognise a
//! key in a listing without being able to use it. The plaintext is returned once, by
//! [`create_key`], and never again.
//!
//! [`authenticate`] hashes the presented key and looks the hash up: the work does not depend on
//! how much of a guess matches a real key, and a revoked key is rejected like an unknown one.

use std::fmt;
use std::str::FromStr;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use rand::distr::{Alphanumeric, SampleString as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

/// Number of random base62 characters in a key.
pub const KEY_SECRET_LEN: usize = 32;
/// Number of random characters kept in clear as `key_prefix`.
pub const KEY_PREFIX_LEN: usize = 8;

/// What a key may do. Serialized lowercase (`"pos"`, `"admin"`, ...), as in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A point-of-sale terminal: enrol members, record purchases, refunds and redemptions.
    Pos,
    /// Program administration, adjustments, and everything a POS key can do.
    Admin,
    /// Read-only storefront widget queries.
    Storefront,
    /// Read-only analyst queries.
    Analyst,
    /// A storefront widget's public key (SPEC §10): names the org in a shopper's browser; alone
    /// it reads only public data, with a customer token that customer's own member.
    Publishable,
}

impl Role {
    /// Every role, in a stable order.
    pub const ALL: [Role; 5] = [
        Role::Pos,
        Role::Admin,
        Role::Storefront,
        Role::Analyst,
        Role::Publishable,
    ];

    /// The lowercase name used in keys, JSON and the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Pos => "pos",
            Role::Admin => "admin",
            Role::Storefront => "storefront",
            Role::Analyst => "analyst",
            Role::Publishable => "publishable",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of `pos`, `admin`, `storefront`, `analyst`, `publishable`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}`: expected one of pos, admin, storefront, analyst, publishable")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// An org id that is not a slug `[a-z0-9][a-z0-9-]{0,62}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid org id `{0}`: expected 1 to 63 characters of a-z, 0-9 and '-', not starting with '-'")]
pub struct InvalidOrgId(pub String);

/// Checks the org slug rule of SPEC §2 (the same rule the `api_keys` table enforces).
pub fn validate_org_id(org: &str) -> Result<(), InvalidOrgId> {
    let bytes = org.as_bytes();
    let valid = matches!(bytes.first(), Some(b'a'..=b'z' | b'0'..=b'9'))
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(InvalidOrgId(org.to_owned()))
    }
}

/// An authenticated key: who is calling, for which org, with which role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    pub key_id: Uuid,
    pub org_id: String,
    pub role: Role,
}

/// SHA-256 of `key`, lowercase hex: what `api_keys.key_hash` stores.
pub fn hash_key(key: &str) -> String {
    format!("{:x}", Sha256::digest(key.as_bytes()))
}

/// A fresh random key for `role` (not stored; see [`create_key`]).
pub fn generate_key(role: Role) -> String {
    // ThreadRng is a CSPRNG seeded from the OS.
    let secret = Alphanumeric.sample_string(&mut rand::rng(), KEY_SECRET_LEN);
    format!("lk_{role}_{secret}")
}

/// The token of an `Authorization: Bearer <token>` header value (scheme case-insensitive).
pub fn bearer_token(header_value: &str) -> Option<&str> {
    let (scheme, token) = header_value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Creates a key for `org` with `role`, stores its hash, and returns the plaintext key.
pub async fn create_key(pool: &PgPool, org: &str, role: Role) -> anyhow::Result<String> {
    Ok(issue_key(pool, org, role).await?.key)
}

/// A key just created: the only time its plaintext exists outside the caller.
#[derive(Debug, Clone, Serialize)]
pub struct NewKey {
    #[serde(flatten)]
    pub info: KeyInfo,
    /// The key itself, shown once.
    pub key: String,
}

/// What a listing shows of a key: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct KeyInfo {
    pub key_id: Uuid,
    pub org_id: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    /// The first characters of the key's random part, to recognise it.
    pub key_prefix: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl TryFrom<String> for Role {
    type Error = UnknownRole;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        name.parse()
    }
}

const KEY_INFO: &str = "key_id, org_id, role, key_prefix, created_at, revoked_at";

/// Creates a key for `org` with `role`, stores its hash, and returns it with its id.
pub async fn issue_key(pool: &PgPool, org: &str, role: Role) -> anyhow::Result<NewKey> {
    validate_org_id(org)?;
    let key = generate_key(role);
    let secret = &key[key.len() - KEY_SECRET_LEN..];
    let info: KeyInfo = sqlx::query_as(&format!(
        "INSERT INTO api_keys (key_id, org_id, role, key_hash, key_prefix) \
         VALUES ($1, $2, $3, $4, $5) RETURNING {KEY_INFO}"
    ))
    .bind(Uuid::new_v4())
    .bind(org)
    .bind(role.as_str())
    .bind(hash_key(&key))
    .bind(&secret[..KEY_PREFIX_LEN])
    .fetch_one(pool)
    .await
    .with_context(|| format!("storing a new {role} key for org {org}"))?;
    Ok(NewKey { info, key })
}

/// The keys of `org` (of `role` only, if given), newest first, revoked ones included.
pub async fn list_keys(pool: &PgPool, org: &str, role: Option<Role>) -> anyhow::Result<Vec<KeyInfo>> {
    sqlx::query_as(&format!(
        "SELECT {KEY_INFO} FROM api_keys WHERE org_id = $1 AND ($2::text IS NULL OR role = $2) \
         ORDER BY created_at DESC, key_id"
    ))
    .bind(org)
    .bind(role.map(Role::as_str))
    .fetch_all(pool)
    .await
    .with_context(|| format!("listing the keys of org {org}"))
}

/// Revokes the `role` key `key_id` of `org` (revoking a revoked key changes nothing) and returns
/// it; `None` if `org` has no such key.
pub async fn revoke_in_org(
    pool: &PgPool,
    org: &str,
    role: Role,
    key_id: Uuid,
) -> anyhow::Result<Option<KeyInfo>> {
    sqlx::query_as(&format!(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) \
         WHERE key_id = $1 AND org_id = $2 AND role = $3 RETURNING {KEY_INFO}"
    ))
    .bind(key_id)
    .bind(org)
    .bind(role.as_str())
    .fetch_optional(pool)
    .await
    .with_context(|| format!("revoking API key {key_id}"))
}

/// The key `bearer` stands for, or `None` if it is unknown or revoked.
pub async fn authenticate(pool: &PgPool, bearer: &str) -> anyhow::Result<Option<ApiKey>> {
    let row: Option<(Uuid, String, String)> = sqlx::query_as(
        "SELECT key_id, org_id, role FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
    )
    .bind(hash_key(bearer))
    .fetch_optional(pool)
    .await
    .context("looking up an API key")?;
    row.map(|(key_id, org_id, role)| {
        let role = role
            .parse()
            .with_context(|| format!("api_keys row {key_id} has a bad role"))?;
        Ok(ApiKey { key_id, org_id, role })
    })
    .transpose()
}

/// Revokes the key `key_id`. Returns `false` if there is no such active key.
pub async fn revoke(pool: &PgPool, key_id: Uuid) -> anyhow::Result<bool> {
    let result =
        sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL")
            .bind(key_id)
            .execute(pool)
            .await
            .with_context(|| format!("revoking API key {key_id}"))?;
    Ok(result.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(
                serde_json::to_value(role).unwrap(),
                serde_json::json!(role.as_str())
            );
            assert_eq!(
                serde_json::from_value::<Role>(serde_json::json!(role.as_str())).unwrap(),
                role
            );
        }
    }

    #[test]
    fn an_unknown_role_is_named_in_the_error() {
        let error = "Admin".parse::<Role>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown role `Admin`: expected one of pos, admin, storefront, analyst, publishable"
        );
        assert!("".parse::<Role>().is_err());
        assert!(serde_json::from_value::<Role>(serde_json::json!("root")).is_err());
    }

    #[test]
    fn keys_have_the_documented_format_and_differ() {
        for role in Role::ALL {
            let key = generate_key(role);
            let secret = key
                .strip_prefix(&format!("lk_{role}_"))
                .unwrap_or_else(|| panic!("{key} lacks its prefix"));
            assert_eq!(secret.len(), KEY_SECRET_LEN, "{key}");
            assert!(secret.bytes().all(|b| b.is_ascii_alphanumeric()), "{key}");
        }
        assert_ne!(generate_key(Role::Pos), generate_key(Role::Pos));
    }

    #[test]
    fn the_hash_is_sha256_hex() {
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn org_ids_follow_the_slug_rule() {
        for ok in ["a", "acme", "0", "acme-coffee-2", &"a".repeat(63)] {
            assert_eq!(validate_org_id(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "-acme",
            "Acme",
            "acme_coffee",
            "acme coffee",
            "é",
            &"a".repeat(64),
        ] {
            assert!(validate_org_id(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn bearer_tokens_are_extracted() {
        assert_eq!(bearer_token("Bearer lk_pos_x"), Some("lk_pos_x"));
        assert_eq!(bearer_token("bearer  lk_pos_x "), Some("lk_pos_x"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }
}
