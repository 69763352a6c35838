//! Configuring an org's program and registering its locations.

use chrono::Utc;
use cqrs_es::EventEnvelope;
use domain::ids::program_aggregate_id;
use domain::program::{Configuration, NewLocation, ProgramConfig};
use domain::{Program, ProgramCommand, ProgramSnapshot};

use super::outcome::{record_outcome, rejected};
use super::{CommandContext, CommandError, Commands, ProgramOutcome};

impl Commands {
    /// The org's program aggregate (default when never configured).
    pub async fn program(&self, org_id: &str) -> Result<Program, CommandError> {
        Ok(self
            .programs
            .load(&program_aggregate_id(org_id), |program, _| program.clone())
            .await?)
    }

    /// The program in force, the fact every member command is decided with.
    pub(super) async fn program_snapshot(&self, org_id: &str) -> Result<ProgramSnapshot, CommandError> {
        self.programs
            .load(&program_aggregate_id(org_id), |program, _| program.snapshot())
            .await?
            .ok_or_else(|| CommandError::ProgramNotConfigured(org_id.to_owned()))
    }

    async fn execute_program(
        &self,
        ctx: &CommandContext,
        command: ProgramCommand,
    ) -> Result<ProgramOutcome, CommandError> {
        let (events, program_version) = self
            .execute_program_with(ctx, command, |program| program.version)
            .await?;
        Ok(ProgramOutcome {
            events,
            program_version,
        })
    }

    /// Runs a program command; returns its events and `summarize(program after the command)`.
    pub(super) async fn execute_program_with<R>(
        &self,
        ctx: &CommandContext,
        command: ProgramCommand,
        summarize: impl Fn(&Program) -> R,
    ) -> Result<(Vec<EventEnvelope<Program>>, R), CommandError> {
        let name = command.name();
        let committed = self
            .programs
            .execute(
                &program_aggregate_id(&ctx.org_id),
                command,
                &ctx.metadata(name),
                summarize,
                |_, _| Ok(None),
            )
            .await
            .map_err(|error| rejected(error, "program"))?;
        record_outcome(name, committed.events.len());
        Ok((committed.events, committed.summary))
    }

    /// Replaces the org's program (a new version unless it is unchanged).
    pub async fn configure_program(
        &self,
        ctx: &CommandContext,
        config: ProgramConfig,
    ) -> Result<ProgramOutcome, CommandError> {
        let command = ProgramCommand::Configure(Configuration {
            org_id: ctx.org_id.clone(),
            config,
            at: Utc::now(),
        });
        self.execute_program(ctx, command).await
    }

    /// Registers a store location of the org (idempotent for the same name).
    pub async fn register_location(
        &self,
        ctx: &CommandContext,
        location_id: String,
        name: String,
    ) -> Result<ProgramOutcome, CommandError> {
        let command = ProgramCommand::RegisterLocation(NewLocation {
            org_id: ctx.org_id.clone(),
            location_id,
            name,
            at: Utc::now(),
        });
        self.execute_program(ctx, command).await
    }
}
