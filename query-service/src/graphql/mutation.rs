//! The mutation root: a customer redeems a reward for themselves (SPEC §10), through the
//! command API ([`crate::redeem`]).

use async_graphql::{Context, Object, SimpleObject, ID};
use loyalty_client::MemberRef;

use crate::auth::{Access, Caller, OrgGuard};
use crate::error::{QueryError, QueryResult};
use crate::redeem::Redeemer;

/// Longest `redemptionId` accepted (the command API's rule for business ids).
const MAX_ID_LEN: usize = 128;

/// The one write of the query API.
pub struct MutationRoot;

/// What a redemption did.
#[derive(SimpleObject)]
pub struct Redemption {
    pub member_id: ID,
    pub redemption_id: ID,
    pub reward_id: ID,
    /// Points the redemption took; 0 when this `redemptionId` had already been redeemed.
    pub points_spent: i64,
    /// The member's balance after it.
    pub balance: i64,
}

/// The one write of the query API: a storefront widget redeeming for its shopper.
#[Object(name = "Mutation")]
impl MutationRoot {
    /// Redeem a reward of the catalogue for the customer's own member: a customer token
    /// (`X-Customer-Token`) with the org's publishable key only. Idempotent on `redemptionId`
    /// (generate one per redeem click and resend it on retry): the same id is redeemed once and
    /// answered the same. Refused as `REFUSED` with the command side's `reason` (e.g.
    /// `insufficient_points`, `reward_inactive`, `unknown_reward`) and the argument it is about
    /// in `field`. The balance reaches `memberUpdated` subscribers as the event is recorded.
    #[graphql(guard = "OrgGuard::new(Access::Customer, &org_id)")]
    async fn redeem_reward(
        &self,
        ctx: &Context<'_>,
        org_id: ID,
        reward_id: ID,
        redemption_id: ID,
    ) -> QueryResult<Redemption> {
        let Caller::Customer {
            customer, presented, ..
        } = ctx.data_opt::<Caller>().unwrap_or(&Caller::Anonymous)
        else {
            return Err(QueryError::forbidden(
                "`redeemReward` requires a customer token with the org's publishable key",
            ));
        };
        if redemption_id.is_empty() || redemption_id.len() > MAX_ID_LEN {
            return Err(QueryError::bad_input(format!(
                "redemptionId: must be 1 to {MAX_ID_LEN} characters"
            )));
        }
        let redeemer = ctx.data_opt::<Redeemer>().ok_or_else(|| {
            QueryError::from(anyhow::anyhow!(
                "redeemReward called on a schema without a command API"
            ))
        })?;
        let member_id = crate::types::db(ctx)
            .member_of_subject(&org_id, &customer.subject)
            .await?
            .ok_or_else(|| QueryError::Refused {
                reason: "member_not_found".to_owned(),
                field: None,
                message: "the customer token's member is not enrolled".to_owned(),
            })?;
        let member = MemberRef::Id(member_id);
        let redeemed = redeemer
            .redeem(presented, &org_id, member, &redemption_id, &reward_id)
            .await?;
        Ok(Redemption {
            member_id: ID(redeemed.member_id.to_string()),
            redemption_id,
            reward_id,
            points_spent: redeemed.points_spent,
            balance: redeemed.balance,
        })
    }
}
