//! Leaderboards: points earned by purchases minus their clawbacks, per org (location `''`) and
//! per location, per ISO week, calendar month and all time, by the purchase's time (UTC).
//!
//! A member's scores on the boards of one location are one row of `leaderboard_current`: its
//! latest week, its latest month and all time side by side, so that a purchase changes two rows
//! (org-wide and its store), not six. An earlier period is in `leaderboard_closed`: a member's
//! week or month moves there when the member scores in a later one, and a purchase or clawback
//! dated in a period before the member's latest adds to its row there. Each score is in exactly
//! one of the two tables; the `leaderboard_scores` view is their union, ranked by `leaderboard`.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Datelike as _, Utc};
use domain::MemberEvent;
use uuid::Uuid;

use super::{add, key_arrays, EventMeta, MemberState, Mode, ReadModel, Touched, Writes};
use crate::chain::Chain;
use crate::event::ApplyError;
use domain::MemberKey;

pub const TABLES: &[&str] = &["leaderboard_current", "leaderboard_closed"];

/// When a score was reached: the event that last changed it (or first touched it, if none
/// changed it), as (occurred at, global position).
pub type Reached = (DateTime<Utc>, i64);

/// A member's score in one period of one board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Score {
    /// The period's key: `2025-W03`, `2025-01` or `all`.
    pub key: String,
    pub points: i64,
    pub reached: Reached,
}

impl Score {
    /// Adds `delta` scored in the period `key` at `at`. A later period than this one replaces
    /// it, and returns it closed; an earlier one is returned as an addition to its closed row.
    fn add(
        &mut self,
        key: String,
        delta: i64,
        at: Reached,
    ) -> Result<Option<(String, LeaderboardOp)>, ApplyError> {
        match key.cmp(&self.key) {
            Ordering::Greater => {
                let closed = std::mem::replace(
                    self,
                    Score {
                        key,
                        points: delta,
                        reached: at,
                    },
                );
                let op = LeaderboardOp {
                    delta: closed.points,
                    first: closed.reached,
                    changed: Some(closed.reached),
                };
                Ok(Some((closed.key, op)))
            }
            Ordering::Equal => {
                if delta != 0 {
                    self.points = add(self.points, delta, "leaderboard points")?;
                    self.reached = at;
                }
                Ok(None)
            }
            Ordering::Less => Ok(Some((key, LeaderboardOp::scored(delta, at)))),
        }
    }
}

/// A member's row of `leaderboard_current` for one location (`''`: org-wide).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardRow {
    pub week: Score,
    pub month: Score,
    pub all: Score,
    /// Some event of the batch changed it: it is written back.
    pub changed: bool,
}

/// A row of `leaderboard_closed`: member, org, location ('' = all), period, period key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaderboardKey {
    pub member_id: Uuid,
    pub org_id: String,
    pub location_id: String,
    pub period: &'static str,
    pub period_key: String,
}

/// The change of one closed row by a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderboardOp {
    pub delta: i64,
    /// The first event of the batch touching the row (its `reached` if the row is new and no
    /// event changed its score).
    pub first: Reached,
    /// The last event of the batch that changed the score.
    pub changed: Option<Reached>,
}

impl LeaderboardOp {
    fn scored(delta: i64, at: Reached) -> Self {
        Self {
            delta,
            first: at,
            changed: (delta != 0).then_some(at),
        }
    }
}

/// The closed rows a batch changes: periods a member left, and scores dated in them. Hashed:
/// in the audit's fold a map of a whole chunk's rows, where comparing ordered keys (string
/// after string) was a quarter of the audit's CPU.
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
}

/// The ISO week (`2025-W03`) and calendar month (`2025-01`) of `at`, UTC. Keys of one period
/// sort as their periods do.
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
pub(super) fn apply(
    rows: &mut BTreeMap<String, BoardRow>,
    key: &MemberKey,
    meta: &EventMeta,
    event: &MemberEvent,
    writes: &mut Writes,
) -> Result<(), ApplyError> {
    let scored = match event {
        MemberEvent::PurchaseRecorded {
            location_id,
            occurred_at,
            points_earned,
            ..
        } => Some((location_id, *occurred_at, *points_earned, *occurred_at)),
        MemberEvent::PurchaseRefunded {
            location_id,
            purchase_occurred_at,
            points_clawed_back,
            occurred_at,
            ..
        } => (*points_clawed_back != 0).then_some((
            location_id,
            *purchase_occurred_at,
            -*points_clawed_back,
            *occurred_at,
        )),
        _ => return Ok(()),
    };
    if let Some((location_id, period_at, delta, occurred_at)) = scored {
        let at = (occurred_at, meta.global_position);
        let keys = period_keys(period_at);
        for location in ["", location_id.as_str()] {
            score(rows, &mut writes.leaderboard, key, location, &keys, delta, at)?;
        }
    }
    writes.touched(&[ReadModel::Leaderboard]);
    Ok(())
}

/// Adds `delta` to the member's scores on the boards of `location` in the periods `keys`.
fn score(
    rows: &mut BTreeMap<String, BoardRow>,
    closed: &mut LeaderboardWrites,
    key: &MemberKey,
    location: &str,
    keys: &[(&'static str, String); 3],
    delta: i64,
    at: Reached,
) -> Result<(), ApplyError> {
    let Some(row) = rows.get_mut(location) else {
        let new = |(_, key): &(&str, String)| Score {
            key: key.clone(),
            points: delta,
            reached: at,
        };
        let row = BoardRow {
            week: new(&keys[0]),
            month: new(&keys[1]),
            all: new(&keys[2]),
            changed: true,
        };
        rows.insert(location.to_owned(), row);
        return Ok(());
    };
    row.changed = true;
    for (score, (period, period_key)) in [&mut row.week, &mut row.month, &mut row.all]
        .into_iter()
        .zip(keys)
    {
        if let Some((period_key, op)) = score.add(period_key.clone(), delta, at)? {
            let row = LeaderboardKey {
                member_id: key.member_id,
                org_id: key.org_id.clone(),
                location_id: location.to_owned(),
                period,
                period_key,
            };
            closed.add(row, op);
        }
    }
    Ok(())
}

/// The current leaderboard rows of the batch's members, in [`super::load_members`]'s read.
pub(super) const LOAD: &str = "SELECT json_build_array(c.org_id, c.member_id, location_id, \
     week_key, week_points, week_reached_at, week_reached_position, \
     month_key, month_points, month_reached_at, month_reached_position, \
     all_points, all_reached_at, all_reached_position)::text \
     FROM leaderboard_current c JOIN rm.member_keys($1, $2) AS k(org_id, member_id) USING (org_id, member_id)";

/// Puts a row of [`LOAD`] into its member's state.
pub(super) fn loaded(row: &str, states: &mut HashMap<MemberKey, MemberState>) -> serde_json::Result<()> {
    type Period = (String, i64, DateTime<Utc>, i64);
    type Stored = (
        String,
        Uuid,
        String,
        String,
        i64,
        DateTime<Utc>,
        i64,
        String,
        i64,
        DateTime<Utc>,
        i64,
        i64,
        DateTime<Utc>,
        i64,
    );
    let (org_id, member_id, location, wk, wp, wa, wn, mk, mp, ma, mn, ap, aa, an): Stored =
        serde_json::from_str(row)?;
    let score = |(key, points, at, position): Period| Score {
        key,
        points,
        reached: (at, position),
    };
    if let Some(state) = states.get_mut(&MemberKey { org_id, member_id }) {
        let row = BoardRow {
            week: score((wk, wp, wa, wn)),
            month: score((mk, mp, ma, mn)),
            all: score(("all".to_owned(), ap, aa, an)),
            changed: false,
        };
        state.leaderboard.insert(location, row);
    }
    Ok(())
}

/// Writes the changed current rows of the touched members.
pub(super) fn flush_current(chain: &mut Chain, touched: &Touched<'_>, mode: Mode) {
    let rows: Vec<(&MemberKey, &String, &BoardRow)> = touched
        .iter()
        .flat_map(|(k, s)| {
            s.leaderboard
                .iter()
                .map(move |(location, row)| (*k, location, row))
        })
        .filter(|(_, _, row)| row.changed)
        .collect();
    if rows.is_empty() {
        return;
    }
    let (orgs, ids) = key_arrays(rows.iter().map(|(k, _, _)| *k));
    let periods = |period: fn(&BoardRow) -> &Score| {
        let scores: Vec<&Score> = rows.iter().map(|(_, _, row)| period(row)).collect();
        (
            scores.iter().map(|s| s.key.clone()).collect::<Vec<_>>(),
            scores.iter().map(|s| s.points).collect::<Vec<_>>(),
            scores.iter().map(|s| s.reached.0).collect::<Vec<_>>(),
            scores.iter().map(|s| s.reached.1).collect::<Vec<_>>(),
        )
    };
    let (week_keys, week_points, week_at, week_positions) = periods(|row| &row.week);
    let (month_keys, month_points, month_at, month_positions) = periods(|row| &row.month);
    let (_, all_points, all_at, all_positions) = periods(|row| &row.all);
    chain
        .write(
            "leaderboard_current",
            &format!(
                "INSERT INTO leaderboard_current (org_id, member_id, location_id, \
                 week_key, week_points, week_reached_at, week_reached_position, \
                 month_key, month_points, month_reached_at, month_reached_position, \
                 all_points, all_reached_at, all_reached_position) \
                 SELECT unnest($1::text[]), unnest($2::uuid[]), unnest($3::text[]), \
                 unnest($4::text[]), unnest($5::bigint[]), unnest($6::timestamptz[]), unnest($7::bigint[]), \
                 unnest($8::text[]), unnest($9::bigint[]), unnest($10::timestamptz[]), unnest($11::bigint[]), \
                 unnest($12::bigint[]), unnest($13::timestamptz[]), unnest($14::bigint[]){}",
                mode.on_conflict(
                    "(org_id, member_id, location_id) DO UPDATE SET \
                     week_key = excluded.week_key, week_points = excluded.week_points, \
                     week_reached_at = excluded.week_reached_at, week_reached_position = excluded.week_reached_position, \
                     month_key = excluded.month_key, month_points = excluded.month_points, \
                     month_reached_at = excluded.month_reached_at, month_reached_position = excluded.month_reached_position, \
                     all_points = excluded.all_points, all_reached_at = excluded.all_reached_at, \
                     all_reached_position = excluded.all_reached_position"
                )
            ),
        )
        .bind(&orgs)
        .bind(&ids)
        .bind(rows.iter().map(|(_, location, _)| (*location).clone()).collect::<Vec<_>>())
        .bind(week_keys)
        .bind(week_points)
        .bind(week_at)
        .bind(week_positions)
        .bind(month_keys)
        .bind(month_points)
        .bind(month_at)
        .bind(month_positions)
        .bind(all_points)
        .bind(all_at)
        .bind(all_positions);
}

/// Writes the batch's changes of closed rows.
pub(super) fn flush_closed(chain: &mut Chain, writes: &LeaderboardWrites, mode: Mode) {
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
        chain.write("leaderboard_closed", &format!(
            "INSERT INTO leaderboard_closed AS s (org_id, location_id, period, period_key, member_id, points, \
             reached_at, reached_position) \
             SELECT unnest($1::text[]), unnest($2::text[]), unnest($3::text[]), unnest($4::text[]), unnest($5::uuid[]), unnest($6::bigint[]), \
             unnest($7::timestamptz[]), unnest($8::bigint[]){}",
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

    fn t(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, day, hour, 0, 0).unwrap()
    }

    /// Scores `delta` for the member on its store's boards, as a purchase dated `dated` and
    /// recorded at `at` (global position `position`).
    fn scored(
        rows: &mut BTreeMap<String, BoardRow>,
        closed: &mut LeaderboardWrites,
        dated: DateTime<Utc>,
        delta: i64,
        at: Reached,
    ) {
        let key = MemberKey {
            org_id: "o".into(),
            member_id: Uuid::nil(),
        };
        score(rows, closed, &key, "shop", &period_keys(dated), delta, at).unwrap();
    }

    fn closed_row<'a>(closed: &'a LeaderboardWrites, period: &str, key: &str) -> Option<&'a LeaderboardOp> {
        closed
            .0
            .iter()
            .find(|(k, _)| k.period == period && k.period_key == key)
            .map(|(_, op)| op)
    }

    #[test]
    fn a_later_week_closes_the_earlier_one_and_keeps_the_month_and_all_time() {
        let (mut rows, mut closed) = (BTreeMap::new(), LeaderboardWrites::default());
        // Given 10 points on Wednesday of 2024-W02 and 5 on its Friday,
        scored(&mut rows, &mut closed, t(10, 9), 10, (t(10, 9), 1));
        scored(&mut rows, &mut closed, t(12, 9), 5, (t(12, 9), 2));
        assert!(closed.0.is_empty());
        // when 7 points are scored the Monday after,
        scored(&mut rows, &mut closed, t(15, 9), 7, (t(15, 9), 3));
        // then the week of 15 points is closed as reached on Friday, the new week has 7,
        let row = &rows["shop"];
        assert_eq!(
            closed_row(&closed, "week", "2024-W02"),
            Some(&LeaderboardOp {
                delta: 15,
                first: (t(12, 9), 2),
                changed: Some((t(12, 9), 2)),
            })
        );
        assert_eq!(
            (row.week.key.as_str(), row.week.points, row.week.reached.1),
            ("2024-W03", 7, 3)
        );
        // and the month and all time go on adding up.
        assert_eq!((row.month.key.as_str(), row.month.points), ("2024-01", 22));
        assert_eq!(
            (row.all.key.as_str(), row.all.points, row.all.reached.1),
            ("all", 22, 3)
        );
        assert_eq!(closed.0.len(), 1);
    }

    #[test]
    fn a_score_dated_in_an_earlier_period_adds_to_its_closed_row_only() {
        let (mut rows, mut closed) = (BTreeMap::new(), LeaderboardWrites::default());
        scored(&mut rows, &mut closed, t(15, 9), 7, (t(15, 9), 1));
        // A refund of a purchase of the week before claws 4 points back on the 16th,
        scored(&mut rows, &mut closed, t(10, 9), -4, (t(16, 9), 2));
        // then a purchase of that week recorded late scores nothing.
        scored(&mut rows, &mut closed, t(11, 9), 0, (t(17, 9), 3));
        let row = &rows["shop"];
        assert_eq!(
            (row.week.key.as_str(), row.week.points, row.week.reached.1),
            ("2024-W03", 7, 1)
        );
        assert_eq!(
            closed_row(&closed, "week", "2024-W02"),
            Some(&LeaderboardOp {
                delta: -4,
                first: (t(16, 9), 2),
                changed: Some((t(16, 9), 2)),
            })
        );
        // The month and all time are the same period as the member's: they take it.
        assert_eq!((row.month.points, row.all.points, row.all.reached.1), (3, 3, 2));
    }

    #[test]
    fn a_score_of_zero_touches_the_row_without_changing_when_it_was_reached() {
        let (mut rows, mut closed) = (BTreeMap::new(), LeaderboardWrites::default());
        scored(&mut rows, &mut closed, t(10, 9), 0, (t(10, 9), 1));
        assert_eq!((rows["shop"].week.points, rows["shop"].week.reached.1), (0, 1));
        scored(&mut rows, &mut closed, t(10, 10), 0, (t(10, 10), 2));
        assert_eq!(rows["shop"].week.reached.1, 1);
        // A zero score in a later week still opens it (the member is on its board).
        scored(&mut rows, &mut closed, t(15, 9), 0, (t(15, 9), 3));
        assert_eq!(
            (rows["shop"].week.key.as_str(), rows["shop"].week.reached.1),
            ("2024-W03", 3)
        );
        assert_eq!(
            closed_row(&closed, "week", "2024-W02").map(|op| op.delta),
            Some(0)
        );
    }
}
