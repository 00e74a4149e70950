//! XDS times: `DTM` in UTC (`YYYYMMDDhhmmss`, truncated to the precision
//! given), from HL7 TS values with their offset (`20210104160527+0100`).

use jiff::civil::DateTime;
use jiff::tz::Offset;
use jiff::Timestamp;

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
    let number = |range: std::ops::Range<usize>| -> Option<i32> { digits.get(range)?.parse().ok() };
    let second = if digits.len() >= 14 {
        number(12..14)?
    } else {
        0
    };
    // A leap second (60) is the next minute's first.
    let (second, leap) = if second == 60 { (59, 1) } else { (second, 0) };
    let local = DateTime::new(
        i16::try_from(number(0..4)?).ok()?,
        i8::try_from(number(4..6)?).ok()?,
        i8::try_from(number(6..8)?).ok()?,
        i8::try_from(number(8..10)?).ok()?,
        i8::try_from(number(10..12)?).ok()?,
        i8::try_from(second).ok()?,
        0,
    )
    .ok()?;
    let offset_digits = offset.get(1..)?;
    if offset_digits.len() != 4 || !offset_digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let offset_seconds = sign
        * (offset_digits.get(0..2)?.parse::<i32>().ok()? * 3600
            + offset_digits.get(2..4)?.parse::<i32>().ok()? * 60);
    let instant = Offset::from_seconds(offset_seconds)
        .ok()?
        .to_timestamp(local)
        .ok()?
        .checked_add(jiff::SignedDuration::from_secs(leap))
        .ok()?;
    let text = dtm(instant);
    Some(text.get(..digits.len().min(14))?.to_string())
}

/// `now_ms` (Unix milliseconds) as XDS UTC `YYYYMMDDhhmmss`.
pub fn utc_now_dtm(now_ms: i64) -> String {
    dtm(Timestamp::from_millisecond(now_ms).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn dtm(instant: Timestamp) -> String {
    instant.strftime("%Y%m%d%H%M%S").to_string()
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
