//! What-if simulations (SPEC §9, §11): `POST /v1/orgs/{org}/program/simulations` replays the
//! org's real history with a draft program in force over `[from, to)` and answers the report,
//! which is also kept (GraphQL `simulations`). Nothing is written to the event store, so no
//! `Idempotency-Key` is needed: running it again runs it again.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use common::simulation::{self, Request, StoredReport};
use domain::simulation::Draft;
use domain::ProgramConfig;
use serde::Deserialize;
use tokio::sync::Semaphore;
use tracing::Instrument as _;
use utoipa::ToSchema;

use crate::http::auth::{Action, Caller};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{JsonBody, OrgPath};
use crate::http::program::ProgramConfigDoc;
use crate::http::state::AppState;

/// A simulation streams a whole org's log and holds one state per member: one at a time per
/// process, the others wait their turn.
static RUNNING: std::sync::LazyLock<Arc<Semaphore>> =
    std::sync::LazyLock::new(|| Arc::new(Semaphore::new(1)));

/// What to simulate.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulationRequest {
    /// The draft program, as `PUT /v1/orgs/{org}/program` takes it.
    #[schema(value_type = ProgramConfigDoc)]
    pub draft: ProgramConfig,
    /// Commands recorded from here on are decided under the draft.
    pub from: DateTime<Utc>,
    /// ... until here (excluded); at most now.
    pub to: DateTime<Utc>,
}

fn unprocessable(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::Unprocessable {
        code: "invalid_simulation",
        message: format!("{field}: {}", message.into()),
        field: Some(field.to_owned()),
    }
}

/// Replays the org's history under a draft program and reports what it would have changed.
#[utoipa::path(
    post,
    path = "/v1/orgs/{org}/program/simulations",
    tag = "program",
    params(("org" = String, Path, description = "Org id")),
    request_body = SimulationRequest,
    responses(
        (status = 200, description = "The report (SPEC §11)", body = serde_json::Value),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 409, description = "The org has no program yet", body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, description = "Invalid draft or window, naming the field", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn simulate(
    State(app): State<AppState>,
    caller: Caller,
    OrgPath(org): OrgPath,
    body: JsonBody,
) -> Result<Response, ApiError> {
    caller.authorize(&org, Action::Administer)?;
    let span = tracing::info_span!("command", org = %org, command = "SimulateProgram");
    async move {
        let (request, _): (SimulationRequest, _) = body.parse()?;
        if request.from >= request.to {
            return Err(unprocessable("to", "must be later than from"));
        }
        if request.to > Utc::now() {
            return Err(unprocessable(
                "to",
                "must not be in the future: a simulation replays history",
            ));
        }
        let program = app.commands().program(&org).await?;
        let Some(_) = program.config.as_ref() else {
            return Err(domain::ProgramError::NotConfigured.into());
        };
        let locations = program.locations.keys().cloned().collect();
        match request.draft.validate(&locations) {
            Ok(()) => {}
            Err(domain::ProgramError::InvalidConfig { field, message }) => {
                return Err(unprocessable(&format!("draft.{field}"), message))
            }
            Err(error) => return Err(unprocessable("draft.currency", error.to_string())),
        }
        let run = Request {
            org_id: org.clone(),
            draft: Draft::Program(request.draft.clone().into()),
            from: request.from,
            to: request.to,
        };
        let _turn = RUNNING
            .clone()
            .acquire_owned()
            .await
            .map_err(anyhow::Error::from)?;
        let started = std::time::Instant::now();
        let (report, _) = simulation::run(app.pool(), &run, |s| s, |_| ()).await?;
        metrics::histogram!("command_simulation_seconds").record(started.elapsed().as_secs_f64());
        let stored: StoredReport = simulation::store(app.pool(), &run, Some(&request.draft), &report).await?;
        tracing::info!(
            simulation_id = %stored.simulation_id,
            purchases = report.purchases,
            events = report.events_read,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "simulation done"
        );
        Ok(Json(stored).into_response())
    }
    .instrument(span)
    .await
}
