//! `projector`: see the library's [`projector::cli`].

use std::process::ExitCode;

use clap::Parser as _;

#[tokio::main]
async fn main() -> ExitCode {
    common::telemetry::init("projector");
    match projector::cli::execute(projector::cli::Cli::parse()).await {
        Ok(code) => code,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "projector failed");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
