//! The `projector` command line. Without a subcommand it runs the consumer.
//!
//! ```text
//! projector [run]                                  consume the stream, serve /healthz /readyz /metrics
//! projector audit                                  rebuild from the event store and compare; exit 1 on a difference
//! projector as-of --org O --member M --at T        balance and tier of a member at T (RFC 3339), as JSON
//! projector rfm-recompute [--org O] [--at T]       recompute RFM scores now (every org without --org)
//! projector retry-parked                           re-apply parked events after a fix
//! projector simulate --org O (--draft F | --in-force) --from T --to T [--json]
//!                                                  what-if replay of a draft program (SPEC §9)
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{audit, connect, rfm, run, simulate, Config, Projector, DEFAULT_LISTEN};

#[derive(Debug, clap::Parser)]
#[command(
    name = "projector",
    version,
    about = "Builds and audits the loyalty read models"
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Consume the event stream and keep the read models up to date (the default).
    Run,
    /// Rebuild every read model from the event store alone and compare it with the live one;
    /// prints every difference and exits with status 1 if there is any.
    Audit,
    /// A member's balance and tier at a time, from the events committed by then.
    AsOf {
        #[arg(long)]
        org: String,
        #[arg(long)]
        member: Uuid,
        /// RFC 3339 time, e.g. 2025-01-31T23:59:59Z.
        #[arg(long)]
        at: DateTime<Utc>,
    },
    /// Recompute RFM scores and segments now.
    RfmRecompute {
        /// Only this org (default: every org with purchases).
        #[arg(long)]
        org: Option<String>,
        /// "Now" of the recomputation (default: the current time).
        #[arg(long)]
        at: Option<DateTime<Utc>>,
    },
    /// Re-apply parked events (after a fix of the projector), in order per aggregate.
    RetryParked,
    /// Replay the org's history with a draft program in force over [from, to) and report what
    /// it would have awarded (SPEC §9); writes nothing but the report.
    Simulate {
        #[arg(long)]
        org: String,
        /// The draft program, as JSON (the body of `PUT /v1/orgs/{org}/program`).
        #[arg(long, required_unless_present = "in_force", conflicts_with = "in_force")]
        draft: Option<PathBuf>,
        /// Replay under the programs really in force (reproduces every awarded point).
        #[arg(long)]
        in_force: bool,
        /// RFC 3339; commands recorded from here are decided under the draft.
        #[arg(long)]
        from: DateTime<Utc>,
        /// RFC 3339, excluded (default: now).
        #[arg(long)]
        to: Option<DateTime<Utc>>,
        /// Print the report as JSON (SPEC §11) instead of a summary.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the command; the exit code is 1 when an audit finds differences.
pub async fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = cli.config;
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            let listener = config.listen.bind(DEFAULT_LISTEN).await?;
            run(config, listener, common::shutdown::signal()).await?;
        }
        Command::Audit => {
            let pool = connect(&config.db).await?;
            let report = audit::audit(&pool, &config.schema).await?;
            print!("{report}");
            if !report.is_clean() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::AsOf { org, member, at } => {
            let pool = connect(&config.db).await?;
            match audit::as_of(&pool, &org, member, at).await? {
                Some(account) => println!("{}", serde_json::to_string_pretty(&account)?),
                None => anyhow::bail!("member {member} of org {org} was not enrolled at {at}"),
            }
        }
        Command::RfmRecompute { org, at } => {
            let pool = connect(&config.db).await?;
            let at = at.unwrap_or_else(Utc::now);
            let summaries = match org {
                Some(org) => vec![rfm::recompute(&pool, &config.schema, &org, at).await?],
                None => rfm::recompute_all(&pool, &config.schema, at).await?,
            };
            for s in summaries {
                println!(
                    "{}: {} members scored as of {}, {} segment changes",
                    s.org_id, s.members, s.computed_at, s.transitions
                );
            }
        }
        Command::Simulate {
            org,
            draft,
            in_force: _,
            from,
            to,
            json,
        } => {
            let pool = connect(&config.db).await?;
            let draft = match draft {
                Some(path) => Some(simulate::read_draft(&pool, &org, &path).await?),
                None => None,
            };
            let stored = simulate::simulate(&pool, &org, draft, from, to.unwrap_or_else(Utc::now)).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stored)?);
            } else {
                print!("{}", simulate::summary(&stored));
            }
        }
        Command::RetryParked => {
            let pool = connect(&config.db).await?;
            let report = Projector::new(pool, config.schema.clone())?
                .retry_parked()
                .await?;
            println!(
                "{} events applied; {} aggregates unblocked; {} still parked",
                report.applied,
                report.unblocked.len(),
                report.still_parked.len()
            );
            for (t, id) in &report.still_parked {
                println!("still parked: {t} {id}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[test]
    fn subcommands_and_global_flags_parse() {
        let cli = Cli::try_parse_from([
            "projector",
            "as-of",
            "--org",
            "acme",
            "--member",
            "0b6f3c1e-8f4e-4a57-9d0e-2b1f7f3a9c11",
            "--at",
            "2025-01-31T23:59:59Z",
            "--consumer",
            "c2",
        ])
        .unwrap();
        assert_eq!(cli.config.consumer, "c2");
        match cli.command {
            Some(Command::AsOf { org, at, .. }) => {
                assert_eq!(org, "acme");
                assert_eq!(at.to_rfc3339(), "2025-01-31T23:59:59+00:00");
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["projector"]).unwrap().command.is_none());
        let error = Cli::try_parse_from(["projector", "as-of", "--org", "a", "--member", "x", "--at", "now"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("--member"), "{error}");
        assert!(Cli::try_parse_from(["projector", "--batch-size", "0"]).is_err());
    }
}
