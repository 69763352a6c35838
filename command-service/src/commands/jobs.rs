//! The system jobs run over every member of an org: expiry and tier re-evaluation.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use domain::ids::member_aggregate_id;
use domain::member::{Expiry, TierReview, MAX_CLOCK_SKEW};
use domain::MemberCommand;
use futures::{StreamExt as _, TryStreamExt as _};
use uuid::Uuid;

use super::outcome::{record_outcome, rejected};
use super::{CommandContext, CommandError, Commands};

/// Members per page when a job walks an org.
const JOB_PAGE: i64 = 500;

/// A system job's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobReport {
    pub members: u64,
    pub members_changed: u64,
    pub events: u64,
}

/// The system jobs run over every member of an org.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    ExpirePoints,
    ReevaluateTiers,
}

impl Job {
    pub fn name(self) -> &'static str {
        match self {
            Job::ExpirePoints => "ExpirePoints",
            Job::ReevaluateTiers => "ReevaluateTier",
        }
    }
}

impl Commands {
    /// Runs `job` as of `as_of` over every enrolled member of the org. Idempotent for the same
    /// `as_of`; stops at the first member that fails (a rerun skips the members already done).
    pub async fn run_job(
        &self,
        ctx: &CommandContext,
        job: Job,
        as_of: DateTime<Utc>,
    ) -> Result<JobReport, CommandError> {
        if as_of > Utc::now() + MAX_CLOCK_SKEW {
            return Err(CommandError::AsOfInFuture(as_of));
        }
        let program = self.program_snapshot(&ctx.org_id).await?;
        let mut report = JobReport {
            members: 0,
            members_changed: 0,
            events: 0,
        };
        let mut after = Uuid::nil();
        loop {
            let page: Vec<Uuid> = sqlx::query_scalar(
                "SELECT member_id FROM command_members WHERE org_id = $1 AND member_id > $2 \
                 ORDER BY member_id LIMIT $3",
            )
            .bind(&ctx.org_id)
            .bind(after)
            .bind(JOB_PAGE)
            .fetch_all(&self.pool)
            .await
            .context("listing the members of an org")?;
            let Some(last) = page.last().copied() else {
                break;
            };
            let appended: Vec<usize> = futures::stream::iter(page)
                .map(|member_id| {
                    let command = match job {
                        Job::ExpirePoints => MemberCommand::ExpirePoints(Expiry { as_of }),
                        Job::ReevaluateTiers => MemberCommand::ReevaluateTier(TierReview {
                            as_of,
                            program: program.clone(),
                        }),
                    };
                    let metadata = ctx.metadata(job.name());
                    async move {
                        let committed = self
                            .members
                            .execute(
                                &member_aggregate_id(&ctx.org_id, member_id),
                                command,
                                &metadata,
                                |_| (),
                                |_, _| Ok(None),
                            )
                            .await
                            .map_err(|error| rejected(error, "member"))?;
                        record_outcome(job.name(), committed.events.len());
                        Ok::<_, CommandError>(committed.events.len())
                    }
                })
                .buffer_unordered(self.job_concurrency)
                .try_collect()
                .await?;
            for count in appended {
                report.members += 1;
                if count > 0 {
                    report.members_changed += 1;
                    report.events += count as u64;
                }
            }
            after = last;
        }
        Ok(report)
    }
}
