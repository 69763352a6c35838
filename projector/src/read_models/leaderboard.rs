//! Leaderboards (`leaderboard_scores`, ranked by the `leaderboard` view): points earned by
//! purchases minus their clawbacks, per org (location `''`) and per location, per ISO week,
//! calendar month and all time, by the purchase's time (UTC).

use std::collections::HashMap;

use chrono::{DateTime, Datelike as _, Utc};
use domain::MemberEvent;
use uuid::Uuid;

use super::{EventMeta, Mode, ReadModel, Writes};
use crate::chain::Chain;
use domain::MemberKey;

pub const TABLES: &[&str] = &["leaderboard_scores"];

/// A leaderboard row: member, org, location ('' = all), period, period key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaderboardKey {
    pub member_id: Uuid,
    pub org_id: String,
    pub location_id: String,
    pub period: &'static str,
    pub period_key: String,
}

/// The change of one leaderboard row by a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderboardOp {
    pub delta: i64,
    /// The first event of the batch touching the row (its `reached` if the row is new and no
    /// event changed its score).
    pub first: (DateTime<Utc>, i64),
    /// The last event of the batch that changed the score.
    pub changed: Option<(DateTime<Utc>, i64)>,
}

/// The leaderboard rows a batch changes. Hashed, not ordered: six rows per purchase, and in the
/// audit's fold a map of a whole chunk's rows; as an ordered map, comparing their keys (string
/// after string) was a quarter of the audit's CPU. The rows are written in one statement, in
/// any order: each is a different key of one member, and one part of a batch writes a member.
#[derive(Debug, Default)]
pub struct LeaderboardWrites(pub HashMap<LeaderboardKey, LeaderboardOp>);

impl LeaderboardWrites {
    pub fn merge(&mut self, other: LeaderboardWrites) {
        for (key, op) in other.0 {
            self.add(key, op);
        }
    }

    fn add(&mut self, key: LeaderboardKey, op: LeaderboardOp) {
        match self.0.get_mut(&key) {
            Some(existing) => {
                existing.delta += op.delta;
                existing.changed = op.changed.or(existing.changed);
            }
            None => {
                self.0.insert(key, op);
            }
        }
    }

    /// Adds `delta` to the member's rows of the purchase's periods, for the org and for
    /// `location_id`, as of the event at `event_at`.
    pub(super) fn score(
        &mut self,
        key: &MemberKey,
        location_id: &str,
        purchase_at: DateTime<Utc>,
        delta: i64,
        event_at: (DateTime<Utc>, i64),
    ) {
        for location in ["", location_id] {
            for (period, period_key) in period_keys(purchase_at) {
                let row = LeaderboardKey {
                    org_id: key.org_id.clone(),
                    location_id: location.to_owned(),
                    period,
                    period_key,
                    member_id: key.member_id,
                };
                let op = LeaderboardOp {
                    delta,
                    first: event_at,
                    changed: (delta != 0).then_some(event_at),
                };
                self.add(row, op);
            }
        }
    }
}

/// The ISO week (`2025-W03`) and calendar month (`2025-01`) of `at`, UTC.
pub fn period_keys(at: DateTime<Utc>) -> [(&'static str, String); 3] {
    let week = at.iso_week();
    [
        ("week", format!("{:04}-W{:02}", week.year(), week.week())),
        ("month", format!("{:04}-{:02}", at.year(), at.month())),
        ("all", "all".to_owned()),
    ]
}

/// A purchase scores its points; a refund's clawback counts against the purchase's own
/// period and location.
pub(super) fn apply(key: &MemberKey, meta: &EventMeta, event: &MemberEvent, writes: &mut Writes) {
    match event {
        MemberEvent::PurchaseRecorded {
            location_id,
            occurred_at,
            points_earned,
            ..
        } => {
            let at = (*occurred_at, meta.global_position);
            writes
                .leaderboard
                .score(key, location_id, *occurred_at, *points_earned, at);
        }
        MemberEvent::PurchaseRefunded {
            location_id,
            purchase_occurred_at,
            points_clawed_back,
            occurred_at,
            ..
        } => {
            if *points_clawed_back != 0 {
                let at = (*occurred_at, meta.global_position);
                writes
                    .leaderboard
                    .score(key, location_id, *purchase_occurred_at, -*points_clawed_back, at);
            }
        }
        _ => return,
    }
    writes.touched(&[ReadModel::Leaderboard]);
}

/// Writes the batch's leaderboard changes.
pub(super) fn flush(chain: &mut Chain, writes: &LeaderboardWrites, mode: Mode) {
    // Rows some event of the batch changed: add the delta, the last change is when the score
    // was reached (even if the batch's changes cancel out). Rows no event changed (zero-point
    // purchases): created if new, otherwise left alone.
    let (changed, unchanged): (Vec<_>, Vec<_>) = writes.0.iter().partition(|(_, op)| op.changed.is_some());
    for (rows, on_conflict) in [
        (
            changed,
            "DO UPDATE SET points = s.points + excluded.points, reached_at = excluded.reached_at, \
             reached_position = excluded.reached_position",
        ),
        (unchanged, "DO NOTHING"),
    ] {
        if rows.is_empty() {
            continue;
        }
        let reached = |op: &LeaderboardOp| op.changed.unwrap_or(op.first);
        chain.write("leaderboard_scores", &format!(
            "INSERT INTO leaderboard_scores AS s (org_id, location_id, period, period_key, member_id, points, \
             reached_at, reached_position) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::uuid[], $6::bigint[], \
             $7::timestamptz[], $8::bigint[]){}",
            mode.on_conflict(&format!(
                "(org_id, location_id, period, period_key, member_id) {on_conflict}"
            ))
        ))
        .bind(rows.iter().map(|(k, _)| k.org_id.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|(k, _)| k.location_id.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|(k, _)| k.period).collect::<Vec<_>>())
        .bind(rows.iter().map(|(k, _)| k.period_key.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|(k, _)| k.member_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, op)| op.delta).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, op)| reached(op).0).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, op)| reached(op).1).collect::<Vec<_>>());
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    #[test]
    fn period_keys_are_iso_week_month_and_all_in_utc() {
        // 2021-01-03 is a Sunday that belongs to ISO week 53 of 2020.
        let at = Utc.with_ymd_and_hms(2021, 1, 3, 23, 59, 59).unwrap();
        assert_eq!(
            period_keys(at).map(|(p, k)| format!("{p}:{k}")),
            ["week:2020-W53", "month:2021-01", "all:all"]
        );
        let monday = Utc.with_ymd_and_hms(2021, 1, 4, 0, 0, 0).unwrap();
        assert_eq!(period_keys(monday)[0].1, "2021-W01");
    }

    #[test]
    fn leaderboard_ops_merge_keeping_the_last_change() {
        let t = |s| Utc.timestamp_opt(s, 0).unwrap();
        let key = MemberKey {
            org_id: "o".into(),
            member_id: Uuid::nil(),
        };
        let mut writes = LeaderboardWrites::default();
        writes.score(&key, "l", t(100), 10, (t(100), 1));
        let mut later = LeaderboardWrites::default();
        later.score(&key, "l", t(100), -10, (t(200), 2));
        later.score(&key, "l", t(100), 0, (t(300), 3));
        writes.merge(later);
        let all = writes
            .0
            .iter()
            .find(|(k, _)| k.location_id.is_empty() && k.period == "all")
            .unwrap()
            .1;
        assert_eq!(
            all,
            &LeaderboardOp {
                delta: 0,
                first: (t(100), 1),
                changed: Some((t(200), 2)),
            }
        );
        assert_eq!(writes.0.len(), 6);
    }
}
