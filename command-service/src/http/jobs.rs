//! System jobs (admin keys): expire points and re-evaluate tiers of every member of an org as of
//! a given time. Both are idempotent for the same `as_of`.

use std::marker::PhantomData;

use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::commands::Job;
use crate::http::auth::Action;
use crate::http::command_request::{CommandRequest, OrgWrite};
use crate::http::error::{ApiError, ErrorBody};

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

/// The body of a job request to one job: `JobRequest` as is (one documented schema), with the
/// job's name and span.
#[derive(Deserialize)]
#[serde(transparent, bound = "")]
pub struct JobBody<J: JobKind>(JobRequest, #[serde(skip)] PhantomData<J>);

/// Which job a [`JobBody`] is for.
pub trait JobKind: Send + 'static {
    const JOB: Job;
}

pub struct ExpirePoints;
pub struct ReevaluateTiers;

impl JobKind for ExpirePoints {
    const JOB: Job = Job::ExpirePoints;
}

impl JobKind for ReevaluateTiers {
    const JOB: Job = Job::ReevaluateTiers;
}

impl<J: JobKind> CommandRequest for JobBody<J> {
    const ACTION: Action = Action::Administer;

    fn command() -> &'static str {
        J::JOB.name()
    }

    fn span_member(&self) -> Option<String> {
        Some("*".to_owned())
    }
}

async fn run<J: JobKind>(write: OrgWrite<JobBody<J>>) -> Result<Response, ApiError> {
    let job = J::JOB;
    write
        .run(move |app, ctx, JobBody(request, _)| async move {
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
        })
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
pub async fn expire_points(write: OrgWrite<JobBody<ExpirePoints>>) -> Result<Response, ApiError> {
    run(write).await
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
pub async fn reevaluate_tiers(write: OrgWrite<JobBody<ReevaluateTiers>>) -> Result<Response, ApiError> {
    run(write).await
}
