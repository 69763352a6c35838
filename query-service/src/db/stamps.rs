//! Members' stamp cards (`rm.stamp_cards`, named from `rm.program_stamp_cards`).

use domain::ids::MemberKey;
use std::collections::HashMap;

use super::keys::{grouped_keyed, key_arrays, Keyed};
use super::Db;
use crate::error::QueryResult;

#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub struct StampCardRow {
    pub card_id: String,
    /// `None` when the card is no longer in the program.
    pub name: Option<String>,
    pub reward_id: Option<String>,
    pub stamps: i32,
    pub stamps_required: i32,
    pub cards_completed: i32,
}

/// Stamp cards of the members `$1`/`$2` name, in card order.
pub(super) const STAMP_CARDS: &str =
    "SELECT c.org_id, c.member_id, c.card_id, p.name, p.reward_id, c.stamps, \
        c.stamps_required, c.cards_completed \
 FROM rm.member_keys($1::text[], $2::uuid[]) AS k \
 JOIN rm.stamp_cards c USING (org_id, member_id) \
 LEFT JOIN rm.program_stamp_cards p ON p.org_id = c.org_id AND p.card_id = c.card_id \
 ORDER BY c.org_id, c.member_id, c.card_id";

impl Db {
    /// Every member's cards, in card order; members without any are absent.
    pub async fn stamp_cards(
        &self,
        keys: &[MemberKey],
    ) -> QueryResult<HashMap<MemberKey, Vec<StampCardRow>>> {
        let (orgs, ids) = key_arrays(keys);
        let rows: Vec<Keyed<StampCardRow>> = sqlx::query_as(STAMP_CARDS)
            .bind(orgs)
            .bind(ids)
            .fetch_all(self.pool())
            .await?;
        Ok(grouped_keyed(rows))
    }
}
