//! Member endpoints: enrol, read, purchases, refunds, redemptions, adjustments.
//!
//! Every member path exists twice: `/members/{member_id}/...` and
//! `/members/by-external-id/{external_id}/...` (the POS customer id or card number).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tracing::Instrument as _;

use crate::http::auth::{Action, Caller};
use crate::http::command_request::{MemberWrite, OrgWrite};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::MemberPath;
pub use crate::http::member_requests::{
    AdjustmentRequest, EnrollRequest, PurchaseRequest, RedemptionRequest, RefundRequest,
};
pub use crate::http::member_view::MemberView;
use crate::http::state::AppState;
use crate::http::write::MemberWriteResponse;

/// Enrol a member.
#[utoipa::path(
    post,
    path = "/v1/orgs/{org}/members",
    tag = "members",
    params(
        ("org" = String, Path, description = "Org id"),
        ("Idempotency-Key" = String, Header, description = "Unique per request; a retry with the same key and body gets the original response"),
    ),
    request_body = EnrollRequest,
    responses(
        (status = 201, description = "Enrolled", body = MemberWriteResponse),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 403, description = "Key of another org, or of a role that may not enrol", body = ErrorBody),
        (status = 409, description = "Member or external_id exists, no program, or Idempotency-Key reused", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn enroll(write: OrgWrite<EnrollRequest>) -> Result<Response, ApiError> {
    write
        .run_member(StatusCode::CREATED, |app, ctx, (), request| async move {
            Ok(request.execute(app.commands(), &ctx).await?)
        })
        .await
}

async fn read_member(app: AppState, caller: Caller, path: MemberPath) -> Result<Response, ApiError> {
    caller.authorize(&path.org, Action::Operate)?;
    let span = tracing::info_span!("command", org = %path.org, member = %path.label(), command = "GetMember");
    async move {
        let member = path.member?;
        let view = app
            .commands()
            .member(&path.org, &member, MemberView::new)
            .await??;
        Ok(Json(view).into_response())
    }
    .instrument(span)
    .await
}

/// A member's current account.
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/members/{member_id}",
    tag = "members",
    params(("org" = String, Path, description = "Org id"), ("member_id" = Uuid, Path, description = "Member id")),
    responses(
        (status = 200, body = MemberView),
        (status = 400, description = "Malformed member id", body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, description = "No such member in this org", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get_member(
    State(app): State<AppState>,
    caller: Caller,
    path: MemberPath,
) -> Result<Response, ApiError> {
    read_member(app, caller, path).await
}

/// A member's current account, by external id.
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/members/by-external-id/{external_id}",
    tag = "members",
    params(("org" = String, Path, description = "Org id"), ("external_id" = String, Path, description = "POS customer id or card number")),
    responses(
        (status = 200, body = MemberView),
        (status = 403, body = ErrorBody),
        (status = 404, description = "No member with this external id in this org", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get_member_by_external_id(
    State(app): State<AppState>,
    caller: Caller,
    path: MemberPath,
) -> Result<Response, ApiError> {
    read_member(app, caller, path).await
}

macro_rules! member_command {
    (
        $(#[$doc:meta])*
        $name:ident, $by_external:ident, $path:literal, $external_path:literal, $request:ty
    ) => {
        $(#[$doc])*
        #[utoipa::path(
            post,
            path = $path,
            tag = "members",
            params(
                ("org" = String, Path, description = "Org id"),
                ("member_id" = Uuid, Path, description = "Member id"),
                ("Idempotency-Key" = String, Header, description = "Unique per request; a retry with the same key and body gets the original response"),
            ),
            request_body = $request,
            responses(
                (status = 200, body = MemberWriteResponse),
                (status = 400, description = "Malformed request", body = ErrorBody),
                (status = 401, body = ErrorBody),
                (status = 403, body = ErrorBody),
                (status = 404, description = "No such member", body = ErrorBody),
                (status = 409, description = "Conflicts with what exists, or Idempotency-Key reused", body = ErrorBody),
                (status = 422, description = "Breaks a program rule", body = ErrorBody),
            ),
            security(("api_key" = []))
        )]
        pub async fn $name(write: MemberWrite<$request>) -> Result<Response, ApiError> {
            write.execute().await
        }

        $(#[$doc])*
        #[doc = ""]
        #[doc = "The member named by its external id."]
        #[utoipa::path(
            post,
            path = $external_path,
            tag = "members",
            params(
                ("org" = String, Path, description = "Org id"),
                ("external_id" = String, Path, description = "POS customer id or card number"),
                ("Idempotency-Key" = String, Header, description = "Unique per request"),
            ),
            request_body = $request,
            responses(
                (status = 200, body = MemberWriteResponse),
                (status = 400, body = ErrorBody),
                (status = 403, body = ErrorBody),
                (status = 404, body = ErrorBody),
                (status = 409, body = ErrorBody),
                (status = 422, body = ErrorBody),
            ),
            security(("api_key" = []))
        )]
        pub async fn $by_external(write: MemberWrite<$request>) -> Result<Response, ApiError> {
            $name(write).await
        }
    };
}

member_command!(
    /// Record a purchase: earns points at the member's tier multiplier, collects stamps.
    record_purchase, record_purchase_by_external_id, "/v1/orgs/{org}/members/{member_id}/purchases",
    "/v1/orgs/{org}/members/by-external-id/{external_id}/purchases",
    PurchaseRequest
);

member_command!(
    /// Refund (part of) a purchase: claws back its points in proportion.
    refund_purchase, refund_purchase_by_external_id, "/v1/orgs/{org}/members/{member_id}/refunds",
    "/v1/orgs/{org}/members/by-external-id/{external_id}/refunds",
    RefundRequest
);

member_command!(
    /// Redeem a reward of the catalogue. Also open to a storefront widget for its shopper: the
    /// org's publishable key in `Authorization` and the shopper's customer token in
    /// `X-Customer-Token` may redeem for the token's own member only (403 `not_your_member`
    /// otherwise, whether the named member exists or not).
    redeem_reward, redeem_reward_by_external_id, "/v1/orgs/{org}/members/{member_id}/redemptions",
    "/v1/orgs/{org}/members/by-external-id/{external_id}/redemptions",
    RedemptionRequest
);

member_command!(
    /// Adjust a member's points (admin only).
    adjust_points, adjust_points_by_external_id, "/v1/orgs/{org}/members/{member_id}/adjustments",
    "/v1/orgs/{org}/members/by-external-id/{external_id}/adjustments",
    AdjustmentRequest
);
