//! System jobs over every member of an org (admin keys): `POST /v1/orgs/{org}/jobs/...`.

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::{Client, Error};

/// The body of a job request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct JobRequest {
    /// The time the job runs as of (not in the future).
    pub as_of: DateTime<Utc>,
}

/// What a job did.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct JobReport {
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

impl Client {
    /// `POST /v1/orgs/{org}/jobs/expire-points`.
    pub async fn expire_points(
        &self,
        org: &str,
        idempotency_key: &str,
        job: &JobRequest,
    ) -> Result<JobReport, Error> {
        self.write(
            Method::POST,
            &["v1", "orgs", org, "jobs", "expire-points"],
            idempotency_key,
            job,
        )
        .await
    }

    /// `POST /v1/orgs/{org}/jobs/reevaluate-tiers`.
    pub async fn reevaluate_tiers(
        &self,
        org: &str,
        idempotency_key: &str,
        job: &JobRequest,
    ) -> Result<JobReport, Error> {
        self.write(
            Method::POST,
            &["v1", "orgs", org, "jobs", "reevaluate-tiers"],
            idempotency_key,
            job,
        )
        .await
    }
}
