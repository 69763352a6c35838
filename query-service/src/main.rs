//! `query-service`: GraphQL over the loyalty read models. See the library for the routes.

use clap::Parser as _;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init("query-service");
    let config = query_service::Config::parse();
    let listener = config.listen.bind(query_service::DEFAULT_LISTEN).await?;
    query_service::run(config, listener, common::shutdown::signal()).await
}
