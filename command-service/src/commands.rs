//! The use cases of the command API, independent of HTTP: each gathers the facts the domain needs
//! (the program in force, the server clock, the reward's catalogue entry), runs the command
//! through the [`AggregateStore`], and returns what was appended.

use std::num::NonZeroUsize;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use cqrs_es::EventEnvelope;
use domain::ids::{member_aggregate_id, program_aggregate_id};
use domain::member::MAX_CLOCK_SKEW;
use domain::program::ProgramConfig;
use domain::{
    Member, MemberCommand, MemberError, MemberEvent, Program, ProgramCommand, ProgramError, ProgramSnapshot,
};
use futures::{StreamExt as _, TryStreamExt as _};
use sqlx::PgPool;
use uuid::Uuid;

use crate::store::{AggregateStore, Constraint, ExecuteError, Metadata, RetryPolicy};

/// Namespace of the member ids derived from `(org, idempotency key)` when an enrolment names
/// no member id, so that a retried enrolment names the same member (and cannot create two).
const ENROLMENT_NAMESPACE: Uuid = Uuid::from_u128(0x6c6f_7961_6c74_795f_656e_726f_6c6d_656e);

/// Members per page when a job walks an org.
const JOB_PAGE: i64 = 500;

/// Who asked for a command, recorded in every event's metadata.
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub org_id: String,
    pub idempotency_key: String,
    pub key_id: Uuid,
    pub request_id: String,
}

impl CommandContext {
    fn metadata(&self, command: &str) -> Metadata {
        Metadata::from([
            ("org_id".to_owned(), self.org_id.clone()),
            ("command".to_owned(), command.to_owned()),
            ("idempotency_key".to_owned(), self.idempotency_key.clone()),
            ("key_id".to_owned(), self.key_id.to_string()),
            ("request_id".to_owned(), self.request_id.clone()),
        ])
    }
}

/// How a request names a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberRef {
    Id(Uuid),
    ExternalId(String),
}

/// Why a command was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Member(#[from] MemberError),
    #[error(transparent)]
    Program(#[from] ProgramError),
    #[error("org '{0}' has no program yet: configure it with PUT /v1/orgs/{0}/program first")]
    ProgramNotConfigured(String),
    #[error("no member with this id in this org")]
    MemberNotFound,
    #[error("external_id '{0}' is already used by another member of this org")]
    ExternalIdTaken(String),
    #[error("transaction_id '{0}' was already credited to another member of this org")]
    TransactionClaimed(String),
    #[error("as_of: {0} is in the future")]
    AsOfInFuture(DateTime<Utc>),
    #[error("too many concurrent changes to this {0}; retry")]
    Contention(&'static str),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// A member command's result: the member and the events appended for this request.
#[derive(Debug)]
pub struct MemberOutcome {
    pub member_id: Uuid,
    pub events: Vec<EventEnvelope<Member>>,
    /// The balance right after `events` (the current balance when there are none).
    pub balance: i64,
}

/// The balance right after `events`, as recorded in them: what the original answer to the
/// request that appended them said.
fn balance_after(events: &[EventEnvelope<Member>]) -> Option<i64> {
    events.iter().rev().find_map(|event| match &event.payload {
        MemberEvent::PurchaseRecorded { balance_after, .. }
        | MemberEvent::PurchaseRefunded { balance_after, .. }
        | MemberEvent::RewardRedeemed { balance_after, .. }
        | MemberEvent::PointsAdjusted { balance_after, .. }
        | MemberEvent::PointsExpired { balance_after, .. } => Some(*balance_after),
        MemberEvent::MemberEnrolled { .. } => Some(0),
        _ => None,
    })
}

/// A program command's result.
#[derive(Debug)]
pub struct ProgramOutcome {
    pub events: Vec<EventEnvelope<Program>>,
    /// The program version in force after the command.
    pub program_version: u64,
}

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

/// Tunables of [`Commands`].
#[derive(Debug, Clone, Copy)]
pub struct CommandsConfig {
    pub cache_capacity: NonZeroUsize,
    pub retry: RetryPolicy,
    pub job_concurrency: usize,
}

/// The command side of the platform.
pub struct Commands {
    pool: PgPool,
    members: AggregateStore<Member>,
    programs: AggregateStore<Program>,
    job_concurrency: usize,
}

fn rejected<E>(error: ExecuteError<E>, aggregate: &'static str) -> CommandError
where
    E: std::error::Error + Into<CommandError>,
{
    match error {
        ExecuteError::Rejected(error) => error.into(),
        ExecuteError::Contention { .. } => CommandError::Contention(aggregate),
        ExecuteError::Store(error) => CommandError::Internal(error),
        ExecuteError::Constraint(constraint) => {
            CommandError::Internal(anyhow::anyhow!("unexpected store constraint {constraint:?}"))
        }
    }
}

impl Commands {
    pub fn new(pool: PgPool, config: CommandsConfig) -> Self {
        // Programs are one per org and small; a fraction of the member capacity is plenty.
        let program_capacity =
            NonZeroUsize::new((config.cache_capacity.get() / 10).max(16)).unwrap_or(NonZeroUsize::MIN);
        Self {
            members: AggregateStore::new(pool.clone(), config.cache_capacity, config.retry),
            programs: AggregateStore::new(pool.clone(), program_capacity, config.retry),
            pool,
            job_concurrency: config.job_concurrency.max(1),
        }
    }

    // ----- program -------------------------------------------------------------------------

    /// The org's program aggregate (default when never configured).
    pub async fn program(&self, org_id: &str) -> Result<Program, CommandError> {
        Ok(self
            .programs
            .load(&program_aggregate_id(org_id), |program, _| program.clone())
            .await?)
    }

    async fn program_snapshot(&self, org_id: &str) -> Result<ProgramSnapshot, CommandError> {
        self.programs
            .load(&program_aggregate_id(org_id), |program, _| program.snapshot())
            .await?
            .ok_or_else(|| CommandError::ProgramNotConfigured(org_id.to_owned()))
    }

    async fn execute_program(
        &self,
        ctx: &CommandContext,
        command: ProgramCommand,
        name: &str,
    ) -> Result<ProgramOutcome, CommandError> {
        let committed = self
            .programs
            .execute(
                &program_aggregate_id(&ctx.org_id),
                command,
                &ctx.metadata(name),
                |program| program.version,
            )
            .await
            .map_err(|error| rejected(error, "program"))?;
        record_outcome(name, committed.events.len());
        Ok(ProgramOutcome {
            events: committed.events,
            program_version: committed.summary,
        })
    }

    /// Replaces the org's program (a new version unless it is unchanged).
    pub async fn configure_program(
        &self,
        ctx: &CommandContext,
        config: ProgramConfig,
    ) -> Result<ProgramOutcome, CommandError> {
        let command = ProgramCommand::Configure {
            org_id: ctx.org_id.clone(),
            config,
            at: Utc::now(),
        };
        self.execute_program(ctx, command, "ConfigureProgram").await
    }

    /// Registers a store location of the org (idempotent for the same name).
    pub async fn register_location(
        &self,
        ctx: &CommandContext,
        location_id: String,
        name: String,
    ) -> Result<ProgramOutcome, CommandError> {
        let command = ProgramCommand::RegisterLocation {
            org_id: ctx.org_id.clone(),
            location_id,
            name,
            at: Utc::now(),
        };
        self.execute_program(ctx, command, "RegisterLocation").await
    }

    // ----- members -------------------------------------------------------------------------

    /// The member id `member` stands for in `org_id`.
    pub async fn resolve(&self, org_id: &str, member: &MemberRef) -> Result<Uuid, CommandError> {
        match member {
            MemberRef::Id(id) => Ok(*id),
            MemberRef::ExternalId(external_id) => self
                .member_by_external_id(org_id, external_id)
                .await?
                .ok_or(CommandError::MemberNotFound),
        }
    }

    async fn member_by_external_id(&self, org_id: &str, external_id: &str) -> anyhow::Result<Option<Uuid>> {
        sqlx::query_scalar("SELECT member_id FROM command_members WHERE org_id = $1 AND external_id = $2")
            .bind(org_id)
            .bind(external_id)
            .fetch_optional(&self.pool)
            .await
            .context("looking up a member by external_id")
    }

    /// `inspect(member id, member, last sequence)` on the member's current state;
    /// `MemberNotFound` unless enrolled.
    pub async fn member<R>(
        &self,
        org_id: &str,
        member: &MemberRef,
        inspect: impl FnOnce(Uuid, &Member, usize) -> R,
    ) -> Result<R, CommandError> {
        let member_id = self.resolve(org_id, member).await?;
        self.members
            .load(&member_aggregate_id(org_id, member_id), |state, sequence| {
                state.is_enrolled().then(|| inspect(member_id, state, sequence))
            })
            .await?
            .ok_or(CommandError::MemberNotFound)
    }

    /// The events of `member_id` appended under this request's idempotency key: what an
    /// earlier attempt of the same request did, if it got as far as the commit.
    async fn recorded_under_key(
        &self,
        ctx: &CommandContext,
        member_id: Uuid,
    ) -> anyhow::Result<Vec<EventEnvelope<Member>>> {
        let rows: Vec<(i64, serde_json::Value, serde_json::Value)> = sqlx::query_as(
            "SELECT sequence, payload, metadata FROM events \
             WHERE aggregate_type = 'member' AND aggregate_id = $1 \
               AND metadata ->> 'idempotency_key' = $2 \
             ORDER BY sequence",
        )
        .bind(member_aggregate_id(&ctx.org_id, member_id))
        .bind(&ctx.idempotency_key)
        .fetch_all(&self.pool)
        .await
        .context("looking up events by idempotency key")?;
        rows.into_iter()
            .map(|(sequence, payload, metadata)| {
                Ok(EventEnvelope {
                    aggregate_id: member_aggregate_id(&ctx.org_id, member_id),
                    sequence: usize::try_from(sequence).context("negative sequence")?,
                    payload: serde_json::from_value(payload).context("decoding a member event")?,
                    metadata: serde_json::from_value(metadata).context("decoding event metadata")?,
                })
            })
            .collect()
    }

    /// Runs a member command built from the program in force.
    async fn execute_member(
        &self,
        ctx: &CommandContext,
        member_id: Uuid,
        command: MemberCommand,
    ) -> Result<MemberOutcome, CommandError> {
        let name = command.name();
        let result = self
            .members
            .execute(
                &member_aggregate_id(&ctx.org_id, member_id),
                command,
                &ctx.metadata(name),
                |member| member.points.balance,
            )
            .await;
        let committed = match result {
            Ok(committed) => committed,
            Err(ExecuteError::Constraint(Constraint::TransactionClaimed)) => {
                record_outcome(name, 0);
                return Err(CommandError::TransactionClaimed(String::new()));
            }
            Err(ExecuteError::Constraint(Constraint::ExternalIdTaken)) => {
                record_outcome(name, 0);
                return Err(CommandError::ExternalIdTaken(String::new()));
            }
            Err(error) => {
                record_outcome(name, 0);
                return Err(rejected(error, "member"));
            }
        };
        record_outcome(name, committed.events.len());
        if !committed.events.is_empty() {
            return Ok(MemberOutcome {
                member_id,
                events: committed.events,
                balance: committed.summary,
            });
        }
        // A duplicate the aggregate ignored: if it is a retry of a request that was applied but
        // never answered, answer what that attempt would have answered.
        let events = self.recorded_under_key(ctx, member_id).await?;
        Ok(MemberOutcome {
            member_id,
            balance: balance_after(&events).unwrap_or(committed.summary),
            events,
        })
    }

    /// Enrols a member (`member_id` derived from the idempotency key when not given).
    pub async fn enroll(
        &self,
        ctx: &CommandContext,
        member_id: Option<Uuid>,
        external_id: Option<String>,
        display_name: Option<String>,
    ) -> Result<MemberOutcome, CommandError> {
        let member_id = member_id.unwrap_or_else(|| {
            Uuid::new_v5(
                &ENROLMENT_NAMESPACE,
                format!("{}\n{}", ctx.org_id, ctx.idempotency_key).as_bytes(),
            )
        });
        let program = self.program_snapshot(&ctx.org_id).await?;
        if let Some(external_id) = &external_id {
            // Checked early for a clear answer; the directory row is written by the trigger on
            // the events insert, atomically with MemberEnrolled, which also settles races.
            let owner = self.member_by_external_id(&ctx.org_id, external_id).await?;
            if owner.is_some_and(|owner| owner != member_id) {
                return Err(CommandError::ExternalIdTaken(external_id.clone()));
            }
        }
        let command = MemberCommand::Enroll {
            org_id: ctx.org_id.clone(),
            member_id,
            external_id: external_id.clone(),
            display_name: display_name.clone(),
            program,
            at: Utc::now(),
        };
        match self.execute_member(ctx, member_id, command).await {
            Err(CommandError::Member(MemberError::AlreadyEnrolled)) => {
                // A retry of this very enrolment (applied, but its response was lost) gets the
                // original answer; anything else is a conflict.
                let earlier = self.recorded_under_key(ctx, member_id).await?;
                let same = earlier.first().is_some_and(|first| match &first.payload {
                    MemberEvent::MemberEnrolled {
                        external_id: recorded_external,
                        display_name: recorded_name,
                        ..
                    } => {
                        *recorded_external == external_id
                            && *recorded_name == display_name.as_ref().map(|n| n.trim().to_owned())
                    }
                    _ => false,
                });
                if !same {
                    return Err(MemberError::AlreadyEnrolled.into());
                }
                let balance = self
                    .member(&ctx.org_id, &MemberRef::Id(member_id), |_, member, _| {
                        member.points.balance
                    })
                    .await?;
                Ok(MemberOutcome {
                    member_id,
                    balance: balance_after(&earlier).unwrap_or(balance),
                    events: earlier,
                })
            }
            Err(CommandError::ExternalIdTaken(_)) => {
                Err(CommandError::ExternalIdTaken(external_id.unwrap_or_default()))
            }
            other => other,
        }
    }

    /// Records a purchase (idempotent on `transaction_id`, which is unique per org).
    #[allow(clippy::too_many_arguments)]
    pub async fn record_purchase(
        &self,
        ctx: &CommandContext,
        member: &MemberRef,
        transaction_id: String,
        location_id: String,
        amount_minor: i64,
        currency: String,
        occurred_at: DateTime<Utc>,
    ) -> Result<MemberOutcome, CommandError> {
        let member_id = self.resolve(&ctx.org_id, member).await?;
        let program = self.program_snapshot(&ctx.org_id).await?;
        // A transaction id credited to another member is refused by the trigger on the events
        // insert (migration 0003), which writes the claim in the same transaction as the
        // PurchaseRecorded event: no state with a claim and no event or the reverse, no crash
        // window, and a race between two members is decided by the claim's primary key. No
        // look-up first: it would cost every purchase a round trip to answer a rare mistake
        // that the insert answers anyway (the refused append also discards the cached member).
        let command = MemberCommand::RecordPurchase {
            transaction_id: transaction_id.clone(),
            location_id,
            amount_minor,
            currency,
            occurred_at,
            program,
            recorded_at: Utc::now(),
        };
        match self.execute_member(ctx, member_id, command).await {
            Err(CommandError::TransactionClaimed(_)) => Err(CommandError::TransactionClaimed(transaction_id)),
            other => other,
        }
    }

    /// Refunds (part of) a purchase of the member.
    pub async fn refund_purchase(
        &self,
        ctx: &CommandContext,
        member: &MemberRef,
        refund_id: String,
        transaction_id: String,
        amount_minor: i64,
    ) -> Result<MemberOutcome, CommandError> {
        let member_id = self.resolve(&ctx.org_id, member).await?;
        let program = self.program_snapshot(&ctx.org_id).await?;
        let command = MemberCommand::RefundPurchase {
            refund_id,
            transaction_id,
            amount_minor,
            program,
            at: Utc::now(),
        };
        self.execute_member(ctx, member_id, command).await
    }

    /// Redeems a reward of the catalogue in force.
    pub async fn redeem_reward(
        &self,
        ctx: &CommandContext,
        member: &MemberRef,
        redemption_id: String,
        reward_id: String,
    ) -> Result<MemberOutcome, CommandError> {
        let member_id = self.resolve(&ctx.org_id, member).await?;
        let program = self.program_snapshot(&ctx.org_id).await?;
        let command = MemberCommand::RedeemReward {
            redemption_id,
            reward: program.config.reward(&reward_id).cloned(),
            reward_id,
            at: Utc::now(),
        };
        self.execute_member(ctx, member_id, command).await
    }

    /// Adjusts a member's points (admin).
    pub async fn adjust_points(
        &self,
        ctx: &CommandContext,
        member: &MemberRef,
        adjustment_id: String,
        delta: i64,
        reason: String,
    ) -> Result<MemberOutcome, CommandError> {
        let member_id = self.resolve(&ctx.org_id, member).await?;
        let program = self.program_snapshot(&ctx.org_id).await?;
        let command = MemberCommand::AdjustPoints {
            adjustment_id,
            delta,
            reason,
            expiry_days: program.config.expiry_days,
            at: Utc::now(),
        };
        self.execute_member(ctx, member_id, command).await
    }

    // ----- jobs ----------------------------------------------------------------------------

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
                        Job::ExpirePoints => MemberCommand::ExpirePoints { as_of },
                        Job::ReevaluateTiers => MemberCommand::ReevaluateTier {
                            as_of,
                            program: program.clone(),
                        },
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

fn record_outcome(command: &str, appended: usize) {
    let outcome = if appended > 0 {
        "appended"
    } else {
        "unchanged_or_rejected"
    };
    metrics::counter!("command_commands_total", "command" => command.to_owned(), "outcome" => outcome)
        .increment(1);
    metrics::counter!("command_events_appended_total", "command" => command.to_owned())
        .increment(appended as u64);
}
