//! `projector`: see the library's `cli` module.

use std::process::ExitCode;

use clap::Parser as _;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    common::telemetry::init("projector");
    match projector::cli::execute(projector::cli::Cli::parse()).await {
        Ok(code) => code,
        Err(error) => common::exit_code(Err(error)),
    }
}
