//! `loyalty-dev`: the platform in one process (see the library docs).

use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init("loyalty-dev");
    let config = loyalty_dev::Config::parse();
    let listeners = loyalty_dev::Listeners::bind(&config).await?;
    tracing::info!(
        command = %config.command_listen,
        projector = %config.projector_listen,
        query = %config.query_listen,
        "starting the command service, projector and query service in one process"
    );
    loyalty_dev::run(config, listeners, common::shutdown::signal()).await
}
