//! The admin API of storefront identity (SPEC §10): an org's publishable keys and the signing
//! secrets of its customer tokens, created (shown once), listed and revoked. Admin keys only.
//!
//! Creating is idempotent like every POST: a publishable key is public, so its answer is stored
//! and replayed as any other. A signing secret's answer is never stored: its id derives from the
//! `Idempotency-Key` and the secret from the id (see `common::signing_secrets`), so a retry
//! finds the same row and answers the same secret without it being written anywhere.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use common::keys::{KeyInfo, Role};
use common::signing_secrets::{self, SecretInfo};
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::auth::{Action, Caller};
use crate::http::command_request::{CommandRequest, OrgWrite};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{OrgPath, RequestContext};
use crate::http::state::AppState;

/// Namespace of signing-secret ids derived from `org` and `Idempotency-Key`.
const SECRET_NAMESPACE: Uuid = Uuid::from_u128(0x6c6b_735f_7365_6372_6574_5f69_645f_7631);

/// The body of `POST .../publishable-keys`: nothing (an empty body or `{}`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePublishableKey {}

impl CommandRequest for CreatePublishableKey {
    const ACTION: Action = Action::Administer;
    const BODY_OPTIONAL: bool = true;

    fn command() -> &'static str {
        "CreatePublishableKey"
    }
}

/// The body of `POST .../signing-secrets`: nothing (an empty body or `{}`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSigningSecret {}

impl CommandRequest for CreateSigningSecret {
    const ACTION: Action = Action::Administer;
    const BODY_OPTIONAL: bool = true;

    fn command() -> &'static str {
        "CreateSigningSecret"
    }
}

/// A publishable key as listed (never the key itself).
#[derive(Debug, Serialize, ToSchema)]
pub struct PublishableKeyView {
    pub key_id: Uuid,
    pub org_id: String,
    /// The first characters of the key's random part, to recognise it.
    pub key_prefix: String,
    pub created_at: DateTime<Utc>,
    /// Null while the key is active.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<KeyInfo> for PublishableKeyView {
    fn from(info: KeyInfo) -> Self {
        Self {
            key_id: info.key_id,
            org_id: info.org_id,
            key_prefix: info.key_prefix,
            created_at: info.created_at,
            revoked_at: info.revoked_at,
        }
    }
}

/// A publishable key just created, with the key (public: it goes into the widget's page).
#[derive(Debug, Serialize, ToSchema)]
pub struct NewPublishableKey {
    #[serde(flatten)]
    pub info: PublishableKeyView,
    /// `lk_publishable_...`: what the widget sends in `Authorization: Bearer`.
    pub key: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PublishableKeyList {
    /// Newest first, revoked ones included.
    pub publishable_keys: Vec<PublishableKeyView>,
}

/// A signing secret as listed (never the secret itself).
#[derive(Debug, Serialize, ToSchema)]
pub struct SigningSecretView {
    pub secret_id: Uuid,
    pub org_id: String,
    /// The first 12 hex digits of SHA-256 of the secret: names it without revealing it.
    pub fingerprint: String,
    pub created_at: DateTime<Utc>,
    /// Null while the secret is active.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<SecretInfo> for SigningSecretView {
    fn from(info: SecretInfo) -> Self {
        Self {
            secret_id: info.secret_id,
            org_id: info.org_id,
            fingerprint: info.fingerprint,
            created_at: info.created_at,
            revoked_at: info.revoked_at,
        }
    }
}

/// A signing secret just created: the only answer that shows the secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewSigningSecret {
    #[serde(flatten)]
    pub info: SigningSecretView,
    /// `lks_...`: the HMAC key (its UTF-8 bytes) the merchant's backend signs customer tokens
    /// with (HS256). Keep it on the server.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SigningSecretList {
    /// Newest first, revoked ones included.
    pub signing_secrets: Vec<SigningSecretView>,
}

fn admin_span(org: &str, command: &'static str) -> tracing::Span {
    tracing::info_span!("command", org = %org, member = tracing::field::Empty, command)
}

/// Create a publishable key (shown in the answer; publishable keys are public).
#[utoipa::path(
    post,
    path = "/v1/orgs/{org}/publishable-keys",
    tag = "storefront identity",
    params(
        ("org" = String, Path, description = "Org id"),
        ("Idempotency-Key" = String, Header, description = "Unique per request; a retry with the same key gets the same key back"),
    ),
    request_body(content = Option<CreatePublishableKey>, description = "Empty, or `{}`"),
    responses(
        (status = 201, description = "Created", body = NewPublishableKey),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Not an admin key of this org", body = ErrorBody),
        (status = 409, description = "Idempotency-Key reused", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create_publishable_key(write: OrgWrite<CreatePublishableKey>) -> Result<Response, ApiError> {
    write
        .run(|app, ctx, CreatePublishableKey {}| async move {
            let created = common::keys::issue_key(app.pool(), &ctx.org_id, Role::Publishable).await?;
            let body = NewPublishableKey {
                info: created.info.into(),
                key: created.key,
            };
            let body = serde_json::to_value(body).map_err(anyhow::Error::from)?;
            Ok((StatusCode::CREATED, body))
        })
        .await
}

/// List the org's publishable keys.
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/publishable-keys",
    tag = "storefront identity",
    params(("org" = String, Path, description = "Org id")),
    responses(
        (status = 200, body = PublishableKeyList),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list_publishable_keys(
    State(app): State<AppState>,
    caller: Caller,
    OrgPath(org): OrgPath,
) -> Result<Response, ApiError> {
    caller.authorize(&org, Action::Administer)?;
    let keys = common::keys::list_keys(app.pool(), &org, Some(Role::Publishable))
        .instrument(admin_span(&org, "ListPublishableKeys"))
        .await?;
    let list = PublishableKeyList {
        publishable_keys: keys.into_iter().map(Into::into).collect(),
    };
    Ok(Json(list).into_response())
}

/// Revoke a publishable key: widgets carrying it are refused at once. Revoking a revoked key
/// answers it again.
#[utoipa::path(
    post,
    path = "/v1/orgs/{org}/publishable-keys/{key_id}/revoke",
    tag = "storefront identity",
    params(
        ("org" = String, Path, description = "Org id"),
        ("key_id" = Uuid, Path, description = "The key's id"),
        ("Idempotency-Key" = String, Header, description = "Unique per request"),
    ),
    responses(
        (status = 200, description = "Revoked", body = PublishableKeyView),
        (status = 400, description = "Malformed key id, or no Idempotency-Key", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, description = "No such publishable key in this org", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn revoke_publishable_key(
    State(app): State<AppState>,
    caller: Caller,
    request: RequestContext,
    Path((org, key_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    caller.authorize(&org, Action::Administer)?;
    request.idempotency_key()?;
    let key_id = parse_id("key_id", &key_id)?;
    let revoked = common::keys::revoke_in_org(app.pool(), &org, Role::Publishable, key_id)
        .instrument(admin_span(&org, "RevokePublishableKey"))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("org '{org}' has no publishable key {key_id}")))?;
    Ok(Json(PublishableKeyView::from(revoked)).into_response())
}

/// Create a signing secret for customer tokens. The answer is the only time the secret is shown;
/// a retry with the same `Idempotency-Key` answers the same secret. Several secrets may be
/// active at once, for rotation.
#[utoipa::path(
    post,
    path = "/v1/orgs/{org}/signing-secrets",
    tag = "storefront identity",
    params(
        ("org" = String, Path, description = "Org id"),
        ("Idempotency-Key" = String, Header, description = "Unique per request; a retry with the same key gets the same secret back"),
    ),
    request_body(content = Option<CreateSigningSecret>, description = "Empty, or `{}`"),
    responses(
        (status = 201, description = "Created", body = NewSigningSecret),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Not an admin key of this org", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create_signing_secret(write: OrgWrite<CreateSigningSecret>) -> Result<Response, ApiError> {
    let (app, ctx, (), CreateSigningSecret {}, span) = write.into_parts();
    let secret_id = Uuid::new_v5(
        &SECRET_NAMESPACE,
        format!("{}\n{}", ctx.org_id, ctx.idempotency_key).as_bytes(),
    );
    let created = signing_secrets::create(app.pool(), app.credentials().pepper(), &ctx.org_id, secret_id)
        .instrument(span)
        .await?;
    let body = NewSigningSecret {
        info: created.info.into(),
        secret: created.secret,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// List the org's signing secrets (never the secrets themselves).
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/signing-secrets",
    tag = "storefront identity",
    params(("org" = String, Path, description = "Org id")),
    responses(
        (status = 200, body = SigningSecretList),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list_signing_secrets(
    State(app): State<AppState>,
    caller: Caller,
    OrgPath(org): OrgPath,
) -> Result<Response, ApiError> {
    caller.authorize(&org, Action::Administer)?;
    let secrets = signing_secrets::list(app.pool(), &org)
        .instrument(admin_span(&org, "ListSigningSecrets"))
        .await?;
    let list = SigningSecretList {
        signing_secrets: secrets.into_iter().map(Into::into).collect(),
    };
    Ok(Json(list).into_response())
}

/// Revoke a signing secret: tokens it signed are refused at once. Revoking a revoked secret
/// answers it again.
#[utoipa::path(
    post,
    path = "/v1/orgs/{org}/signing-secrets/{secret_id}/revoke",
    tag = "storefront identity",
    params(
        ("org" = String, Path, description = "Org id"),
        ("secret_id" = Uuid, Path, description = "The secret's id"),
        ("Idempotency-Key" = String, Header, description = "Unique per request"),
    ),
    responses(
        (status = 200, description = "Revoked", body = SigningSecretView),
        (status = 400, description = "Malformed secret id, or no Idempotency-Key", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, description = "No such secret in this org", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn revoke_signing_secret(
    State(app): State<AppState>,
    caller: Caller,
    request: RequestContext,
    Path((org, secret_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    caller.authorize(&org, Action::Administer)?;
    request.idempotency_key()?;
    let secret_id = parse_id("secret_id", &secret_id)?;
    let revoked = signing_secrets::revoke(app.pool(), Some(&org), secret_id)
        .instrument(admin_span(&org, "RevokeSigningSecret"))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("org '{org}' has no signing secret {secret_id}")))?;
    Ok(Json(SigningSecretView::from(revoked)).into_response())
}

fn parse_id(field: &'static str, id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id)
        .map_err(|_| ApiError::invalid("invalid_id", field, format!("{field}: '{id}' is not a UUID")))
}
