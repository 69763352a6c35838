//! `loadgen`: POS load generator and benchmark driver (see the library docs).

use anyhow::Context as _;
use clap::Parser as _;
use loadgen::{Cli, Command};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // `run` shares the machine it measures: on one thread its 32 terminals cost the platform's
    // cores less (no work stealing or cross-thread wake-ups between them). `graphql` needs
    // every core to saturate the query service with `{ __typename }`, the rate its figure is
    // taken against.
    let runtime = match cli.command {
        Command::Run(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build()
    .context("starting the async runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Run(args) => {
                let report = loadgen::run_workload(args).await?;
                print!("{}", report.render());
                if report.consistency.as_ref().is_some_and(|c| !c.ok) {
                    anyhow::bail!("the consistency check failed");
                }
            }
            Command::History(args) => print!("{}", loadgen::run_history(args).await?.render()),
            Command::Graphql(args) => print!("{}", loadgen::run_graphql(args).await?.render()),
            Command::Seed(args) => print!("{}", loadgen::seed::run_seed(args).await?.render()),
        }
        Ok(())
    })
}
