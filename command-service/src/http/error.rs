//! The one error type of the HTTP boundary, and its JSON shape:
//! `{"error": {"code": "...", "message": "...", "field": "..." | null}}`.
//!
//! Client errors name the problem (and the field, when there is one). Server errors are logged
//! with their cause and answered with a generic message and the request id.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::{MemberError, ProgramError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::commands::CommandError;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `insufficient_points`.
    pub code: String,
    /// What is wrong, for a human.
    pub message: String,
    /// The request field the error is about, if any (`tiers[1].threshold_points`).
    pub field: Option<String>,
}

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or malformed Authorization header: expected `Bearer <key>`")]
    MissingCredentials,
    #[error("unknown or revoked API key")]
    InvalidCredentials,
    #[error("this key belongs to another org")]
    WrongOrg,
    /// A customer token that does not pass (SPEC §10); the message says why.
    #[error("{0}")]
    InvalidCustomerToken(common::customer_token::TokenError),
    /// A customer token naming a member that is not its own, or no member at all: one answer
    /// for both, so it tells nothing about which members exist.
    #[error("a customer token acts only for its own member")]
    NotYourMember,
    /// No such key or secret of this org.
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    /// A well-formed request that breaks a rule of its field (the §9 settings of a program, a
    /// promotion body): 422.
    #[error("{message}")]
    Unprocessable {
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("Idempotency-Key header {0}")]
    IdempotencyKey(&'static str),
    #[error("this Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still being processed; retry shortly")]
    RequestInProgress,
    #[error("no route for this path")]
    RouteNotFound,
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    #[error("the request took too long; a write still completes, and a retry with its Idempotency-Key gets its answer")]
    Timeout,
    #[error(transparent)]
    Command(#[from] CommandError),
    /// More requests in flight than this process takes (SPEC §7: shed, not queued).
    #[error("the service is at capacity; retry after the time in Retry-After (a write with the same Idempotency-Key)")]
    Overloaded,
    /// The API key made more requests than its rate allows.
    #[error("this API key is over its request rate; retry after the time in Retry-After")]
    RateLimited { retry_after_secs: u64 },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        ApiError::Internal(error)
    }
}

impl From<MemberError> for ApiError {
    fn from(error: MemberError) -> Self {
        ApiError::Command(error.into())
    }
}

impl From<ProgramError> for ApiError {
    fn from(error: ProgramError) -> Self {
        ApiError::Command(error.into())
    }
}

impl ApiError {
    /// A 400 about `field`.
    pub fn invalid(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// The same error answered 422 when it is a 400 about a field `rule` picks (a well-formed
    /// body that breaks the rules of that field).
    pub fn unprocessable_when(self, rule: impl Fn(&str) -> bool) -> Self {
        match self {
            ApiError::BadRequest {
                code,
                message,
                field: Some(field),
            } if rule(&field) => ApiError::Unprocessable {
                code,
                message,
                field: Some(field),
            },
            other => other,
        }
    }

    pub fn status(&self) -> StatusCode {
        use CommandError as C;
        match self {
            ApiError::MissingCredentials
            | ApiError::InvalidCredentials
            | ApiError::InvalidCustomerToken(_) => StatusCode::UNAUTHORIZED,
            ApiError::WrongOrg | ApiError::Forbidden(_) | ApiError::NotYourMember => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest { .. } | ApiError::IdempotencyKey(_) => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::IdempotencyKeyReused | ApiError::RequestInProgress => StatusCode::CONFLICT,
            ApiError::RouteNotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Timeout | ApiError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Command(error) => match error {
                C::Member(error) => member_status(error),
                C::Program(error) => program_status(error),
                C::ProgramNotConfigured(_) => StatusCode::CONFLICT,
                C::MemberNotFound => StatusCode::NOT_FOUND,
                C::ExternalIdTaken(_) | C::TransactionClaimed(_) => StatusCode::CONFLICT,
                C::AsOfInFuture(_) => StatusCode::UNPROCESSABLE_ENTITY,
                C::Contention(_) | C::BudgetContention => StatusCode::SERVICE_UNAVAILABLE,
                // Answered from the key's record by the write path; this is its fallback.
                C::KeyTaken => StatusCode::CONFLICT,
                C::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    pub fn code(&self) -> &'static str {
        use CommandError as C;
        match self {
            ApiError::MissingCredentials => "missing_credentials",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::WrongOrg => "wrong_org",
            ApiError::InvalidCustomerToken(_) => "invalid_customer_token",
            ApiError::NotYourMember => "not_your_member",
            ApiError::NotFound(_) => "not_found",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::BadRequest { code, .. } | ApiError::Unprocessable { code, .. } => code,
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::IdempotencyKey(_) => "invalid_idempotency_key",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::RequestInProgress => "request_in_progress",
            ApiError::RouteNotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Timeout => "timeout",
            ApiError::Overloaded => "overloaded",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Internal(_) => "internal",
            ApiError::Command(error) => match error {
                C::Member(error) => error.code(),
                C::Program(error) => error.code(),
                C::ProgramNotConfigured(_) => "program_not_configured",
                C::MemberNotFound => "member_not_found",
                C::ExternalIdTaken(_) => "external_id_taken",
                C::TransactionClaimed(_) => "transaction_claimed",
                C::AsOfInFuture(_) => "as_of_in_future",
                C::Contention(_) => "contention",
                C::BudgetContention => "budget_contention",
                C::KeyTaken => "request_in_progress",
                C::Internal(_) => "internal",
            },
        }
    }

    pub fn field(&self) -> Option<String> {
        use CommandError as C;
        match self {
            ApiError::BadRequest { field, .. } | ApiError::Unprocessable { field, .. } => field.clone(),
            ApiError::IdempotencyKey(_) | ApiError::IdempotencyKeyReused | ApiError::RequestInProgress => {
                Some("Idempotency-Key".to_owned())
            }
            ApiError::MissingCredentials | ApiError::InvalidCredentials => Some("Authorization".to_owned()),
            ApiError::WrongOrg => Some("org".to_owned()),
            ApiError::InvalidCustomerToken(_) => Some("X-Customer-Token".to_owned()),
            ApiError::NotYourMember => Some("member_id".to_owned()),
            ApiError::Command(error) => match error {
                C::Member(error) => Some(error.field().to_owned()),
                C::Program(error) => error.field(),
                C::MemberNotFound => Some("member_id".to_owned()),
                C::ExternalIdTaken(_) => Some("external_id".to_owned()),
                C::TransactionClaimed(_) => Some("transaction_id".to_owned()),
                C::AsOfInFuture(_) => Some("as_of".to_owned()),
                C::KeyTaken => Some("Idempotency-Key".to_owned()),
                C::ProgramNotConfigured(_) | C::Contention(_) | C::BudgetContention | C::Internal(_) => None,
            },
            _ => None,
        }
    }

    fn is_internal(&self) -> bool {
        matches!(
            self,
            ApiError::Internal(_) | ApiError::Command(CommandError::Internal(_))
        )
    }
}

fn member_status(error: &MemberError) -> StatusCode {
    use MemberError::*;
    match error {
        NotEnrolled => StatusCode::NOT_FOUND,
        _ if error.is_conflict() => StatusCode::CONFLICT,
        InvalidOrgId(_)
        | InvalidId { .. }
        | InvalidDisplayName(_)
        | InvalidLocationId(_)
        | InvalidAmount { .. }
        | UnknownCurrency(_)
        | ReasonRequired
        | InvalidDelta => StatusCode::BAD_REQUEST,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

fn program_status(error: &ProgramError) -> StatusCode {
    match error {
        ProgramError::LocationAlreadyRegistered(_)
        | ProgramError::PromotionExists(_)
        | ProgramError::NotConfigured => StatusCode::CONFLICT,
        ProgramError::PromotionNotFound(_) => StatusCode::NOT_FOUND,
        ProgramError::WrongOrg { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        ProgramError::InvalidConfig { field, .. } if is_promotion_setting(field) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        _ => StatusCode::BAD_REQUEST,
    }
}

/// Whether `field` of a program is one of its marketing settings (SPEC §9: `time_zone`,
/// `earn_cap`, `promotions`, `achievements`), whose broken rules are answered 422; the settings of §3 keep
/// their 400.
pub fn is_promotion_setting(field: &str) -> bool {
    ["time_zone", "earn_cap", "promotions", "achievements"]
        .iter()
        .any(|setting| {
            field
                .strip_prefix(setting)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
        })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = if self.is_internal()
            || status.is_server_error()
                && !matches!(
                    self,
                    ApiError::Timeout
                        | ApiError::Overloaded
                        | ApiError::Command(CommandError::Contention(_) | CommandError::BudgetContention)
                ) {
            // Logged with its cause here; the client only learns that it failed.
            tracing::error!(error = ?anyhow_chain(&self), "request failed");
            "internal error; the request id in the x-request-id header identifies it in the logs".to_owned()
        } else {
            self.to_string()
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message,
                field: self.field(),
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        match &self {
            ApiError::MissingCredentials | ApiError::InvalidCredentials => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::RequestInProgress
            | ApiError::Overloaded
            | ApiError::Command(
                CommandError::Contention(_) | CommandError::BudgetContention | CommandError::KeyTaken,
            ) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::RateLimited { retry_after_secs } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            _ => {}
        }
        response
    }
}

/// The error and its causes, one per line, for the log.
fn anyhow_chain(error: &ApiError) -> String {
    let mut out = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_errors_map_to_statuses_and_fields() {
        let cases: Vec<(ApiError, StatusCode, &str, Option<&str>)> = vec![
            (
                MemberError::NotEnrolled.into(),
                StatusCode::NOT_FOUND,
                "member_not_found",
                Some("member_id"),
            ),
            (
                MemberError::InsufficientPoints {
                    balance: 1,
                    required: 2,
                }
                .into(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "insufficient_points",
                Some("points"),
            ),
            (
                MemberError::InvalidAmount {
                    field: "amount_minor",
                }
                .into(),
                StatusCode::BAD_REQUEST,
                "invalid_amount",
                Some("amount_minor"),
            ),
            (
                MemberError::TransactionConflict("t".into()).into(),
                StatusCode::CONFLICT,
                "transaction_conflict",
                Some("transaction_id"),
            ),
            (
                ProgramError::LocationAlreadyRegistered("x".into()).into(),
                StatusCode::CONFLICT,
                "location_exists",
                Some("location_id"),
            ),
            (
                ApiError::Command(CommandError::BudgetContention),
                StatusCode::SERVICE_UNAVAILABLE,
                "budget_contention",
                None,
            ),
            (
                ProgramError::InvalidConfig {
                    field: "promotions[0].effect.multiplier.multiplier_bps".into(),
                    message: "too high".into(),
                }
                .into(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_program",
                Some("promotions[0].effect.multiplier.multiplier_bps"),
            ),
            (
                ProgramError::InvalidConfig {
                    field: "earn_rate".into(),
                    message: "must be positive".into(),
                }
                .into(),
                StatusCode::BAD_REQUEST,
                "invalid_program",
                Some("earn_rate"),
            ),
            (
                ApiError::Command(CommandError::ProgramNotConfigured("acme".into())),
                StatusCode::CONFLICT,
                "program_not_configured",
                None,
            ),
        ];
        for (error, status, code, field) in cases {
            assert_eq!(error.status(), status, "{error}");
            assert_eq!(error.code(), code, "{error}");
            assert_eq!(error.field().as_deref(), field, "{error}");
        }
    }

    #[test]
    fn the_marketing_settings_are_told_apart() {
        for field in ["time_zone", "earn_cap.points", "promotions", "promotions[3].name"] {
            assert!(is_promotion_setting(field), "{field}");
        }
        for field in ["earn_rate", "tiers[0].name", "time_zones", "promotions_x"] {
            assert!(!is_promotion_setting(field), "{field}");
        }
    }

    #[test]
    fn budget_contention_asks_to_retry_later() {
        let response = ApiError::Command(CommandError::BudgetContention).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn internal_errors_are_not_leaked() {
        let error = ApiError::Internal(anyhow::anyhow!("password=hunter2 connection refused"));
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = futures::executor::block_on(axum::body::to_bytes(response.into_body(), 10_000)).unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("\"code\":\"internal\""), "{text}");
    }
}
