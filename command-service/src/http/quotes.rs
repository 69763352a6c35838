//! Points quotes (SPEC §9, §11): how many points a purchase would earn a member now, and why —
//! the same decision as a purchase, on the member's current state and the budgets left, with
//! nothing recorded. A read: an `Idempotency-Key` is accepted but not required.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::member::earn::Breakdown;
use serde::Serialize;
use serde_json::Value;
use tracing::Instrument as _;
use utoipa::ToSchema;

use crate::http::auth::{Action, Caller};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{JsonBody, MemberPath};
use crate::http::member_requests::PurchaseRequest;
use crate::http::promotion_docs::BreakdownDoc;
use crate::http::state::AppState;

/// The answer to a quote.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuoteResponse {
    /// The points the purchase would earn (`breakdown.total`).
    pub points: i64,
    #[schema(value_type = BreakdownDoc)]
    pub breakdown: Breakdown,
}

async fn quote(
    app: AppState,
    caller: Caller,
    path: MemberPath,
    body: JsonBody,
) -> Result<Response, ApiError> {
    // As for every request: the caller first, then the path, then the body.
    caller.authorize(&path.org, Action::Operate)?;
    let span = tracing::info_span!(
        "command",
        org = %path.org,
        member = %path.label(),
        command = "QuotePurchase"
    );
    async move {
        let member = path.member?;
        let (request, _): (PurchaseRequest, Value) = body.parse()?;
        let breakdown = app
            .commands()
            .quote_purchase(&path.org, &member, request.into())
            .await?;
        Ok(Json(QuoteResponse {
            points: breakdown.total,
            breakdown,
        })
        .into_response())
    }
    .instrument(span)
    .await
}

/// The points a purchase would earn the member now, and why; records nothing.
#[utoipa::path(
    post,
    path = "/v1/orgs/{org}/members/{member_id}/purchase-quotes",
    tag = "members",
    params(
        ("org" = String, Path, description = "Org id"),
        ("member_id" = Uuid, Path, description = "Member id"),
    ),
    request_body = PurchaseRequest,
    responses(
        (status = 200, body = QuoteResponse),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, description = "No such member", body = ErrorBody),
        (status = 409, description = "The transaction was recorded with other details, or no program", body = ErrorBody),
        (status = 422, description = "Breaks a program rule", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn quote_purchase(
    State(app): State<AppState>,
    caller: Caller,
    path: MemberPath,
    body: JsonBody,
) -> Result<Response, ApiError> {
    quote(app, caller, path, body).await
}

/// The points a purchase would earn the member named by its external id now; records nothing.
#[utoipa::path(
    post,
    path = "/v1/orgs/{org}/members/by-external-id/{external_id}/purchase-quotes",
    tag = "members",
    params(
        ("org" = String, Path, description = "Org id"),
        ("external_id" = String, Path, description = "POS customer id or card number"),
    ),
    request_body = PurchaseRequest,
    responses(
        (status = 200, body = QuoteResponse),
        (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn quote_purchase_by_external_id(
    State(app): State<AppState>,
    caller: Caller,
    path: MemberPath,
    body: JsonBody,
) -> Result<Response, ApiError> {
    quote(app, caller, path, body).await
}
