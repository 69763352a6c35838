//! Stamp cards: each member's stamps per card (`stamp_cards`) and the rewards completed cards
//! issued (`stamp_rewards_issued`).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use domain::MemberEvent;
use uuid::Uuid;

use super::{key_arrays, to_i32, MemberState, Mode, ReadModel, Touched, Writes};
use crate::chain::Chain;
use crate::event::ApplyError;
use domain::MemberKey;

pub const TABLES: &[&str] = &["stamp_cards", "stamp_rewards_issued"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StampRow {
    pub stamps: i32,
    pub stamps_required: i32,
    pub cards_completed: i32,
    pub last_stamp_day: Option<NaiveDate>,
}

#[derive(Debug, Clone)]
pub struct StampRewardRow {
    pub key: MemberKey,
    pub card_id: String,
    pub cards_completed: i32,
    pub reward_id: String,
    pub transaction_id: String,
    pub occurred_at: DateTime<Utc>,
}

/// A stamp sets the card's count; a completed card starts it again and issues its reward.
pub(super) fn apply(
    cards: &mut BTreeMap<String, StampRow>,
    key: &MemberKey,
    event: &MemberEvent,
    writes: &mut Writes,
) -> Result<(), ApplyError> {
    match event {
        MemberEvent::StampCollected {
            card_id,
            day,
            stamps,
            stamps_required,
            ..
        } => {
            let card = cards.entry(card_id.clone()).or_insert(StampRow {
                stamps: 0,
                stamps_required: 0,
                cards_completed: 0,
                last_stamp_day: None,
            });
            card.stamps = to_i32(*stamps, "stamps")?;
            card.stamps_required = to_i32(*stamps_required, "stamps_required")?;
            card.last_stamp_day = Some(*day);
        }
        MemberEvent::StampCardCompleted {
            card_id,
            reward_id,
            transaction_id,
            cards_completed,
            occurred_at,
        } => {
            let Some(card) = cards.get_mut(card_id) else {
                return Err(ApplyError::Invalid(format!(
                    "card '{card_id}' completed without any stamp"
                )));
            };
            card.stamps = 0;
            card.cards_completed = to_i32(*cards_completed, "cards_completed")?;
            writes.stamp_rewards.push(StampRewardRow {
                key: key.clone(),
                card_id: card_id.clone(),
                cards_completed: card.cards_completed,
                reward_id: reward_id.clone(),
                transaction_id: transaction_id.clone(),
                occurred_at: *occurred_at,
            });
        }
        _ => return Ok(()),
    }
    writes.touched(&[ReadModel::Stamps]);
    Ok(())
}

/// The stamp cards of the batch's members, in [`super::load_members`]'s read.
pub(super) const LOAD: &str =
    "SELECT json_build_array(s.org_id, s.member_id, card_id, stamps, stamps_required, \
     cards_completed, last_stamp_day)::text \
     FROM stamp_cards s JOIN rm.member_keys($1, $2) AS k(org_id, member_id) USING (org_id, member_id)";

/// Puts a row of [`LOAD`] into its member's state.
pub(super) fn loaded(row: &str, states: &mut HashMap<MemberKey, MemberState>) -> serde_json::Result<()> {
    type StampTuple = (String, Uuid, String, i32, i32, i32, Option<NaiveDate>);
    let (org_id, member_id, card_id, stamps, stamps_required, cards_completed, last_stamp_day): StampTuple =
        serde_json::from_str(row)?;
    if let Some(state) = states.get_mut(&MemberKey { org_id, member_id }) {
        state.stamps.insert(
            card_id,
            StampRow {
                stamps,
                stamps_required,
                cards_completed,
                last_stamp_day,
            },
        );
    }
    Ok(())
}

/// Writes the stamp cards of the touched members.
pub(super) fn flush(chain: &mut Chain, touched: &Touched<'_>, mode: Mode) {
    let rows: Vec<(&MemberKey, &String, &StampRow)> = touched
        .iter()
        .flat_map(|(k, s)| s.stamps.iter().map(move |(card, row)| (*k, card, row)))
        .collect();
    if rows.is_empty() {
        return;
    }
    let (orgs, ids) = key_arrays(rows.iter().map(|(k, _, _)| *k));
    chain.write("stamp_cards", &format!(
        "INSERT INTO stamp_cards (org_id, member_id, card_id, stamps, stamps_required, cards_completed, last_stamp_day) \
         SELECT unnest($1::text[]), unnest($2::uuid[]), unnest($3::text[]), unnest($4::int[]), unnest($5::int[]), unnest($6::int[]), unnest($7::date[]){}",
        mode.on_conflict(
            "(org_id, member_id, card_id) DO UPDATE SET stamps = excluded.stamps, \
             stamps_required = excluded.stamps_required, cards_completed = excluded.cards_completed, \
             last_stamp_day = excluded.last_stamp_day"
        )
    ))
    .bind(&orgs)
    .bind(&ids)
    .bind(rows.iter().map(|(_, c, _)| (*c).clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, _, r)| r.stamps).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, _, r)| r.stamps_required).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, _, r)| r.cards_completed).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, _, r)| r.last_stamp_day).collect::<Vec<_>>());
}

/// Writes the rewards the batch's completed cards issued.
pub(super) fn flush_rewards(chain: &mut Chain, rewards: &[StampRewardRow]) {
    if rewards.is_empty() {
        return;
    }
    let s = rewards;
    let (orgs, ids) = key_arrays(s.iter().map(|r| &r.key));
    chain
        .write(
            "stamp_rewards_issued",
            "INSERT INTO stamp_rewards_issued (org_id, member_id, card_id, cards_completed, reward_id, \
             transaction_id, occurred_at) \
             SELECT unnest($1::text[]), unnest($2::uuid[]), unnest($3::text[]), unnest($4::int[]), unnest($5::text[]), unnest($6::text[]), \
             unnest($7::timestamptz[])",
        )
        .bind(&orgs)
        .bind(&ids)
        .bind(s.iter().map(|r| r.card_id.clone()).collect::<Vec<_>>())
        .bind(s.iter().map(|r| r.cards_completed).collect::<Vec<_>>())
        .bind(s.iter().map(|r| r.reward_id.clone()).collect::<Vec<_>>())
        .bind(s.iter().map(|r| r.transaction_id.clone()).collect::<Vec<_>>())
        .bind(s.iter().map(|r| r.occurred_at).collect::<Vec<_>>());
}
