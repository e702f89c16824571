//! The well-kept crates every layer shares, re-exported so that a pure crate needs neither the
//! message types nor a hand-written calendar for a date: civil dates and UTC timestamps
//! ([`time`]) and hexadecimal ([`hex`]), with the few conversions the workspace uses, and the
//! keyed pseudonyms of [`keys`].
//!
//! ```
//! let birth = renal_base::parse_dicom_date("19600615").unwrap();
//! let study = renal_base::parse_dicom_date("20190614").unwrap();
//! assert_eq!(renal_base::completed_years(birth, study), 58);
//! assert_eq!(renal_base::iso_date(study), "2019-06-14");
//! assert_eq!(renal_base::hex::encode([0xab, 0x01]), "ab01");
//! ```

pub mod keys;

pub use hex;
pub use time;

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{Date, Month, OffsetDateTime, UtcOffset};

const RFC3339_SECONDS: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
const DICOM_DA: &[BorrowedFormatItem<'_>] = format_description!("[year][month][day]");
const ISO_DATE: &[BorrowedFormatItem<'_>] = format_description!("[year]-[month]-[day]");

/// The current UTC time as RFC 3339 with second precision, e.g. `2026-11-29T07:30:00Z`.
pub fn now_rfc3339() -> String {
    rfc3339(OffsetDateTime::now_utc())
}

/// `t` in UTC as RFC 3339 with second precision.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(UtcOffset::UTC).format(RFC3339_SECONDS).expect("a UTC time formats")
}

/// The calendar date `year-month-day`, or `None` where there is no such day.
pub fn date(year: i32, month: u8, day: u8) -> Option<Date> {
    Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()
}

/// A DICOM DA value (`YYYYMMDD`) as a date; `None` when it is not one.
pub fn parse_dicom_date(text: &str) -> Option<Date> {
    Date::parse(text.trim(), DICOM_DA).ok()
}

/// `YYYYMMDD`, as DICOM writes dates.
pub fn dicom_date(d: Date) -> String {
    d.format(DICOM_DA).expect("a date formats")
}

/// `YYYY-MM-DD`.
pub fn iso_date(d: Date) -> String {
    d.format(ISO_DATE).expect("a date formats")
}

/// Completed years from `birth` to `later` (an age); 0 when `later` is not after `birth`.
pub fn completed_years(birth: Date, later: Date) -> u32 {
    let mut years = later.year() - birth.year();
    if (later.month() as u8, later.day()) < (birth.month() as u8, birth.day()) {
        years -= 1;
    }
    years.max(0) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_count_completed_years() {
        let birth = date(1960, 6, 15).unwrap();
        assert_eq!(completed_years(birth, date(2019, 6, 14).unwrap()), 58);
        assert_eq!(completed_years(birth, date(2019, 6, 15).unwrap()), 59);
        assert_eq!(completed_years(birth, date(1950, 1, 1).unwrap()), 0);
        assert_eq!(dicom_date(birth), "19600615");
        assert_eq!(date(2019, 2, 29), None, "not a leap year");
        assert_eq!(parse_dicom_date("20190231"), None);
        assert_eq!(parse_dicom_date("2019-06-14"), None);
    }

    #[test]
    fn timestamps_are_utc_to_the_second() {
        // 1,700,000,000 s after the epoch is 2023-11-14T22:13:20Z (a well-known value).
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20Z");
        let east = t.to_offset(UtcOffset::from_hms(5, 30, 0).unwrap());
        assert_eq!(rfc3339(east), "2023-11-14T22:13:20Z", "any offset is written in UTC");
        let now = now_rfc3339();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.as_str() > "2025-01-01T00:00:00Z");
    }
}
