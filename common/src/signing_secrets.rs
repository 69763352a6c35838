//! Signing secrets of customer tokens (SPEC §10): per org, created, listed and revoked by an
//! admin; several may be active at once so a merchant can rotate without downtime.
//!
//! HS256 needs the secret itself to verify a signature, so it cannot be stored as a hash like
//! an API key. It is not stored at all: a row keeps a random salt, and the secret is
//! `lks_` + hex(HMAC-SHA256(pepper, secret_id ‖ salt)), where the [`Pepper`] is the services'
//! `SECRETS_PEPPER` setting, kept outside the database. Whoever has a dump of the database but
//! not the pepper cannot sign tokens. Without a pepper (development) the secrets follow from
//! the database alone, and the services warn about it.
//!
//! The plaintext is returned once, by [`create`]; listings show the `fingerprint` (the first
//! 12 hex digits of the secret's SHA-256), which names a secret without revealing it.

use std::fmt;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::keys::validate_org_id;

/// What every secret starts with, so that one pasted in the wrong place is recognised.
pub const SECRET_PREFIX: &str = "lks_";

/// The server-side key every signing secret is derived with (`SECRETS_PEPPER`). Its `Debug`
/// never shows it.
#[derive(Clone, Default)]
pub struct Pepper(Option<Vec<u8>>);

impl Pepper {
    /// The pepper `value`; `None` or empty: no pepper (development only).
    pub fn new(value: Option<&str>) -> Self {
        Self(value.filter(|v| !v.is_empty()).map(|v| v.as_bytes().to_vec()))
    }

    /// Whether a pepper is configured.
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    fn mac(&self) -> Hmac<Sha256> {
        let key = self.0.as_deref().unwrap_or_default();
        // HMAC takes keys of any length.
        Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length")
    }

    /// Names the pepper without revealing it: recorded with each secret, so a service
    /// configured with another pepper can tell instead of failing every signature.
    pub fn id(&self) -> String {
        let mut mac = self.mac();
        mac.update(b"loyalty pepper id");
        hex(&mac.finalize().into_bytes()[..8])
    }

    /// The secret of `secret_id` with `salt`.
    pub fn derive(&self, secret_id: Uuid, salt: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(b"loyalty signing secret\0");
        mac.update(secret_id.as_bytes());
        mac.update(salt);
        format!("{SECRET_PREFIX}{}", hex(&mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_set() {
            "Pepper(***)"
        } else {
            "Pepper(none)"
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The first 12 hex digits of SHA-256 of `secret`: what listings show.
pub fn fingerprint(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes())[..6])
}

/// What a listing shows of a secret: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct SecretInfo {
    pub secret_id: Uuid,
    pub org_id: String,
    /// The first 12 hex digits of the secret's SHA-256.
    pub fingerprint: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A secret just created: the only time its plaintext leaves the service.
#[derive(Debug, Clone, Serialize)]
pub struct NewSecret {
    #[serde(flatten)]
    pub info: SecretInfo,
    pub secret: String,
}

/// A secret of an org as the verifier needs it.
#[derive(Clone)]
pub struct OrgSecret {
    pub secret_id: Uuid,
    /// The secret, or `None` if it was derived under another pepper (unusable here).
    pub secret: Option<String>,
    pub revoked: bool,
}

impl fmt::Debug for OrgSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrgSecret")
            .field("secret_id", &self.secret_id)
            .field("usable", &self.secret.is_some())
            .field("revoked", &self.revoked)
            .finish()
    }
}

const SECRET_INFO: &str = "secret_id, org_id, fingerprint, created_at, revoked_at";

/// Creates the signing secret `secret_id` for `org` and returns it. Creating an existing id
/// again creates nothing and returns the same secret (it is derived, not stored), so a retried
/// request whose id derives from its `Idempotency-Key` gets the same answer without the
/// answer ever being stored.
pub async fn create(pool: &PgPool, pepper: &Pepper, org: &str, secret_id: Uuid) -> anyhow::Result<NewSecret> {
    validate_org_id(org)?;
    let mut salt = [0_u8; 32];
    // ThreadRng is a CSPRNG seeded from the OS.
    rand::rng().fill_bytes(&mut salt);
    let fresh = pepper.derive(secret_id, &salt);
    sqlx::query(
        "INSERT INTO signing_secrets (secret_id, org_id, salt, pepper_id, fingerprint) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (secret_id) DO NOTHING",
    )
    .bind(secret_id)
    .bind(org)
    .bind(&salt[..])
    .bind(pepper.id())
    .bind(fingerprint(&fresh))
    .execute(pool)
    .await
    .with_context(|| format!("storing a new signing secret for org {org}"))?;
    #[derive(sqlx::FromRow)]
    struct Stored {
        #[sqlx(flatten)]
        info: SecretInfo,
        salt: Vec<u8>,
        pepper_id: String,
    }
    let Stored {
        info,
        salt,
        pepper_id,
    } = sqlx::query_as(&format!(
        "SELECT {SECRET_INFO}, salt, pepper_id FROM signing_secrets WHERE secret_id = $1"
    ))
    .bind(secret_id)
    .fetch_one(pool)
    .await
    .with_context(|| format!("reading signing secret {secret_id}"))?;
    anyhow::ensure!(
        info.org_id == org && pepper_id == pepper.id(),
        "signing secret {secret_id} exists for another org or under another pepper"
    );
    let secret = pepper.derive(secret_id, &salt);
    Ok(NewSecret { info, secret })
}

/// The signing secrets of `org`, newest first, revoked ones included.
pub async fn list(pool: &PgPool, org: &str) -> anyhow::Result<Vec<SecretInfo>> {
    sqlx::query_as(&format!(
        "SELECT {SECRET_INFO} FROM signing_secrets WHERE org_id = $1 ORDER BY created_at DESC, secret_id"
    ))
    .bind(org)
    .fetch_all(pool)
    .await
    .with_context(|| format!("listing the signing secrets of org {org}"))
}

/// Revokes the secret `secret_id` (of `org`, when given); revoking a revoked secret changes
/// nothing. `None` if there is no such secret.
pub async fn revoke(pool: &PgPool, org: Option<&str>, secret_id: Uuid) -> anyhow::Result<Option<SecretInfo>> {
    sqlx::query_as(&format!(
        "UPDATE signing_secrets SET revoked_at = coalesce(revoked_at, now()) \
         WHERE secret_id = $1 AND ($2::text IS NULL OR org_id = $2) RETURNING {SECRET_INFO}"
    ))
    .bind(secret_id)
    .bind(org)
    .fetch_optional(pool)
    .await
    .with_context(|| format!("revoking signing secret {secret_id}"))
}

/// Every secret of `org`, active ones first (newest first), derived with `pepper`.
pub async fn load(pool: &PgPool, pepper: &Pepper, org: &str) -> anyhow::Result<Vec<OrgSecret>> {
    let rows: Vec<(Uuid, Vec<u8>, String, bool)> = sqlx::query_as(
        "SELECT secret_id, salt, pepper_id, revoked_at IS NOT NULL FROM signing_secrets \
         WHERE org_id = $1 ORDER BY revoked_at IS NOT NULL, created_at DESC",
    )
    .bind(org)
    .fetch_all(pool)
    .await
    .with_context(|| format!("loading the signing secrets of org {org}"))?;
    let ours = pepper.id();
    Ok(rows
        .into_iter()
        .map(|(secret_id, salt, pepper_id, revoked)| {
            let usable = pepper_id == ours;
            if !usable && !revoked {
                tracing::error!(
                    org,
                    %secret_id,
                    "signing secret was created under another SECRETS_PEPPER: tokens signed with it are refused"
                );
            }
            OrgSecret {
                secret_id,
                secret: usable.then(|| pepper.derive(secret_id, &salt)),
                revoked,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_depends_on_the_pepper_the_id_and_the_salt() {
        let id = Uuid::new_v4();
        let salt = [7_u8; 32];
        let a = Pepper::new(Some("pepper-a"));
        let b = Pepper::new(Some("pepper-b"));
        let secret = a.derive(id, &salt);
        assert!(secret.starts_with(SECRET_PREFIX), "{secret}");
        assert_eq!(secret.len(), SECRET_PREFIX.len() + 64);
        assert_eq!(a.derive(id, &salt), secret, "derivation is deterministic");
        assert_ne!(b.derive(id, &salt), secret);
        assert_ne!(a.derive(Uuid::new_v4(), &salt), secret);
        assert_ne!(a.derive(id, &[8_u8; 32]), secret);
        assert_ne!(Pepper::new(None).derive(id, &salt), secret);
        assert_ne!(a.id(), b.id());
        assert_eq!(Pepper::new(Some("")).id(), Pepper::new(None).id());
    }

    #[test]
    fn the_pepper_is_never_shown() {
        let shown = format!("{:?}", Pepper::new(Some("hunter2")));
        assert_eq!(shown, "Pepper(***)");
        let secret = OrgSecret {
            secret_id: Uuid::nil(),
            secret: Some("lks_topsecret".into()),
            revoked: false,
        };
        assert!(!format!("{secret:?}").contains("topsecret"));
    }

    #[test]
    fn fingerprints_name_a_secret_without_revealing_it() {
        let print = fingerprint("lks_abc");
        assert_eq!(print.len(), 12);
        assert!(!"lks_abc".contains(&print));
        assert_ne!(print, fingerprint("lks_abd"));
    }
}
