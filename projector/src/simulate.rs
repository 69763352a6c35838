//! `projector simulate`: the what-if simulation of SPEC §9 from the command line, with a
//! progress bar on a terminal and the report as text or JSON. Same run as the command API's
//! (`common::simulation`); the report is stored too, so the analysts' dashboard lists it.

use std::path::Path;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use common::simulation::{self, Request, StoredReport};
use domain::simulation::Draft;
use domain::ProgramConfig;
use indicatif::{ProgressBar, ProgressStyle};
use sqlx::PgPool;

/// The draft program in `path`, checked like `PUT /v1/orgs/{org}/program` checks it.
pub async fn read_draft(pool: &PgPool, org: &str, path: &Path) -> anyhow::Result<ProgramConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut deserializer = serde_json::Deserializer::from_str(&text);
    let draft: ProgramConfig = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|error| anyhow::anyhow!("{}: {}: {}", path.display(), error.path(), error.inner()))?;
    let locations = sqlx::query_scalar(
        "SELECT payload -> 'LocationRegistered' ->> 'location_id' FROM events \
         WHERE aggregate_type = 'program' AND aggregate_id = $1 AND event_type = 'LocationRegistered'",
    )
    .bind(org)
    .fetch_all(pool)
    .await
    .context("reading the org's locations")?
    .into_iter()
    .collect();
    draft
        .validate(&locations)
        .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
    Ok(draft)
}

/// Runs and stores a simulation of `org` over `[from, to)`: under `draft`, or under the
/// programs really in force when `draft` is `None`.
pub async fn simulate(
    pool: &PgPool,
    org: &str,
    draft: Option<ProgramConfig>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<StoredReport> {
    anyhow::ensure!(from < to, "--to must be later than --from");
    let request = Request {
        org_id: org.to_owned(),
        draft: match &draft {
            Some(config) => Draft::Program(config.clone().into()),
            None => Draft::InForce,
        },
        from,
        to,
    };
    let total = simulation::count_events(pool, org, to).await?;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{spinner} {wide_bar} {pos}/{len} events ({per_sec}, {eta} left)")
            .context("the progress bar's template")?,
    );
    let shown = bar.clone();
    let (report, _) =
        simulation::run(pool, &request, |s| s, move |folded| shown.set_position(folded)).await?;
    bar.finish_and_clear();
    simulation::store(pool, &request, draft.as_ref(), &report).await
}

/// The report as a person reads it.
pub fn summary(stored: &StoredReport) -> String {
    let r = &stored.report;
    let mut out = format!(
        "simulation {} of org {} over [{}, {})\n\
         purchases replayed: {}  (points differ on {})\n\
         points awarded:     actual {}  draft {}  ({:+})\n\
         achievement rewards: actual {}  draft {}\n\
         liability at the end: {:+} under the draft\n\
         members whose tier would differ: {}\n",
        stored.simulation_id,
        stored.org_id,
        stored.from,
        stored.to,
        r.purchases,
        r.purchases_changed,
        r.actual_points,
        r.draft_points,
        r.draft_points - r.actual_points,
        r.actual_reward_points,
        r.draft_reward_points,
        r.liability_delta,
        r.tier_changes_total,
    );
    for p in &r.by_promotion {
        out += &format!(
            "  promotion {:<24} actual {:>10}  draft {:>10}\n",
            p.key.promotion_id, p.actual_points, p.draft_points
        );
    }
    for t in &r.by_tier {
        out += &format!(
            "  tier      {:<24} actual {:>10}  draft {:>10}\n",
            t.key.tier, t.actual_points, t.draft_points
        );
    }
    out
}
