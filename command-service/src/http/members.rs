//! Member endpoints: enrol, read, purchases, refunds, redemptions, adjustments.
//!
//! Every member path exists twice: `/members/{member_id}/...` and
//! `/members/by-external-id/{external_id}/...` (the POS customer id or card number).

use std::future::Future;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use domain::Member;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Action, Caller};
use crate::commands::{CommandContext, CommandError, MemberOutcome, MemberRef};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{JsonBody, MemberPath, OrgPath, RequestContext};
use crate::http::write::{idempotent, MemberWriteResponse};
use crate::http::AppState;

/// `POST /v1/orgs/{org}/members`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The member id to use; by default one is derived from the org and the `Idempotency-Key`.
    pub member_id: Option<Uuid>,
    /// The POS customer id or card number, unique per org.
    pub external_id: Option<String>,
    /// Shown on leaderboards; 1 to 64 characters, not an email address or phone number.
    pub display_name: Option<String>,
}

/// `POST .../purchases`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurchaseRequest {
    /// The POS transaction (receipt) id, unique per org: sending it again is the same purchase.
    pub transaction_id: String,
    pub location_id: String,
    /// Amount in minor units of `currency` (cents), greater than 0.
    pub amount_minor: i64,
    /// ISO-4217 code; must be the program's currency.
    pub currency: String,
    /// When the purchase happened (the receipt's time); at most 5 minutes ahead of the server.
    pub occurred_at: DateTime<Utc>,
}

/// `POST .../refunds`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    pub refund_id: String,
    /// The purchase refunded.
    pub transaction_id: String,
    /// Amount refunded, in minor units; all refunds of a purchase sum to at most its amount.
    pub amount_minor: i64,
}

/// `POST .../redemptions`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedemptionRequest {
    pub redemption_id: String,
    /// A reward of the program's catalogue.
    pub reward_id: String,
}

/// `POST .../adjustments` (admin)
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustmentRequest {
    pub adjustment_id: String,
    /// Points to add (positive) or remove (negative); not zero.
    pub delta: i64,
    /// Why, for the audit trail (required).
    pub reason: String,
}

/// A member's account as the command side sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    pub member_id: Uuid,
    pub org_id: String,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    pub enrolled_at: DateTime<Utc>,
    pub balance: i64,
    pub lifetime_earned: i64,
    pub redeemed: i64,
    pub expired: i64,
    pub clawed_back: i64,
    pub adjusted: i64,
    pub tier: TierView,
    pub next_expiry: Option<ExpiryView>,
    pub stamp_cards: Vec<StampCardView>,
    /// The sequence number of the member's last event.
    pub version: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TierView {
    pub name: String,
    pub multiplier_bps: u32,
    /// When a pending downgrade may happen, if the member is in a grace period.
    pub downgrade_after: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExpiryView {
    pub points: i64,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StampCardView {
    pub card_id: String,
    pub stamps: u32,
    pub completed: u32,
    pub last_stamp_day: Option<NaiveDate>,
}

impl MemberView {
    fn new(member_id: Uuid, member: &Member, sequence: usize) -> Result<Self, ApiError> {
        let enrolment = member.enrolment.as_ref().ok_or(CommandError::MemberNotFound)?;
        Ok(Self {
            member_id,
            org_id: enrolment.org_id.clone(),
            external_id: enrolment.external_id.clone(),
            display_name: enrolment.display_name.clone(),
            enrolled_at: enrolment.enrolled_at,
            balance: member.points.balance,
            lifetime_earned: member.points.lifetime_earned,
            redeemed: member.points.redeemed,
            expired: member.points.expired,
            clawed_back: member.points.clawed_back,
            adjusted: member.points.adjusted,
            tier: TierView {
                name: member.tier.name.clone(),
                multiplier_bps: member.tier.multiplier_bps,
                downgrade_after: member.tier.grace.as_ref().map(|grace| grace.downgrade_after),
            },
            next_expiry: member
                .next_expiry()
                .map(|(points, expires_at)| ExpiryView { points, expires_at }),
            stamp_cards: member
                .stamp_cards
                .iter()
                .map(|(card_id, progress)| StampCardView {
                    card_id: card_id.clone(),
                    stamps: progress.stamps,
                    completed: progress.completed,
                    last_stamp_day: progress.stamped_days.last().copied(),
                })
                .collect(),
            version: sequence as u64,
        })
    }
}

fn command_span(org: &str, member: &str, command: &'static str) -> tracing::Span {
    tracing::info_span!("command", org = %org, member = %member, command)
}

/// Authorize, parse, and run a member command under its idempotency key.
#[allow(clippy::too_many_arguments)]
async fn member_write<Req, F, Fut>(
    app: AppState,
    caller: Caller,
    path: MemberPath,
    ctx: RequestContext,
    body: JsonBody,
    command: &'static str,
    action: Action,
    run: F,
) -> Result<Response, ApiError>
where
    Req: DeserializeOwned + Send + 'static,
    F: FnOnce(AppState, CommandContext, MemberRef, Req) -> Fut + Send + 'static,
    Fut: Future<Output = Result<MemberOutcome, CommandError>> + Send + 'static,
{
    caller.authorize(&path.org, action)?;
    ctx.idempotency_key()?;
    let span = command_span(&path.org, &path.label(), command);
    let member = path.member?;
    let (request, raw) = body.parse::<Req>()?;
    idempotent(
        &app,
        &caller,
        &ctx,
        &path.org,
        &raw,
        span,
        move |app, ctx| async move {
            let outcome = run(app, ctx, member, request).await?;
            Ok((StatusCode::OK, MemberWriteResponse::from_outcome(&outcome)?))
        },
    )
    .await
}

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
pub async fn enroll(
    State(app): State<AppState>,
    caller: Caller,
    OrgPath(org): OrgPath,
    ctx: RequestContext,
    body: JsonBody,
) -> Result<Response, ApiError> {
    caller.authorize(&org, Action::Operate)?;
    ctx.idempotency_key()?;
    let (request, raw) = body.parse::<EnrollRequest>()?;
    let member_label = request
        .member_id
        .map_or_else(|| "new".to_owned(), |id| id.to_string());
    let span = command_span(&org, &member_label, "EnrollMember");
    idempotent(
        &app,
        &caller,
        &ctx,
        &org,
        &raw,
        span,
        move |app, ctx| async move {
            let outcome = app
                .commands()
                .enroll(&ctx, request.member_id, request.external_id, request.display_name)
                .await?;
            Ok((StatusCode::CREATED, MemberWriteResponse::from_outcome(&outcome)?))
        },
    )
    .await
}

async fn read_member(app: AppState, caller: Caller, path: MemberPath) -> Result<Response, ApiError> {
    caller.authorize(&path.org, Action::Operate)?;
    let span = command_span(&path.org, &path.label(), "GetMember");
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
        $name:ident, $by_external:ident, $path:literal, $external_path:literal, $request:ty, $command:literal, $action:expr,
        |$app:ident, $ctx:ident, $member:ident, $req:ident| $body:expr
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
        pub async fn $name(
            State(app): State<AppState>,
            caller: Caller,
            path: MemberPath,
            ctx: RequestContext,
            body: JsonBody,
        ) -> Result<Response, ApiError> {
            member_write(
                app,
                caller,
                path,
                ctx,
                body,
                $command,
                $action,
                |$app: AppState, $ctx: CommandContext, $member: MemberRef, $req: $request| async move { $body.await },
            )
            .await
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
        pub async fn $by_external(
            state: State<AppState>,
            caller: Caller,
            path: MemberPath,
            ctx: RequestContext,
            body: JsonBody,
        ) -> Result<Response, ApiError> {
            $name(state, caller, path, ctx, body).await
        }
    };
}

member_command!(
    /// Record a purchase: earns points at the member's tier multiplier, collects stamps.
    record_purchase, record_purchase_by_external_id, "/v1/orgs/{org}/members/{member_id}/purchases",
    "/v1/orgs/{org}/members/by-external-id/{external_id}/purchases",
    PurchaseRequest, "RecordPurchase", Action::Operate,
    |app, ctx, member, req| app.commands().record_purchase(
        &ctx, &member, req.transaction_id, req.location_id, req.amount_minor, req.currency, req.occurred_at,
    )
);

member_command!(
    /// Refund (part of) a purchase: claws back its points in proportion.
    refund_purchase, refund_purchase_by_external_id, "/v1/orgs/{org}/members/{member_id}/refunds",
    "/v1/orgs/{org}/members/by-external-id/{external_id}/refunds",
    RefundRequest, "RefundPurchase", Action::Operate,
    |app, ctx, member, req| app.commands().refund_purchase(
        &ctx, &member, req.refund_id, req.transaction_id, req.amount_minor,
    )
);

member_command!(
    /// Redeem a reward of the catalogue.
    redeem_reward, redeem_reward_by_external_id, "/v1/orgs/{org}/members/{member_id}/redemptions",
    "/v1/orgs/{org}/members/by-external-id/{external_id}/redemptions",
    RedemptionRequest, "RedeemReward", Action::Operate,
    |app, ctx, member, req| app.commands().redeem_reward(&ctx, &member, req.redemption_id, req.reward_id)
);

member_command!(
    /// Adjust a member's points (admin only).
    adjust_points, adjust_points_by_external_id, "/v1/orgs/{org}/members/{member_id}/adjustments",
    "/v1/orgs/{org}/members/by-external-id/{external_id}/adjustments",
    AdjustmentRequest, "AdjustPoints", Action::Administer,
    |app, ctx, member, req| app.commands().adjust_points(&ctx, &member, req.adjustment_id, req.delta, req.reason)
);
