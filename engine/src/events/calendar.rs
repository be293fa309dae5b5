//! UTC days and months, the time partitions of the event store.
//!
//! Dates use the proleptic Gregorian calendar; conversions are the civil-date
//! algorithms of Howard Hinnant ("chrono-compatible low-level date
//! algorithms"), exact for every day this store can meet.

use std::fmt;
use std::str::FromStr;

const MS_PER_DAY: u64 = 86_400_000;
/// Days from 0000-03-01 to 1970-01-01 in the algorithms' shifted era.
const DAYS_TO_UNIX_EPOCH: i64 = 719_468;

/// One UTC calendar day, as days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(u32);

impl Day {
    /// The day holding this instant (milliseconds since the Unix epoch).
    pub fn of_unix_ms(unix_ms: u64) -> Self {
        // u64::MAX ms is about 584 million years: the quotient fits in u32 only
        // up to year 11 million, so saturate beyond.
        Self(u32::try_from(unix_ms / MS_PER_DAY).unwrap_or(u32::MAX))
    }

    /// The day with this number of days since 1970-01-01.
    pub fn from_days_since_epoch(days: u32) -> Self {
        Self(days)
    }

    pub fn days_since_epoch(self) -> u32 {
        self.0
    }

    /// The day for a date; `None` when the date does not exist or is before 1970.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Self> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        let days = days_from_civil(i64::from(year), i64::from(month), i64::from(day));
        u32::try_from(days).ok().map(Self)
    }

    /// (year, month 1..=12, day 1..=31).
    pub fn ymd(self) -> (i32, u32, u32) {
        civil_from_days(i64::from(self.0))
    }

    /// The first millisecond of the day.
    pub fn start_unix_ms(self) -> u64 {
        u64::from(self.0) * MS_PER_DAY
    }

    /// The first millisecond of the next day.
    pub fn end_unix_ms(self) -> u64 {
        self.start_unix_ms() + MS_PER_DAY
    }

    /// The day before, or `None` for 1970-01-01.
    pub fn previous(self) -> Option<Self> {
        self.0.checked_sub(1).map(Self)
    }

    /// The day after (saturating at the last representable day).
    pub fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }

    pub fn month(self) -> Month {
        let (year, month, _) = self.ymd();
        Month { year, month }
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, month, day) = self.ymd();
        write!(f, "{year:04}-{month:02}-{day:02}")
    }
}

/// Text that is not a date this store can hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a {expected} on or after 1970-01-01")]
pub struct DateError {
    pub text: String,
    /// What was expected, such as "date (YYYY-MM-DD)".
    pub expected: &'static str,
}

impl FromStr for Day {
    type Err = DateError;

    /// Parses `YYYY-MM-DD`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || DateError {
            text: text.chars().take(32).collect(),
            expected: "date (YYYY-MM-DD)",
        };
        let mut parts = text.split('-');
        let (Some(year), Some(month), Some(day), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(error());
        };
        if year.len() != 4 || month.len() != 2 || day.len() != 2 {
            return Err(error());
        }
        let year = parse_digits(year).ok_or_else(error)?;
        let month = parse_digits(month).ok_or_else(error)?;
        let day = parse_digits(day).ok_or_else(error)?;
        let year = i32::try_from(year).map_err(|_| error())?;
        Self::from_ymd(year, month, day).ok_or_else(error)
    }
}

/// One UTC calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i32,
    /// 1..=12
    month: u32,
}

impl Month {
    /// The month; `None` unless 1970 <= year <= 9999 and 1 <= month <= 12.
    pub fn new(year: i32, month: u32) -> Option<Self> {
        ((1970..=9999).contains(&year) && (1..=12).contains(&month)).then_some(Self { year, month })
    }

    /// The month holding this instant (milliseconds since the Unix epoch).
    pub fn of_unix_ms(unix_ms: u64) -> Self {
        Day::of_unix_ms(unix_ms).month()
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn month(self) -> u32 {
        self.month
    }

    /// The CQL partition key of the month: `year * 100 + month`, e.g. 202503.
    pub fn key(self) -> i32 {
        // Months are built from years below 11 million (see Day::of_unix_ms),
        // where the product fits; saturate rather than wrap beyond.
        self.year
            .saturating_mul(100)
            .saturating_add(i32::try_from(self.month).unwrap_or(0))
    }

    /// The first day of the month.
    pub fn first_day(self) -> Day {
        Day(u32::try_from(days_from_civil(
            i64::from(self.year),
            i64::from(self.month),
            1,
        ))
        .unwrap_or(0))
    }

    /// The first day of the next month.
    pub fn end_day(self) -> Day {
        let (year, month) = if self.month == 12 {
            (self.year + 1, 1)
        } else {
            (self.year, self.month + 1)
        };
        Day(
            u32::try_from(days_from_civil(i64::from(year), i64::from(month), 1))
                .unwrap_or(u32::MAX),
        )
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Month {
    type Err = DateError;

    /// Parses `YYYY-MM`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || DateError {
            text: text.chars().take(32).collect(),
            expected: "month (YYYY-MM)",
        };
        let (year, month) = text.split_once('-').ok_or_else(error)?;
        if year.len() != 4 || month.len() != 2 {
            return Err(error());
        }
        let year = i32::try_from(parse_digits(year).ok_or_else(error)?).map_err(|_| error())?;
        let month = parse_digits(month).ok_or_else(error)?;
        Self::new(year, month).ok_or_else(error)
    }
}

fn parse_digits(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(year) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - DAYS_TO_UNIX_EPOCH
}

/// The proleptic Gregorian date of a day number (days since 1970-01-01).
fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + DAYS_TO_UNIX_EPOCH;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (
        i32::try_from(year).unwrap_or(i32::MAX),
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates_map_to_their_day_numbers_and_back() {
        for (text, days) in [
            ("1970-01-01", 0),
            ("2000-02-29", 11_016),
            ("2024-12-31", 20_088),
            ("2025-03-01", 20_148),
        ] {
            let day: Day = text.parse().unwrap();
            assert_eq!(day.days_since_epoch(), days, "{text}");
            assert_eq!(day.to_string(), text);
        }
        for days in (0..40_000).step_by(7) {
            let day = Day::from_days_since_epoch(days);
            let (y, m, d) = day.ymd();
            assert_eq!(Day::from_ymd(y, m, d), Some(day));
        }
    }

    #[test]
    fn a_day_spans_its_utc_milliseconds() {
        let day: Day = "2025-03-09".parse().unwrap();
        assert_eq!(Day::of_unix_ms(day.start_unix_ms()), day);
        assert_eq!(Day::of_unix_ms(day.end_unix_ms() - 1), day);
        assert_eq!(Day::of_unix_ms(day.end_unix_ms()), day.next());
        assert_eq!(day.next().previous(), Some(day));
        assert_eq!(Day::from_days_since_epoch(0).previous(), None);
    }

    #[test]
    fn months_have_keys_and_bounds() {
        let month: Month = "2024-12".parse().unwrap();
        assert_eq!(month.key(), 202_412);
        assert_eq!(month.first_day().to_string(), "2024-12-01");
        assert_eq!(month.end_day().to_string(), "2025-01-01");
        assert_eq!(month.to_string(), "2024-12");
        let day: Day = "2024-02-29".parse().unwrap();
        assert_eq!(day.month(), "2024-02".parse().unwrap());
    }

    #[test]
    fn bad_dates_are_errors_not_panics() {
        for text in [
            "",
            "2025",
            "2025-13-01",
            "2025-02-29",
            "2025-2-01",
            "1969-12-31",
            "+025-01-01",
            "2025-01-01-01",
            "２０２５-01-01",
            "99999999999-01-01",
        ] {
            assert!(text.parse::<Day>().is_err(), "{text}");
        }
        for text in [
            "", "2025-00", "2025-13", "1969-12", "2025-1", "2025/01", "abcd-ef",
        ] {
            assert!(text.parse::<Month>().is_err(), "{text}");
        }
    }
}
