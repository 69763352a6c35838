//! Where the platform is (command API, GraphQL, database) and how to report: the options
//! every subcommand shares.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::api::Api;
use crate::setup::{self, Org, OrgShape};

/// Where the platform is and how to report.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// Base URL of the command service (loopback only).
    #[arg(long, env = "LOADGEN_COMMAND_URL", default_value = "http://127.0.0.1:8080")]
    pub command_url: String,
    /// URL of the GraphQL endpoint of the query service (loopback only).
    #[arg(
        long,
        env = "LOADGEN_GRAPHQL_URL",
        default_value = "http://127.0.0.1:8082/graphql"
    )]
    pub graphql_url: String,
    /// The platform's database, where the API keys of the generated orgs are created
    /// (loopback only).
    #[arg(long, env = "DATABASE_URL", default_value = common::config::DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// Generated orgs are named `<prefix>-<random run id>-<n>`.
    #[arg(long, default_value = "lg")]
    pub org_prefix: String,
    /// Per-request timeout, seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=120))]
    pub request_timeout: u64,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

impl Target {
    pub(crate) fn api(&self) -> anyhow::Result<Api> {
        Api::new(
            &self.command_url,
            &self.graphql_url,
            Duration::from_secs(self.request_timeout),
        )
    }

    pub(crate) fn progress(&self, len: u64) -> ProgressBar {
        let target = if self.no_progress {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(Some(len), target);
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {percent:>3}% {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar
    }

    pub(crate) fn write_json(&self, report: &impl Serialize) -> anyhow::Result<()> {
        if let Some(path) = &self.json {
            let text = serde_json::to_string_pretty(report)?;
            std::fs::write(path, text + "\n")
                .with_context(|| format!("writing the JSON report to {}", path.display()))?;
        }
        Ok(())
    }

    pub(crate) async fn orgs(&self, api: &Api, count: usize, shape: OrgShape) -> anyhow::Result<Vec<Org>> {
        let keys_db = setup::connect_platform_db(&self.database_url).await?;
        let prefix = format!("{}-{}", self.org_prefix, setup::run_id());
        let orgs = setup::create_orgs(api, &keys_db, &prefix, count, shape).await;
        keys_db.close().await;
        orgs
    }
}
