//! The subscription root: live member updates.

use std::sync::Arc;

use async_graphql::{Context, Subscription, ID};
use futures::{Stream, StreamExt as _};

use super::parse_member_id;
use crate::auth::{Access, Caller, OrgGuard, NOT_YOUR_MEMBER};
use crate::error::QueryError;
use chrono::Utc;
use domain::ids::MemberKey;

use crate::live::LiveFeed;
use crate::types::{LiveState, MemberUpdate};

/// Live updates.
pub struct SubscriptionRoot;

/// Live updates over websocket (`graphql-transport-ws`); authenticate with the
/// `connection_init` payload `{"Authorization": "Bearer <key>"}`.
#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// The member's balance and tier after each of its events, pushed as the event reaches the
    /// stream (not when the read models catch up). With `includeCurrent`, the current state is
    /// sent first. Storefront and analyst keys; a customer token for its own member only, until
    /// the token expires (the subscription then completes: reconnect with a fresh token).
    #[graphql(guard = "OrgGuard::new(Access::Member, &org_id)")]
    async fn member_updated(
        &self,
        ctx: &Context<'_>,
        org_id: ID,
        member_id: ID,
        #[graphql(default = false)] include_current: bool,
    ) -> async_graphql::Result<impl Stream<Item = MemberUpdate>> {
        let key = MemberKey {
            org_id: org_id.0,
            member_id: parse_member_id("memberId", &member_id)?,
        };
        let caller = ctx.data_opt::<Caller>().unwrap_or(&Caller::Anonymous);
        let expires_at = match caller.customer() {
            None => None,
            Some(customer) => {
                let own = crate::types::db(ctx)
                    .member_of_subject(&key.org_id, &customer.subject)
                    .await?
                    == Some(key.member_id);
                if !own {
                    return Err(QueryError::forbidden(NOT_YOUR_MEMBER).into());
                }
                Some(customer.expires_at)
            }
        };
        // Listen first, then read where the log stands: an event committed in between is
        // both in the snapshot and on the stream, and `LiveState` ignores the second copy.
        let subscription = ctx.data_unchecked::<Arc<LiveFeed>>().subscribe(key.clone());
        let events = crate::types::db(ctx).latest_state_events(&key).await?;
        if events.is_empty() {
            return Err(QueryError::bad_input(format!(
                "memberId: org '{}' has no member {}",
                key.org_id, key.member_id
            ))
            .into());
        }
        let state = LiveState::from_events(&events);
        let current = include_current.then(|| MemberUpdate {
            key: key.clone(),
            state: state.clone(),
            event_type: None,
            points_delta: 0,
            committed_at: None,
        });
        let live = futures::stream::unfold(
            (subscription, state, key),
            |(mut subscription, mut state, key)| async move {
                loop {
                    let event = subscription.next().await?;
                    if let Some(update) = state.update(&key, &event) {
                        return Some((update, (subscription, state, key)));
                    }
                }
            },
        );
        let until_expiry = async move {
            match expires_at {
                Some(at) => tokio::time::sleep((at - Utc::now()).to_std().unwrap_or_default()).await,
                None => futures::future::pending().await,
            }
        };
        Ok(futures::stream::iter(current)
            .chain(live)
            .take_until(Box::pin(until_expiry)))
    }
}
