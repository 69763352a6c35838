//! Creates what a run needs on the target platform: orgs with a program and locations, an API
//! key of every role per org (through `common::keys`, the library behind
//! `command-service keys create`), enrolled members and their purchases.
//!
//! Every run uses fresh org ids (`<prefix>-<run id>-<n>`), so runs never see each other's data
//! and a rerun against the same database needs no cleanup.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use backon::{ConstantBuilder, Retryable as _};
use chrono::{SubsecRound as _, Utc};
use common::keys::Role;
use futures::{stream, StreamExt as _, TryStreamExt as _};
use loyalty_client::{Enrolment, Location, MemberRef, MemberWrite, Program, Purchase, Reward, StampCard};
use rand::distr::{Alphanumeric, SampleString as _};
use sqlx::PgPool;
use uuid::Uuid;

use crate::api::{require_loopback, Api};

/// Currency of every generated program.
pub const CURRENCY: &str = "EUR";

/// How long set-up keeps sending a request the platform sheds (503 `overloaded`, 429
/// `rate_limited`) before it gives up.
const SHED_PATIENCE: Duration = Duration::from_secs(120);

/// Sends a set-up request until the platform takes it, waiting what each refusal's
/// `Retry-After` asks (1 s when it says nothing): set-up must not fail because the platform
/// protects itself. Measured requests are never retried this way; they count as shed.
pub async fn patiently<T, Fut>(send: impl FnMut() -> Fut) -> Result<T, loyalty_client::Error>
where
    Fut: Future<Output = Result<T, loyalty_client::Error>>,
{
    let pause = Duration::from_secs(1);
    send.retry(
        ConstantBuilder::default()
            .with_delay(pause)
            .with_max_times((SHED_PATIENCE.as_secs() / pause.as_secs()) as usize),
    )
    .when(loyalty_client::Error::is_shed)
    .adjust(|error, delay| error.retry_after().or(delay))
    .await
}

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
pub fn program() -> Program {
    let reward = |reward_id: &str, name: &str, points_cost| Reward {
        reward_id: reward_id.to_owned(),
        name: name.to_owned(),
        points_cost,
        active: None,
    };
    Program {
        earn_rate: Some(1),
        stamp_cards: vec![StampCard {
            card_id: "coffee-card".to_owned(),
            name: "Coffee card".to_owned(),
            stamps_required: 8,
            reward_id: "free-coffee".to_owned(),
            min_amount_minor: Some(300),
        }],
        rewards: vec![
            reward("free-coffee", "Free coffee", 40),
            reward("tote-bag", "Tote bag", 250),
            reward("gift-card-10", "10 EUR gift card", 1000),
        ],
        expiry_days: Some(Some(365)),
        ..Program::new(CURRENCY)
    }
}

fn rewards_of(program: &Program) -> Vec<(String, i64)> {
    let mut rewards: Vec<(String, i64)> = program
        .rewards
        .iter()
        .map(|r| (r.reward_id.clone(), r.points_cost))
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

/// What each generated org is given besides its keys and the program of [`program`].
#[derive(Debug, Clone, Copy, Default)]
pub struct OrgShape {
    pub locations: usize,
    /// Active promotions ([`crate::promotions::promotions`]), added once the locations exist.
    pub promotions: usize,
}

/// Creates `count` orgs named `<prefix>-<n>`, each with keys of every role, the program of
/// [`program`], its locations and its promotions.
pub async fn create_orgs(
    api: &Api,
    keys_db: &PgPool,
    prefix: &str,
    count: usize,
    shape: OrgShape,
) -> anyhow::Result<Vec<Org>> {
    let promotions =
        crate::promotions::promotions(shape.promotions, crate::promotions::starts_at(Utc::now()));
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
            locations: (1..=shape.locations).map(|l| format!("store-{l}")).collect(),
            rewards: rewards_of(&program()),
            id,
        };
        let admin = api.commands(&org.admin_key);
        let key = Uuid::new_v4().to_string();
        let program = program();
        patiently(|| admin.configure_program(&org.id, &key, &program))
            .await
            .with_context(|| format!("setting the program of {}", org.id))?;
        for location in &org.locations {
            let location = Location {
                location_id: location.clone(),
                name: format!("Store {location}"),
            };
            let key = Uuid::new_v4().to_string();
            patiently(|| admin.register_location(&org.id, &key, &location))
                .await
                .with_context(|| format!("registering location {} of {}", location.location_id, org.id))?;
        }
        for promotion in &promotions {
            let key = Uuid::new_v4().to_string();
            patiently(|| admin.add_promotion(&org.id, &key, promotion))
                .await
                .with_context(|| format!("adding promotion {} to {}", promotion.promotion_id, org.id))?;
        }
        orgs.push(org);
    }
    Ok(orgs)
}

/// The enrolment of member number `n` (a card number as external id, a display name).
pub fn enrolment(member_id: Uuid, n: u64) -> Enrolment {
    Enrolment {
        member_id: Some(member_id),
        external_id: Some(format!("card-{:012}", n)),
        display_name: Some(format!("Member {n}")),
    }
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
    let pos = &api.commands(&org.pos_key);
    stream::iter(first..first + count)
        .map(|n| async move {
            let member_id = Uuid::new_v4();
            let key = Uuid::new_v4().to_string();
            let enrolment = enrolment(member_id, n);
            let answer = patiently(|| pos.enroll(&org.id, &key, &enrolment))
                .await
                .with_context(|| format!("enrolling member {n} of {}", org.id))?;
            anyhow::ensure!(
                answer.member_id == member_id,
                "enrolment answered member_id {}, asked for {member_id}",
                answer.member_id
            );
            Ok::<_, anyhow::Error>(member_id)
        })
        .buffer_unordered(parallel.max(1))
        .try_collect()
        .await
}

/// A set-up purchase of `amount_minor` at the org's first location, now, sent until the
/// platform takes it.
pub async fn purchase(api: &Api, org: &Org, member: Uuid, amount_minor: i64) -> Result<MemberWrite, String> {
    let purchase = purchase_of(org, amount_minor);
    let key = Uuid::new_v4().to_string();
    let pos = api.commands(&org.pos_key);
    patiently(|| pos.record_purchase(&org.id, MemberRef::Id(member), &key, &purchase))
        .await
        .map_err(|e| e.kind())
}

/// A purchase of `amount_minor` at the org's first location, now, with a new transaction id.
pub fn purchase_of(org: &Org, amount_minor: i64) -> Purchase {
    Purchase {
        transaction_id: format!("tx-{}", Uuid::new_v4()),
        location_id: org.locations[0].clone(),
        amount_minor,
        currency: CURRENCY.to_owned(),
        occurred_at: Utc::now().trunc_subsecs(3),
        items: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_lists_rewards_cheapest_first() {
        let rewards = rewards_of(&program());
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
