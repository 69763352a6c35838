//! `loadgen`: POS load generator and benchmark driver (see the library docs).

use clap::Parser as _;
use loadgen::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
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
}
