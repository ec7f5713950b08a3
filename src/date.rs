//! Calendar dates without a date library: the run's day (fixed once at start), its weekday,
//! and timestamps for the job report.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Weekday;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

impl Date {
    /// Today in local time, as Cedar Backup takes it.
    pub fn today() -> Date {
        let now = nix::libc::time_t::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        )
        .unwrap_or(0);
        // SAFETY: localtime_r only writes into the tm we pass; a zeroed tm is a valid value.
        let mut tm: nix::libc::tm = unsafe { std::mem::zeroed() };
        let ok = unsafe { !nix::libc::localtime_r(&now, &mut tm).is_null() };
        if !ok {
            return Date::from_days(now / 86_400);
        }
        Date {
            year: tm.tm_year + 1900,
            month: (tm.tm_mon + 1) as u32,
            day: tm.tm_mday as u32,
        }
    }

    /// Parses `YYYY-MM-DD` (a real calendar date).
    pub fn parse(text: &str) -> Result<Date> {
        let bad = || Error::usage(format!("date {text:?}: expected YYYY-MM-DD"));
        let mut parts = text.split('-');
        let (Some(y), Some(m), Some(d), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return Err(bad());
        }
        let date = Date {
            year: y.parse().map_err(|_| bad())?,
            month: m.parse().map_err(|_| bad())?,
            day: d.parse().map_err(|_| bad())?,
        };
        if date.month == 0
            || date.month > 12
            || date.day == 0
            || date.day > days_in_month(date.year, date.month)
        {
            return Err(Error::usage(format!("date {text:?}: no such day")));
        }
        Ok(date)
    }

    /// Days since 1970-01-01 (Howard Hinnant's days_from_civil).
    pub fn to_days(self) -> i64 {
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    pub fn from_days(days: i64) -> Date {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        Date { year, month, day }
    }

    pub fn weekday(self) -> Weekday {
        // 1970-01-01 was a Thursday.
        const DAYS: [Weekday; 7] = [
            Weekday::Thursday,
            Weekday::Friday,
            Weekday::Saturday,
            Weekday::Sunday,
            Weekday::Monday,
            Weekday::Tuesday,
            Weekday::Wednesday,
        ];
        DAYS[self.to_days().rem_euclid(7) as usize]
    }

    /// `YYYY/MM/DD`, the daily dir below the staging dir.
    pub fn daily_path(self) -> String {
        format!("{:04}/{:02}/{:02}", self.year, self.month, self.day)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// A UTC timestamp such as `2026-11-22T02:53:07Z`, for reports.
pub fn timestamp(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let date = Date::from_days(secs.div_euclid(86_400));
    let rest = secs.rem_euclid(86_400);
    format!(
        "{date}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_dates() {
        let date = Date::parse("2026-11-22").unwrap();
        assert_eq!(date.to_string(), "2026-11-22");
        assert_eq!(date.daily_path(), "2026/11/22");
        assert!(Date::parse("2026-02-29").is_err());
        assert!(Date::parse("2024-02-29").is_ok());
        for bad in [
            "2026-1-01",
            "26-01-01",
            "2026-13-01",
            "2026-00-10",
            "x",
            "2026-01-01-01",
        ] {
            assert!(Date::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn days_round_trip_and_weekdays() {
        for days in [-1000, 0, 59, 60, 365, 10_957, 20_779, 100_000] {
            assert_eq!(Date::from_days(days).to_days(), days);
        }
        assert_eq!(
            Date::parse("2026-11-22").unwrap().weekday(),
            Weekday::Sunday
        );
        assert_eq!(
            Date::parse("2000-02-29").unwrap().weekday(),
            Weekday::Tuesday
        );
        assert_eq!(
            timestamp(UNIX_EPOCH + std::time::Duration::from_secs(86_400 + 3661)),
            "1970-01-02T01:01:01Z"
        );
    }
}
