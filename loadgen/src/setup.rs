//! Creates what a run needs on the target platform: orgs with a program and locations, an API
//! key of every role per org (through `common::keys`, the library behind
//! `command-service keys create`), and enrolled members.
//!
//! Every run uses fresh org ids (`<prefix>-<run id>-<n>`), so runs never see each other's data
//! and a rerun against the same database needs no cleanup.

use anyhow::{bail, Context as _};
use common::keys::Role;
use futures::{stream, StreamExt as _, TryStreamExt as _};
use rand::distr::{Alphanumeric, SampleString as _};
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::api::{require_loopback, Api};

/// Currency of every generated program.
pub const CURRENCY: &str = "EUR";

/// One org set up for a run.
#[derive(Debug, Clone)]
pub struct Org {
    pub id: String,
    pub pos_key: String,
    pub admin_key: String,
    pub storefront_key: String,
    pub analyst_key: String,
    pub locations: Vec<String>,
    /// `(reward_id, points_cost)`, cheapest first.
    pub rewards: Vec<(String, i64)>,
}

/// The program every generated org runs: default tier ladder, a coffee stamp card, three
/// rewards of increasing cost.
pub fn program_body() -> Value {
    json!({
        "currency": CURRENCY,
        "earn_rate": 1,
        "stamp_cards": [{
            "card_id": "coffee-card",
            "name": "Coffee card",
            "stamps_required": 8,
            "reward_id": "free-coffee",
            "min_amount_minor": 300
        }],
        "rewards": [
            {"reward_id": "free-coffee", "name": "Free coffee", "points_cost": 40},
            {"reward_id": "tote-bag", "name": "Tote bag", "points_cost": 250},
            {"reward_id": "gift-card-10", "name": "10 EUR gift card", "points_cost": 1000}
        ],
        "expiry_days": 365
    })
}

fn rewards_of(program: &Value) -> Vec<(String, i64)> {
    let mut rewards: Vec<(String, i64)> = program["rewards"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| Some((r["reward_id"].as_str()?.to_owned(), r["points_cost"].as_i64()?)))
        .collect();
    rewards.sort_by_key(|(_, cost)| *cost);
    rewards
}

/// A short random id for this run's org names.
pub fn run_id() -> String {
    Alphanumeric
        .sample_string(&mut rand::rng(), 6)
        .to_ascii_lowercase()
}

/// Opens a small pool on the (loopback) platform database: API keys, read-model checks.
pub async fn connect_platform_db(database_url: &str) -> anyhow::Result<PgPool> {
    require_loopback("--database-url", database_url)?;
    let mut args = common::config::DbArgs::new(database_url);
    args.database_max_connections = 2;
    common::config::connect_db(&args).await
}

async fn expect_success(what: &str, reply: crate::api::Reply) -> anyhow::Result<Value> {
    if !reply.is_success() {
        bail!("{what} failed with {}: {}", reply.status, reply.body);
    }
    Ok(reply.body)
}

/// Creates `count` orgs named `<prefix>-<n>`, each with keys of every role, the program of
/// [`program_body`] and `locations` locations.
pub async fn create_orgs(
    api: &Api,
    keys_db: &PgPool,
    prefix: &str,
    count: usize,
    locations: usize,
) -> anyhow::Result<Vec<Org>> {
    let mut orgs = Vec::with_capacity(count);
    for n in 1..=count {
        let id = format!("{prefix}-{n}");
        common::keys::validate_org_id(&id)?;
        let key = |role| common::keys::create_key(keys_db, &id, role);
        let org = Org {
            pos_key: key(Role::Pos).await?,
            admin_key: key(Role::Admin).await?,
            storefront_key: key(Role::Storefront).await?,
            analyst_key: key(Role::Analyst).await?,
            locations: (1..=locations).map(|l| format!("store-{l}")).collect(),
            rewards: rewards_of(&program_body()),
            id,
        };
        let program = program_body();
        let reply = api
            .send(
                Method::PUT,
                &format!("/v1/orgs/{}/program", org.id),
                &org.admin_key,
                Some(&Uuid::new_v4().to_string()),
                Some(&program),
            )
            .await
            .with_context(|| format!("setting the program of {}", org.id))?;
        expect_success(&format!("PUT /v1/orgs/{}/program", org.id), reply).await?;
        for location in &org.locations {
            let body = json!({"location_id": location, "name": format!("Store {location}")});
            let reply = api
                .post(
                    &format!("/v1/orgs/{}/locations", org.id),
                    &org.admin_key,
                    &Uuid::new_v4().to_string(),
                    &body,
                )
                .await
                .with_context(|| format!("registering location {location} of {}", org.id))?;
            expect_success(&format!("POST /v1/orgs/{}/locations", org.id), reply).await?;
        }
        orgs.push(org);
    }
    Ok(orgs)
}

/// The enrolment body of member number `n` (a card number as external id, a display name).
pub fn enrol_body(member_id: Uuid, n: u64) -> Value {
    json!({
        "member_id": member_id,
        "external_id": format!("card-{:012}", n),
        "display_name": format!("Member {n}"),
    })
}

/// Enrols `count` members in `org` (numbers `first..first+count`), `parallel` at a time.
/// Returns their ids.
pub async fn enrol_members(
    api: &Api,
    org: &Org,
    first: u64,
    count: u64,
    parallel: usize,
) -> anyhow::Result<Vec<Uuid>> {
    stream::iter(first..first + count)
        .map(|n| async move {
            let member_id = Uuid::new_v4();
            let reply = api
                .post(
                    &format!("/v1/orgs/{}/members", org.id),
                    &org.pos_key,
                    &Uuid::new_v4().to_string(),
                    &enrol_body(member_id, n),
                )
                .await
                .with_context(|| format!("enrolling member {n} of {}", org.id))?;
            let body = expect_success(&format!("enrolling member {n} of {}", org.id), reply).await?;
            let returned = body["member_id"]
                .as_str()
                .and_then(|id| id.parse::<Uuid>().ok())
                .with_context(|| format!("enrolment answered without a member_id: {body}"))?;
            anyhow::ensure!(
                returned == member_id,
                "enrolment answered member_id {returned}, asked for {member_id}"
            );
            Ok::<_, anyhow::Error>(member_id)
        })
        .buffer_unordered(parallel.max(1))
        .try_collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_lists_rewards_cheapest_first() {
        let rewards = rewards_of(&program_body());
        assert_eq!(rewards.len(), 3);
        assert!(rewards.windows(2).all(|w| w[0].1 <= w[1].1));
        assert_eq!(rewards[0], ("free-coffee".to_owned(), 40));
    }

    #[test]
    fn generated_org_ids_are_valid_slugs() {
        let id = format!("lg-{}-12", run_id());
        assert_eq!(common::keys::validate_org_id(&id), Ok(()));
    }
}
