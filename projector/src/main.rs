use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init("projector");
    let config = projector::Config::parse();
    let listener = config.listen.bind(projector::DEFAULT_LISTEN).await?;
    projector::run(config, listener, common::shutdown::signal()).await
}
