//! `command-service`: see [`command_service::cli`].

use std::process::ExitCode;

use clap::Parser as _;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    common::telemetry::init("command-service");
    common::exit_code(command_service::Cli::parse().execute().await)
}
