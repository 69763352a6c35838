//! Promotion administration (admin keys, SPEC §9): add, change and end one promotion of the
//! org's program without re-sending the whole program. Each answers the program as it is after
//! the change; each is idempotent under its `Idempotency-Key` like every write.
//!
//! A promotion body that breaks a rule is answered 422 naming the field of the body
//! (`effect.multiplier.multiplier_bps`), and changes nothing.

use std::collections::HashMap;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use domain::program::Promotion;
use domain::ProgramError;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::commands::{CommandError, PromotionOutcome};
use crate::http::auth::Action;
use crate::http::command_request::{CommandRequest, OrgWrite, Target, Write};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{org_param, path_params};
use crate::http::program::ProgramView;
use crate::http::promotion_docs::PromotionDoc;
use crate::http::state::AppState;

/// The body of `POST /v1/orgs/{org}/promotions`: one promotion.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct NewPromotion(pub Promotion);

/// The body of `PUT /v1/orgs/{org}/promotions/{promotion_id}`: the promotion as it is to be.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct ChangedPromotion(pub Promotion);

/// The body of `POST /v1/orgs/{org}/promotions/{promotion_id}/end` (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromotionEndRequest {
    /// When the promotion ends (excluded); default now. A promotion that already ends earlier
    /// keeps its end.
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
}

/// Every field of a promotion body is the promotion's: a bad one is a 422.
fn promotion_body_error(error: ApiError) -> ApiError {
    error.unprocessable_when(|_| true)
}

impl CommandRequest for NewPromotion {
    const ACTION: Action = Action::Administer;

    fn command() -> &'static str {
        "AddPromotion"
    }

    fn body_error(error: ApiError) -> ApiError {
        promotion_body_error(error)
    }
}

impl CommandRequest for ChangedPromotion {
    const ACTION: Action = Action::Administer;

    fn command() -> &'static str {
        "ChangePromotion"
    }

    fn body_error(error: ApiError) -> ApiError {
        promotion_body_error(error)
    }
}

impl CommandRequest for PromotionEndRequest {
    const ACTION: Action = Action::Administer;
    const BODY_OPTIONAL: bool = true;

    fn command() -> &'static str {
        "EndPromotion"
    }

    fn body_error(error: ApiError) -> ApiError {
        promotion_body_error(error)
    }
}

/// The `{org}` and `{promotion_id}` of the path.
pub struct PromotionPath {
    org: String,
    promotion_id: String,
}

impl FromRequestParts<AppState> for PromotionPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, ApiError> {
        let mut params: HashMap<String, String> = path_params(parts).await?;
        let org = org_param(&params)?;
        let promotion_id = params.remove("promotion_id").ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!("route without a {{promotion_id}} parameter"))
        })?;
        Ok(Self { org, promotion_id })
    }
}

impl Target for PromotionPath {
    type Resolved = String;

    fn org(&self) -> &str {
        &self.org
    }

    fn span_member(&self) -> Option<String> {
        None
    }

    fn resolve(self) -> Result<String, ApiError> {
        Ok(self.promotion_id)
    }
}

/// A write on one promotion named by the path.
pub type PromotionWrite<T> = Write<PromotionPath, T>;

/// The answer: the program after the change.
fn answer(org: &str, status: StatusCode, outcome: PromotionOutcome) -> Result<(StatusCode, Value), ApiError> {
    let view = ProgramView::new(org, outcome.program);
    Ok((status, serde_json::to_value(view).map_err(anyhow::Error::from)?))
}

/// A refusal of the program about a promotion, named as a field of the promotion body: the
/// program names `promotions[3].effect...`, the body of these endpoints is that promotion.
fn refused(error: CommandError) -> ApiError {
    match error {
        CommandError::Program(ProgramError::InvalidConfig { field, message }) => {
            let field = body_field(&field).to_owned();
            ApiError::Unprocessable {
                code: "invalid_program",
                message: format!("{field}: {message}"),
                field: Some(field),
            }
        }
        other => ApiError::Command(other),
    }
}

/// `promotions[3].effect.bonus.points` → `effect.bonus.points`; other fields unchanged.
fn body_field(field: &str) -> &str {
    field
        .strip_prefix("promotions[")
        .and_then(|rest| rest.split_once("]."))
        .filter(|(index, _)| index.chars().all(|c| c.is_ascii_digit()))
        .map_or(field, |(_, inner)| inner)
}

/// Add a promotion to the program (a new program version).
#[utoipa::path(
    post,
    path = "/v1/orgs/{org}/promotions",
    tag = "program",
    params(
        ("org" = String, Path, description = "Org id"),
        ("Idempotency-Key" = String, Header, description = "Unique per request"),
    ),
    request_body = PromotionDoc,
    responses(
        (status = 201, description = "The program with the promotion", body = ProgramView),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 403, description = "Not an admin key of this org", body = ErrorBody),
        (status = 409, description = "A promotion with this id exists, no program, or Idempotency-Key reused", body = ErrorBody),
        (status = 422, description = "A field of the promotion breaks a rule", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn add(write: OrgWrite<NewPromotion>) -> Result<Response, ApiError> {
    write
        .run(|app, ctx, NewPromotion(promotion)| async move {
            let outcome = app
                .commands()
                .add_promotion(&ctx, promotion)
                .await
                .map_err(refused)?;
            answer(&ctx.org_id, StatusCode::CREATED, outcome)
        })
        .await
}

/// Change a promotion: the body replaces it whole (a new program version).
#[utoipa::path(
    put,
    path = "/v1/orgs/{org}/promotions/{promotion_id}",
    tag = "program",
    params(
        ("org" = String, Path, description = "Org id"),
        ("promotion_id" = String, Path, description = "The promotion; the body's `promotion_id` must be the same"),
        ("Idempotency-Key" = String, Header, description = "Unique per request"),
    ),
    request_body = PromotionDoc,
    responses(
        (status = 200, description = "The program with the changed promotion", body = ProgramView),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 403, description = "Not an admin key of this org", body = ErrorBody),
        (status = 404, description = "No promotion with this id", body = ErrorBody),
        (status = 409, description = "No program, or Idempotency-Key reused", body = ErrorBody),
        (status = 422, description = "A field of the promotion breaks a rule", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn change(write: PromotionWrite<ChangedPromotion>) -> Result<Response, ApiError> {
    write
        .run_on(|app, ctx, promotion_id, ChangedPromotion(promotion)| async move {
            if promotion.promotion_id != promotion_id {
                return Err(ApiError::Unprocessable {
                    code: "promotion_id_mismatch",
                    message: format!(
                        "promotion_id: '{}' is not the promotion of the path, '{promotion_id}'",
                        promotion.promotion_id
                    ),
                    field: Some("promotion_id".to_owned()),
                });
            }
            let outcome = app
                .commands()
                .change_promotion(&ctx, promotion)
                .await
                .map_err(refused)?;
            answer(&ctx.org_id, StatusCode::OK, outcome)
        })
        .await
}

/// End a promotion now, or at `ends_at` (a new program version unless it already ends by then).
#[utoipa::path(
    post,
    path = "/v1/orgs/{org}/promotions/{promotion_id}/end",
    tag = "program",
    params(
        ("org" = String, Path, description = "Org id"),
        ("promotion_id" = String, Path, description = "The promotion"),
        ("Idempotency-Key" = String, Header, description = "Unique per request"),
    ),
    request_body(content = Option<PromotionEndRequest>, description = "Optional; without it the promotion ends now"),
    responses(
        (status = 200, description = "The program with the promotion ended", body = ProgramView),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 403, description = "Not an admin key of this org", body = ErrorBody),
        (status = 404, description = "No promotion with this id", body = ErrorBody),
        (status = 409, description = "No program, or Idempotency-Key reused", body = ErrorBody),
        (status = 422, description = "A field of the body breaks a rule", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn end(write: PromotionWrite<PromotionEndRequest>) -> Result<Response, ApiError> {
    write
        .run_on(|app, ctx, promotion_id, request| async move {
            let outcome = app
                .commands()
                .end_promotion(&ctx, promotion_id, request.ends_at)
                .await
                .map_err(refused)?;
            answer(&ctx.org_id, StatusCode::OK, outcome)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_fields_become_body_fields() {
        assert_eq!(
            body_field("promotions[3].effect.bonus.points"),
            "effect.bonus.points"
        );
        assert_eq!(body_field("promotions[12].name"), "name");
        assert_eq!(body_field("promotions"), "promotions");
        assert_eq!(body_field("earn_cap.points"), "earn_cap.points");
        assert_eq!(body_field("promotions[x].name"), "promotions[x].name");
    }

    #[test]
    fn refusals_of_a_promotion_are_422_on_the_body_field() {
        let error = refused(CommandError::Program(ProgramError::InvalidConfig {
            field: "promotions[0].conditions.location_ids[1]".into(),
            message: "'store-9' is not a location registered for this org".into(),
        }));
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error.field().as_deref(), Some("conditions.location_ids[1]"));
        assert_eq!(error.code(), "invalid_program");
    }
}
