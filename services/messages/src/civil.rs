//! Civil (proleptic Gregorian) dates as day counts, enough for DICOM DA values, ages and the
//! UTC timestamps messages carry. One implementation for the workspace.

/// A calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    /// Year.
    pub year: i32,
    /// 1..=12.
    pub month: u32,
    /// 1..=31.
    pub day: u32,
}

impl Date {
    /// A date from its parts (not validated beyond the day-count round trip).
    pub fn new(year: i32, month: u32, day: u32) -> Date {
        Date { year, month, day }
    }

    /// Days since 1970-01-01 (H. Hinnant's `days_from_civil`).
    pub fn days(self) -> i64 {
        let y = self.year as i64 - if self.month <= 2 { 1 } else { 0 };
        let era = if y >= 0 { y } else { y - 399 } / 400;
        let yoe = y - era * 400;
        let m = self.month as i64;
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + self.day as i64 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The date `days` after 1970-01-01.
    pub fn from_days(days: i64) -> Date {
        let z = days + 719_468;
        let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + if month <= 2 { 1 } else { 0 }) as i32;
        Date { year, month, day }
    }

    /// Completed years from `self` (a birth date) to `later`.
    pub fn years_until(self, later: Date) -> u32 {
        let mut years = later.year - self.year;
        if (later.month, later.day) < (self.month, self.day) {
            years -= 1;
        }
        years.max(0) as u32
    }

    /// `YYYYMMDD`.
    pub fn dicom(self) -> String {
        format!("{:04}{:02}{:02}", self.year, self.month, self.day)
    }

    /// `YYYY-MM-DD`.
    pub fn iso(self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// The current UTC time as RFC 3339 with second precision, e.g. `2026-11-29T07:30:00Z`.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    rfc3339(secs)
}

/// `secs` after the Unix epoch as RFC 3339 UTC.
pub fn rfc3339(secs: u64) -> String {
    let date = Date::from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!("{}T{:02}:{:02}:{:02}Z", date.iso(), rem / 3600, (rem / 60) % 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_day_counts() {
        assert_eq!(Date::new(1970, 1, 1).days(), 0);
        assert_eq!(Date::new(2000, 3, 1).days(), 11_017);
        assert_eq!(Date::new(1969, 12, 31).days(), -1);
        for d in [-800_000i64, -1, 0, 59, 60, 11_016, 20_000, 50_000] {
            assert_eq!(Date::from_days(d).days(), d);
        }
        assert_eq!(Date::from_days(11_016), Date::new(2000, 2, 29));
    }

    #[test]
    fn age_counts_completed_years() {
        let birth = Date::new(1960, 6, 15);
        assert_eq!(birth.years_until(Date::new(2019, 6, 14)), 58);
        assert_eq!(birth.years_until(Date::new(2019, 6, 15)), 59);
        assert_eq!(birth.dicom(), "19600615");
    }

    #[test]
    fn timestamps() {
        // 2000-02-29 is day 11,016; 1,700,000,000 s is 2023-11-14T22:13:20Z (a well-known epoch value).
        assert_eq!(rfc3339(11_016 * 86_400 + 3_661), "2000-02-29T01:01:01Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(now_rfc3339().len(), 20);
    }
}
