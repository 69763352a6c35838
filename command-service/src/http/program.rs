//! Program administration (admin keys): configure the program, register locations, read both.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::{Program, ProgramConfig};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::Instrument as _;
use utoipa::ToSchema;

use crate::commands::{CommandContext, CommandError, Commands, ProgramOutcome};
use crate::http::auth::{Action, Caller};
use crate::http::command_request::{CommandRequest, OrgWrite};
use crate::http::error::{is_promotion_setting, ApiError, ErrorBody};
use crate::http::extract::OrgPath;
use crate::http::promotion_docs::{AchievementDoc, EarnCapDoc, PromotionDoc};
use crate::http::state::AppState;
use crate::http::write::EventView;

/// The schema of `domain::ProgramConfig` for the OpenAPI document (the domain crate stays free
/// of HTTP concerns). A unit test keeps the two in step.
#[derive(Debug, ToSchema)]
#[schema(as = ProgramConfig)]
#[allow(dead_code)]
pub struct ProgramConfigDoc {
    /// ISO-4217 code; purchases in any other currency are refused.
    currency: String,
    /// Whole points per whole currency unit (default 1).
    earn_rate: Option<i64>,
    /// Ordered tier ladder; the first starts at 0 (default Bronze/Silver/Gold/Platinum).
    tiers: Option<Vec<TierDoc>>,
    stamp_cards: Option<Vec<StampCardDoc>>,
    rewards: Option<Vec<RewardDoc>>,
    /// Days after which earned points expire (default 365; `null` = never).
    expiry_days: Option<u32>,
    /// Rolling window of tier qualification, in days (default 365).
    qualification_window_days: Option<u32>,
    /// Days below threshold before a re-evaluation may downgrade (default 30).
    downgrade_grace_days: Option<u32>,
    /// IANA time zone of schedules, limit and cap periods (default `UTC`).
    time_zone: Option<String>,
    /// The most points a member earns from purchases per local period (default none).
    earn_cap: Option<EarnCapDoc>,
    /// The org's promotions (default none).
    promotions: Option<Vec<PromotionDoc>>,
    /// Badges and missions (default none).
    achievements: Option<Vec<AchievementDoc>>,
}

#[derive(Debug, ToSchema)]
#[schema(as = Tier)]
#[allow(dead_code)]
pub struct TierDoc {
    name: String,
    threshold_points: i64,
    /// 10000 = 1.0×.
    multiplier_bps: u32,
}

#[derive(Debug, ToSchema)]
#[schema(as = StampCard)]
#[allow(dead_code)]
pub struct StampCardDoc {
    card_id: String,
    name: String,
    stamps_required: u32,
    reward_id: String,
    /// Smallest purchase that earns a stamp (default 0).
    min_amount_minor: Option<i64>,
}

#[derive(Debug, ToSchema)]
#[schema(as = Reward)]
#[allow(dead_code)]
pub struct RewardDoc {
    reward_id: String,
    name: String,
    points_cost: i64,
    /// Default true.
    active: Option<bool>,
}

/// `POST /v1/orgs/{org}/locations`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LocationRequest {
    /// Slug `[a-z0-9][a-z0-9-]{0,62}`, unique per org.
    pub location_id: String,
    pub name: String,
}

impl LocationRequest {
    pub async fn execute(
        self,
        commands: &Commands,
        ctx: &CommandContext,
    ) -> Result<ProgramOutcome, CommandError> {
        commands.register_location(ctx, self.location_id, self.name).await
    }
}

impl CommandRequest for LocationRequest {
    const ACTION: Action = Action::Administer;

    fn command() -> &'static str {
        "RegisterLocation"
    }
}

impl CommandRequest for ProgramConfig {
    const ACTION: Action = Action::Administer;

    fn command() -> &'static str {
        "ConfigureProgram"
    }

    /// The marketing settings (§9) answer 422 like their validation does.
    fn body_error(error: ApiError) -> ApiError {
        error.unprocessable_when(is_promotion_setting)
    }
}

/// The answer to a program change.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProgramWriteResponse {
    pub org_id: String,
    /// The program version in force after the change (0: never configured).
    pub program_version: u64,
    /// The events appended (empty when nothing changed).
    pub events: Vec<EventView>,
}

impl ProgramWriteResponse {
    fn body(org: &str, outcome: &ProgramOutcome) -> Result<Value, ApiError> {
        let response = Self {
            org_id: org.to_owned(),
            program_version: outcome.program_version,
            events: EventView::list(&outcome.events)?,
        };
        Ok(serde_json::to_value(response).map_err(anyhow::Error::from)?)
    }
}

/// An org's program as configured.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProgramView {
    pub org_id: String,
    pub version: u64,
    /// `null` until configured.
    #[schema(value_type = Option<ProgramConfigDoc>)]
    pub config: Option<Arc<ProgramConfig>>,
    pub locations: Vec<LocationView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LocationView {
    pub location_id: String,
    pub name: String,
}

impl ProgramView {
    pub(crate) fn new(org: &str, program: Program) -> Self {
        Self {
            org_id: org.to_owned(),
            version: program.version,
            config: program.config,
            locations: program
                .locations
                .into_iter()
                .map(|(location_id, name)| LocationView { location_id, name })
                .collect(),
        }
    }
}

/// Configure (or change) the org's program; every change is a new version.
#[utoipa::path(
    put,
    path = "/v1/orgs/{org}/program",
    tag = "program",
    params(
        ("org" = String, Path, description = "Org id"),
        ("Idempotency-Key" = String, Header, description = "Unique per request"),
    ),
    request_body = ProgramConfigDoc,
    responses(
        (status = 200, body = ProgramWriteResponse),
        (status = 400, description = "Invalid program", body = ErrorBody),
        (status = 403, description = "Not an admin key of this org", body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 422, description = "Invalid time zone, earn cap or promotion", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn configure(write: OrgWrite<ProgramConfig>) -> Result<Response, ApiError> {
    write
        .run(|app, ctx, config| async move {
            let outcome = app.commands().configure_program(&ctx, config).await?;
            Ok((StatusCode::OK, ProgramWriteResponse::body(&ctx.org_id, &outcome)?))
        })
        .await
}

/// The org's program and locations.
#[utoipa::path(
    get,
    path = "/v1/orgs/{org}/program",
    tag = "program",
    params(("org" = String, Path, description = "Org id")),
    responses((status = 200, body = ProgramView), (status = 403, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn get(
    State(app): State<AppState>,
    caller: Caller,
    OrgPath(org): OrgPath,
) -> Result<Response, ApiError> {
    caller.authorize(&org, Action::Operate)?;
    let program = app
        .commands()
        .program(&org)
        .instrument(tracing::info_span!(
            "command",
            org = %org,
            member = tracing::field::Empty,
            command = "GetProgram"
        ))
        .await?;
    Ok(Json(ProgramView::new(&org, program)).into_response())
}

/// Register a store location (idempotent for the same name).
#[utoipa::path(
    post,
    path = "/v1/orgs/{org}/locations",
    tag = "program",
    params(
        ("org" = String, Path, description = "Org id"),
        ("Idempotency-Key" = String, Header, description = "Unique per request"),
    ),
    request_body = LocationRequest,
    responses(
        (status = 201, body = ProgramWriteResponse),
        (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 409, description = "The location exists with another name", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn register_location(write: OrgWrite<LocationRequest>) -> Result<Response, ApiError> {
    write
        .run(|app, ctx, request| async move {
            let outcome = request.execute(app.commands(), &ctx).await?;
            Ok((
                StatusCode::CREATED,
                ProgramWriteResponse::body(&ctx.org_id, &outcome)?,
            ))
        })
        .await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use domain::program::{RewardDef, StampCardDef};

    use super::*;

    fn schema_fields<T: utoipa::PartialSchema>() -> BTreeSet<String> {
        let schema = serde_json::to_value(T::schema()).unwrap();
        schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    fn json_fields(value: Value) -> BTreeSet<String> {
        value.as_object().unwrap().keys().cloned().collect()
    }

    #[test]
    fn the_documented_program_matches_the_domain_type() {
        let mut config = ProgramConfig::with_defaults("EUR");
        config.rewards.push(RewardDef {
            reward_id: "coffee".into(),
            name: "Coffee".into(),
            points_cost: 100,
            active: true,
        });
        config.stamp_cards.push(StampCardDef {
            card_id: "c".into(),
            name: "Card".into(),
            stamps_required: 5,
            reward_id: "coffee".into(),
            min_amount_minor: 0,
        });
        config.achievements.push(
            serde_json::from_value(serde_json::json!({
                "achievement_id": "a", "name": "A", "badge": "B",
                "criteria": {"purchases": {"count": 3}}, "window_days": 30, "reward_points": 10
            }))
            .unwrap(),
        );
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(schema_fields::<ProgramConfigDoc>(), json_fields(json.clone()));
        assert_eq!(
            schema_fields::<AchievementDoc>(),
            json_fields(json["achievements"][0].clone())
        );
        assert_eq!(schema_fields::<TierDoc>(), json_fields(json["tiers"][0].clone()));
        assert_eq!(
            schema_fields::<RewardDoc>(),
            json_fields(json["rewards"][0].clone())
        );
        assert_eq!(
            schema_fields::<StampCardDoc>(),
            json_fields(json["stamp_cards"][0].clone())
        );
    }
}
