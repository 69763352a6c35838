//! Org-wide trends per UTC day: the liability at the end of each day and the members moving
//! between RFM segments.

use anyhow::Context as _;
use async_graphql::SimpleObject;
use chrono::{DateTime, Days, NaiveDate, Utc};

use crate::db::{LiabilityMoves, TransitionCountRow};
use crate::error::{QueryError, QueryResult};

/// The longest window a trend covers, in days (two years).
pub const MAX_TREND_DAYS: i32 = 731;

/// The org's liability at the end of one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, SimpleObject)]
pub struct LiabilityDay {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Points owed to members at the end of the day (by the business time of each movement).
    pub points: i64,
    /// Net points moved that day: earned and granted minus redeemed, expired and clawed back.
    pub change: i64,
}

/// Members who moved from one RFM segment to another on one UTC day.
#[derive(Debug, Clone, SimpleObject)]
pub struct SegmentTransitionCount {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// The segment they left; null for members scored for the first time.
    pub from: Option<String>,
    /// The segment they entered.
    pub to: String,
    pub count: i64,
}

impl From<TransitionCountRow> for SegmentTransitionCount {
    fn from(row: TransitionCountRow) -> Self {
        Self {
            day: row.day.to_string(),
            from: row.from_segment,
            to: row.to_segment,
            count: row.count,
        }
    }
}

/// The first day of a window of `days` days ending `today`, with `days` checked
/// (the argument named `argument`) against `1..=MAX_TREND_DAYS`.
pub fn window_start(argument: &str, today: NaiveDate, days: i32) -> QueryResult<NaiveDate> {
    if !(1..=MAX_TREND_DAYS).contains(&days) {
        return Err(QueryError::bad_input(format!(
            "{argument}: must be between 1 and {MAX_TREND_DAYS} (got {days})"
        )));
    }
    let back = u64::try_from(days - 1).unwrap_or(0);
    today
        .checked_sub_days(Days::new(back))
        .ok_or_else(|| QueryError::bad_input(format!("{argument}: reaches before the calendar")))
}

/// Midnight UTC of `day`.
pub fn start_of(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// One entry per day from `first` to `today`: the liability at each day's end, walking back
/// from the liability now (movements dated after today, from terminals whose clock runs
/// ahead, are part of it and taken off first).
pub fn liability_days(
    moves: &LiabilityMoves,
    first: NaiveDate,
    today: NaiveDate,
) -> QueryResult<Vec<LiabilityDay>> {
    let overflow = || QueryError::from(anyhow::anyhow!("liability trend overflows i64"));
    let later: i64 = moves
        .days
        .iter()
        .filter(|(day, _)| *day > today)
        .try_fold(0_i64, |sum, (_, delta)| sum.checked_add(*delta))
        .ok_or_else(overflow)?;
    let mut points = moves.liability.checked_sub(later).ok_or_else(overflow)?;
    let mut out = Vec::new();
    let mut day = today;
    loop {
        let change = moves
            .days
            .iter()
            .find(|(d, _)| *d == day)
            .map_or(0, |(_, delta)| *delta);
        out.push(LiabilityDay {
            day: day.to_string(),
            points,
            change,
        });
        if day <= first {
            break;
        }
        points = points.checked_sub(change).ok_or_else(overflow)?;
        day = day
            .pred_opt()
            .context("the calendar's first day")
            .map_err(QueryError::from)?;
    }
    out.reverse();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn day(d: &str, points: i64, change: i64) -> LiabilityDay {
        LiabilityDay {
            day: d.to_owned(),
            points,
            change,
        }
    }

    #[test]
    fn each_day_ends_with_the_liability_of_everything_up_to_it() {
        // Given 100 points earned on the 1st, 30 redeemed on the 3rd: 70 owed now.
        let moves = LiabilityMoves {
            liability: 70,
            days: vec![(date("2026-03-01"), 100), (date("2026-03-03"), -30)],
        };
        // When the trend of the 1st to the 4th is asked for
        let days = liability_days(&moves, date("2026-03-01"), date("2026-03-04")).unwrap();
        // Then every day is there, quiet days carrying the day before
        assert_eq!(
            days,
            vec![
                day("2026-03-01", 100, 100),
                day("2026-03-02", 100, 0),
                day("2026-03-03", 70, -30),
                day("2026-03-04", 70, 0),
            ]
        );
    }

    #[test]
    fn points_before_the_window_are_the_starting_level() {
        // 500 owed from before the window, 20 earned today.
        let moves = LiabilityMoves {
            liability: 520,
            days: vec![(date("2026-03-04"), 20)],
        };
        let days = liability_days(&moves, date("2026-03-03"), date("2026-03-04")).unwrap();
        assert_eq!(days, vec![day("2026-03-03", 500, 0), day("2026-03-04", 520, 20)]);
    }

    #[test]
    fn movements_dated_after_today_are_not_in_todays_level() {
        let moves = LiabilityMoves {
            liability: 60,
            days: vec![(date("2026-03-04"), 50), (date("2026-03-05"), 10)],
        };
        let days = liability_days(&moves, date("2026-03-04"), date("2026-03-04")).unwrap();
        assert_eq!(days, vec![day("2026-03-04", 50, 50)]);
    }

    #[test]
    fn the_window_is_checked() {
        assert_eq!(
            window_start("days", date("2026-03-04"), 1).unwrap(),
            date("2026-03-04")
        );
        assert_eq!(
            window_start("days", date("2026-03-04"), 4).unwrap(),
            date("2026-03-01")
        );
        for bad in [0, -1, MAX_TREND_DAYS + 1] {
            let error = window_start("days", date("2026-03-04"), bad).unwrap_err();
            assert_eq!(error.code(), "BAD_USER_INPUT");
            assert!(error.message().starts_with("days: must be between 1 and 731"));
        }
    }
}
