//! `redeemReward`: a shopper redeems a reward for themselves from the storefront widget
//! (SPEC §10), through the command side's one write path.
//!
//! The query service writes nothing itself. It sends the redemption to the command API's
//! `POST /v1/orgs/{org}/members/{member}/redemptions` with the caller's own publishable key
//! and customer token, which the command API checks again (the token's member only); the
//! command side then decides, appends and answers exactly as for a POS terminal. The request's
//! `Idempotency-Key` is derived from the member and the `redemptionId`, so a retried mutation
//! is the same request: answered the same, never redeemed twice (and the domain refuses a
//! second redemption with the same id anyway). The balance then reaches subscribers through
//! the event stream like any other change.

use std::time::Duration;

use anyhow::Context as _;
use loyalty_client::{Client, MemberRef, Redemption};
use uuid::Uuid;

use crate::auth::Presented;
use crate::error::{QueryError, QueryResult};

/// Namespace of the `Idempotency-Key`s of widget redemptions.
const REDEMPTION_NAMESPACE: Uuid = Uuid::from_u128(0x7769_6467_6574_2d72_6564_6565_6d2d_7631);

/// How long a redemption may take at the command API.
const TIMEOUT: Duration = Duration::from_secs(10);

/// What a redemption did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redeemed {
    pub member_id: Uuid,
    /// Points the redemption took (0 when it had already been recorded).
    pub points_spent: i64,
    /// The balance after it.
    pub balance: i64,
}

/// Sends redemptions to the command API.
#[derive(Clone)]
pub struct Redeemer {
    client: Client,
}

impl Redeemer {
    /// A redeemer of the command API at `base_url`.
    pub fn new(base_url: &str) -> anyhow::Result<Self> {
        let http = loyalty_client::reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .context("building the command API client")?;
        Ok(Self {
            client: Client::with_http(http, base_url),
        })
    }

    /// Redeems `reward_id` for `member` of `org` as the customer who `presented` these
    /// credentials, once per `redemption_id`.
    pub async fn redeem(
        &self,
        presented: &Presented,
        org: &str,
        member: MemberRef<'_>,
        redemption_id: &str,
        reward_id: &str,
    ) -> QueryResult<Redeemed> {
        let member_name = match member {
            MemberRef::Id(id) => id.to_string(),
            MemberRef::External(external_id) => format!("external:{external_id}"),
        };
        let idempotency_key = Uuid::new_v5(
            &REDEMPTION_NAMESPACE,
            format!("{org}\n{member_name}\n{redemption_id}").as_bytes(),
        );
        let redemption = Redemption {
            redemption_id: redemption_id.to_owned(),
            reward_id: reward_id.to_owned(),
        };
        let answer = self
            .client
            .with_key(presented.key.as_str())
            .with_customer_token(presented.token.as_str())
            .redeem_reward(org, member, &idempotency_key.to_string(), &redemption)
            .await
            .map_err(refusal)?;
        let points_spent = answer
            .events
            .iter()
            .filter(|event| event.event_type == "RewardRedeemed")
            .filter_map(|event| event.payload["points_cost"].as_i64())
            .sum();
        Ok(Redeemed {
            member_id: answer.member_id,
            points_spent,
            balance: answer.balance,
        })
    }
}

/// The command API's refusal as the GraphQL error the customer sees: its code as `reason`, its
/// field named by the mutation's argument.
fn refusal(error: loyalty_client::Error) -> QueryError {
    match error {
        loyalty_client::Error::Api { status, body, .. } if status.is_client_error() => {
            let detail = body.error;
            let field = detail.field.map(|field| match field.as_str() {
                "redemption_id" | "Idempotency-Key" => "redemptionId".to_owned(),
                // What the reward costs is more than the balance: the reward is the argument.
                "reward_id" | "points" => "rewardId".to_owned(),
                other => other.to_owned(),
            });
            let message = match detail.code.as_str() {
                "idempotency_key_reused" => "redemptionId: already used for another reward".to_owned(),
                _ => detail.message,
            };
            QueryError::Refused {
                reason: detail.code,
                field,
                message,
            }
        }
        other => anyhow::Error::new(other)
            .context("redeeming through the command API")
            .into(),
    }
}
