use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init("command-service");
    command_service::Cli::parse().execute().await
}
