//! System jobs (admin keys): expire points and re-evaluate tiers of every member of an org as of
//! a given time. Both are idempotent for the same `as_of`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Action, Caller};
use crate::commands::Job;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{JsonBody, OrgPath, RequestContext};
use crate::http::write::idempotent;
use crate::http::AppState;

/// The body of a job request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// The time the job runs as of (not in the future).
    pub as_of: DateTime<Utc>,
}

/// What a job did.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobResponse {
    /// `ExpirePoints` or `ReevaluateTier`.
    pub job: String,
    pub as_of: DateTime<Utc>,
    /// Members visited.
    pub members: u64,
    /// Members that got at least one event.
    pub members_changed: u64,
    /// Events appended.
    pub events: u64,
}

async fn run(
    app: AppState,
    caller: Caller,
    org: String,
    ctx: RequestContext,
    body: JsonBody,
    job: Job,
) -> Result<Response, ApiError> {
    caller.authorize(&org, Action::Administer)?;
    ctx.idempotency_key()?;
    let (request, raw) = body.parse::<JobRequest>()?;
    let span = tracing::info_span!("command", org = %org, member = "*", command = job.name());
    idempotent(
        &app,
        &caller,
        &ctx,
        &org,
        &raw,
        span,
        move |app, ctx| async move {
            let report = app.commands().run_job(&ctx, job, request.as_of).await?;
            tracing::info!(
                members = report.members,
                members_changed = report.members_changed,
                events = report.events,
                "job done"
            );
            let response = JobResponse {
                job: job.name().to_owned(),
                as_of: request.as_of,
                members: report.members,
                members_changed: report.members_changed,
                events: report.events,
            };
            Ok((
                StatusCode::OK,
                serde_json::to_value(response).map_err(anyhow::Error::from)?,
            ))
        },
    )
    .await
}

/// Expire the points of every member that expire at or before `as_of`.
#[utoipa::path(
    post,
    path = "/v1/orgs/{org}/jobs/expire-points",
    tag = "jobs",
    params(
        ("org" = String, Path, description = "Org id"),
        ("Idempotency-Key" = String, Header, description = "Unique per request"),
    ),
    request_body = JobRequest,
    responses(
        (status = 200, body = JobResponse),
        (status = 400, body = ErrorBody),
        (status = 403, description = "Not an admin key of this org", body = ErrorBody),
        (status = 409, description = "No program yet", body = ErrorBody),
        (status = 422, description = "as_of in the future", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn expire_points(
    State(app): State<AppState>,
    caller: Caller,
    OrgPath(org): OrgPath,
    ctx: RequestContext,
    body: JsonBody,
) -> Result<Response, ApiError> {
    run(app, caller, org, ctx, body, Job::ExpirePoints).await
}

/// Re-evaluate the tier of every member as of `as_of` (grace periods, downgrades).
#[utoipa::path(
    post,
    path = "/v1/orgs/{org}/jobs/reevaluate-tiers",
    tag = "jobs",
    params(
        ("org" = String, Path, description = "Org id"),
        ("Idempotency-Key" = String, Header, description = "Unique per request"),
    ),
    request_body = JobRequest,
    responses(
        (status = 200, body = JobResponse),
        (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn reevaluate_tiers(
    State(app): State<AppState>,
    caller: Caller,
    OrgPath(org): OrgPath,
    ctx: RequestContext,
    body: JsonBody,
) -> Result<Response, ApiError> {
    run(app, caller, org, ctx, body, Job::ReevaluateTiers).await
}
