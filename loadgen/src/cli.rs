//! The command line: `loadgen run | history | graphql | seed`.

use clap::{Parser, Subcommand};

use crate::graphql::GraphqlArgs;
use crate::history::HistoryArgs;
use crate::run::RunArgs;
use crate::seed::SeedArgs;

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "POS load generator for the loyalty platform"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Simulated POS terminals sending a mix of commands; reports throughput, latency, errors,
    /// projection lag and a consistency check.
    Run(RunArgs),
    /// Command latency on a member with a long history compared with a new member.
    History(HistoryArgs),
    /// Throughput and latency of a GraphQL query.
    Graphql(GraphqlArgs),
    /// Fills the event store with a large valid log directly (domain-decided events appended
    /// in bulk), for the audit replay benchmark.
    Seed(SeedArgs),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_parses_and_bounds_its_arguments() {
        let cli = Cli::try_parse_from(["loadgen", "run", "--rate", "1000", "--mix", "purchase=1"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert_eq!(args.rate, Some(1000));
        assert_eq!(args.duration, 30);
        assert!(Cli::try_parse_from(["loadgen", "run", "--duration", "100000"]).is_err());
        assert!(Cli::try_parse_from(["loadgen", "run", "--rate", "10", "--concurrency", "4"]).is_err());
        assert!(Cli::try_parse_from(["loadgen", "run", "--mix", "dance=1"]).is_err());
        assert!(Cli::try_parse_from(["loadgen", "graphql", "--query", "typename"]).is_ok());
    }
}
