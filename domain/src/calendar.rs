//! The program's local calendar (SPEC §9): schedules, per-member limits and earn caps are judged
//! in the program's time zone, while everything stored stays UTC. Local day, ISO week (from
//! Monday) and calendar month are computed here once, daylight-saving changes included.

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike as _, Duration, NaiveDate, NaiveTime, TimeZone as _, Timelike as _, Utc, Weekday,
};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A calendar period in the program's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    Week,
    Month,
}

/// The program's time zone: an IANA name, `UTC` by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeZone(pub Tz);

impl Default for TimeZone {
    fn default() -> Self {
        TimeZone::UTC
    }
}

impl TimeZone {
    pub const UTC: TimeZone = TimeZone(Tz::UTC);

    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    /// The local date of the first day of the period that contains `at`.
    pub fn period_start(&self, period: Period, at: DateTime<Utc>) -> NaiveDate {
        let date = at.with_timezone(&self.0).date_naive();
        match period {
            Period::Day => date,
            Period::Week => date - Duration::days(i64::from(date.weekday().num_days_from_monday())),
            Period::Month => date.with_day(1).unwrap_or(date),
        }
    }

    /// The UTC instants `[start, end)` of the local period that contains `at`.
    pub fn period_bounds(&self, period: Period, at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let first = self.period_start(period, at);
        let next = match period {
            Period::Day => first + Duration::days(1),
            Period::Week => first + Duration::days(7),
            Period::Month => first
                .checked_add_months(chrono::Months::new(1))
                .unwrap_or(NaiveDate::MAX),
        };
        (self.start_of_day(first), self.start_of_day(next))
    }

    /// The first instant of a local date. Midnight does not exist where a daylight-saving jump
    /// happens at 00:00 (e.g. America/Santiago): the day then starts when the clock resumes.
    fn start_of_day(&self, date: NaiveDate) -> DateTime<Utc> {
        let mut local = date.and_time(NaiveTime::MIN);
        for _ in 0..=24 * 60 {
            if let Some(at) = self.0.from_local_datetime(&local).earliest() {
                return at.with_timezone(&Utc);
            }
            local += Duration::minutes(1);
        }
        // No zone skips a whole day at a time except at the date line, where the next day's
        // start is as good an answer as any.
        date.and_time(NaiveTime::MIN).and_utc()
    }

    /// The local weekday and seconds since local midnight of `at`.
    pub fn weekday_and_seconds(&self, at: DateTime<Utc>) -> (Weekday, u32) {
        let local = at.with_timezone(&self.0);
        (local.weekday(), local.num_seconds_from_midnight())
    }
}

impl FromStr for TimeZone {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<Tz>()
            .map(TimeZone)
            .map_err(|_| format!("'{s}' is not an IANA time zone name (e.g. Europe/Paris)"))
    }
}

impl fmt::Display for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for TimeZone {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for TimeZone {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// A day of the week as written in a schedule (`mon` … `sun`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Day {
    pub fn weekday(self) -> Weekday {
        match self {
            Day::Mon => Weekday::Mon,
            Day::Tue => Weekday::Tue,
            Day::Wed => Weekday::Wed,
            Day::Thu => Weekday::Thu,
            Day::Fri => Weekday::Fri,
            Day::Sat => Weekday::Sat,
            Day::Sun => Weekday::Sun,
        }
    }
}

/// A local wall-clock time `HH:MM`, from `00:00` to `24:00` (the end of the day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClockTime {
    minutes: u16,
}

impl ClockTime {
    pub const END_OF_DAY: u16 = 24 * 60;

    pub fn from_minutes(minutes: u16) -> Option<Self> {
        (minutes <= Self::END_OF_DAY).then_some(ClockTime { minutes })
    }

    pub fn seconds(self) -> u32 {
        u32::from(self.minutes) * 60
    }
}

impl FromStr for ClockTime {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("'{s}' is not a local time HH:MM between 00:00 and 24:00");
        let (h, m) = s.split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 {
            return Err(bad());
        }
        let h: u16 = h.parse().map_err(|_| bad())?;
        let m: u16 = m.parse().map_err(|_| bad())?;
        if m >= 60 {
            return Err(bad());
        }
        ClockTime::from_minutes(h * 60 + m).ok_or_else(bad)
    }
}

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.minutes / 60, self.minutes % 60)
    }
}

impl Serialize for ClockTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ClockTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn paris_day_follows_local_midnight_across_the_spring_change() {
        let paris: TimeZone = "Europe/Paris".parse().unwrap();
        // 2026-03-29 is the spring change in Paris: the local day is 23 hours long.
        let (start, end) = paris.period_bounds(Period::Day, utc("2026-03-29T12:00:00Z"));
        assert_eq!(start, utc("2026-03-28T23:00:00Z"));
        assert_eq!(end, utc("2026-03-29T22:00:00Z"));
        // 23:30 UTC on the 28th is already the 29th in Paris.
        assert_eq!(
            paris.period_start(Period::Day, utc("2026-03-28T23:30:00Z")),
            NaiveDate::from_ymd_opt(2026, 3, 29).unwrap()
        );
    }

    #[test]
    fn weeks_start_on_local_monday_and_months_on_the_first() {
        let tz: TimeZone = "America/New_York".parse().unwrap();
        // Sunday 2026-03-08 23:30 in New York is Monday 03:30 UTC: still the week of the 2nd.
        let at = utc("2026-03-09T03:30:00Z");
        assert_eq!(
            tz.period_start(Period::Week, at),
            NaiveDate::from_ymd_opt(2026, 3, 2).unwrap()
        );
        assert_eq!(
            tz.period_start(Period::Month, utc("2026-04-01T03:00:00Z")),
            NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()
        );
        let (start, end) = tz.period_bounds(Period::Month, utc("2026-03-15T12:00:00Z"));
        assert_eq!(start, utc("2026-03-01T05:00:00Z"));
        assert_eq!(end, utc("2026-04-01T04:00:00Z"));
    }

    #[test]
    fn a_day_whose_midnight_does_not_exist_starts_when_the_clock_resumes() {
        let santiago: TimeZone = "America/Santiago".parse().unwrap();
        // 2026-09-06: clocks jump from 00:00 to 01:00 (UTC-4 to UTC-3).
        let (start, _) = santiago.period_bounds(Period::Day, utc("2026-09-06T15:00:00Z"));
        assert_eq!(start, utc("2026-09-06T04:00:00Z"));
    }

    #[test]
    fn clock_times_parse_hh_mm() {
        assert_eq!("14:00".parse::<ClockTime>().unwrap().seconds(), 14 * 3600);
        assert_eq!("24:00".parse::<ClockTime>().unwrap().to_string(), "24:00");
        assert!("24:01".parse::<ClockTime>().is_err());
        assert!("9:00".parse::<ClockTime>().is_err());
        assert!("09:60".parse::<ClockTime>().is_err());
        assert!("Europe/Nowhere".parse::<TimeZone>().is_err());
    }
}
