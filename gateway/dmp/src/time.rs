//! XDS times: `DTM` in UTC (`YYYYMMDDhhmmss`, truncated to the precision
//! given), from HL7 TS values with their offset (`20210104160527+0100`).

/// An HL7 TS as XDS UTC; `None` when it is not a date. A time without an
/// offset is taken as written (the CI-SIS requires the offset).
pub fn ts_to_utc(ts: &str) -> Option<String> {
    let ts = ts.trim();
    let split = ts.find(['+', '-']).unwrap_or(ts.len());
    let (digits, offset) = ts.split_at(split);
    let digits = digits.split('.').next().unwrap_or_default();
    if digits.len() < 4 || digits.len() % 2 != 0 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if offset.is_empty() || digits.len() < 12 {
        return Some(digits.to_string());
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> { digits.get(range)?.parse().ok() };
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute) = (number(8..10)?, number(10..12)?);
    let second = if digits.len() >= 14 {
        number(12..14)?
    } else {
        0
    };
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let offset_digits = offset.get(1..)?;
    if offset_digits.len() != 4 || !offset_digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let offset_minutes = sign
        * (offset_digits.get(0..2)?.parse::<i64>().ok()? * 60
            + offset_digits.get(2..4)?.parse::<i64>().ok()?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_minutes * 60;
    let text = dtm(seconds);
    Some(text.get(..digits.len().min(14))?.to_string())
}

/// `now_ms` (Unix milliseconds) as XDS UTC `YYYYMMDDhhmmss`.
pub fn utc_now_dtm(now_ms: i64) -> String {
    dtm(now_ms.div_euclid(1000))
}

fn dtm(unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let rest = unix_seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}{:02}{:02}{:02}",
        rest / 3600,
        (rest % 3600) / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_with_an_offset_become_utc() {
        assert_eq!(
            ts_to_utc("20210104160527+0100").as_deref(),
            Some("20210104150527")
        );
        assert_eq!(
            ts_to_utc("20210101003000+0200").as_deref(),
            Some("20201231223000")
        );
        assert_eq!(
            ts_to_utc("202101041605-0500").as_deref(),
            Some("202101042105")
        );
        assert_eq!(ts_to_utc("20210104").as_deref(), Some("20210104"));
        assert_eq!(
            ts_to_utc("20210104160527.123+0000").as_deref(),
            Some("20210104160527")
        );
        assert_eq!(ts_to_utc("2021x"), None);
        assert_eq!(ts_to_utc("20211304160527+0100"), None);
    }

    #[test]
    fn now_is_written_in_utc() {
        assert_eq!(utc_now_dtm(0), "19700101000000");
        assert_eq!(utc_now_dtm(1_788_000_000_000), "20260829104000");
    }
}
