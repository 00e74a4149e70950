//! FHIR date, dateTime and instant values as the range of time they cover,
//! so date search is range comparison (`1980` covers the whole year).
//! Bounds are fixed-width UTC texts (`YYYY-MM-DDThh:mm:ss.sss`) that sort
//! as time does. A value without an offset is taken as UTC.

/// The lowest and highest instant a value covers, inclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateRange {
    pub low: String,
    pub high: String,
}

/// The range of a FHIR date/dateTime/instant, or `None` when the text is
/// not one.
pub fn range(text: &str) -> Option<DateRange> {
    let text = text.trim();
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let year: i64 = digits(parts.next()?, 4)?;
    let month = match parts.next() {
        Some(m) => Some(digits(m, 2)?),
        None => None,
    };
    let day = match parts.next() {
        Some(d) => Some(digits(d, 2)?),
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    if let Some(month) = month {
        if !(1..=12).contains(&month) {
            return None;
        }
    }
    if let (Some(month), Some(day)) = (month, day) {
        if day < 1 || day > days_in_month(year, month) {
            return None;
        }
    }
    let Some(time) = time else {
        let (low_month, high_month) = month.map_or((1, 12), |m| (m, m));
        let low_day = day.unwrap_or(1);
        let high_day = day.unwrap_or_else(|| days_in_month(year, high_month));
        let low = days_from_civil(year, low_month, low_day) * 86_400_000;
        let high = days_from_civil(year, high_month, high_day) * 86_400_000 + 86_399_999;
        return Some(DateRange {
            low: format_ms(low),
            high: format_ms(high),
        });
    };
    let (month, day) = (month?, day?);
    let (clock, offset_minutes) = split_offset(time)?;
    let mut fields = clock.split(':');
    let hour = digits(fields.next()?, 2)?;
    let minute = digits(fields.next()?, 2)?;
    let (second, millis, precise_to_ms) = match fields.next() {
        None => (0, 0, false),
        Some(seconds) => {
            let (whole, fraction) = match seconds.split_once('.') {
                Some((whole, fraction)) => (whole, Some(fraction)),
                None => (seconds, None),
            };
            let second = digits(whole, 2)?;
            let millis = match fraction {
                Some(fraction)
                    if !fraction.is_empty() && fraction.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    let mut padded: String = fraction.chars().take(3).collect();
                    while padded.len() < 3 {
                        padded.push('0');
                    }
                    padded.parse::<i64>().ok()?
                }
                Some(_) => return None,
                None => 0,
            };
            (second, millis, fraction.is_some())
        }
    };
    if fields.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let low = days_from_civil(year, month, day) * 86_400_000
        + ((hour * 60 + minute - offset_minutes) * 60 + second) * 1000
        + millis;
    // A time to the minute or second covers that minute or second.
    let span = if precise_to_ms {
        0
    } else if time_has_seconds(clock) {
        999
    } else {
        59_999
    };
    Some(DateRange {
        low: format_ms(low),
        high: format_ms(low + span),
    })
}

fn time_has_seconds(clock: &str) -> bool {
    clock.matches(':').count() >= 2
}

fn split_offset(time: &str) -> Option<(&str, i64)> {
    if let Some(clock) = time.strip_suffix('Z') {
        return Some((clock, 0));
    }
    let Some(position) = time.rfind(['+', '-']) else {
        return Some((time, 0));
    };
    let (clock, offset) = time.split_at(position);
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let (hours, minutes) = offset[1..].split_once(':')?;
    Some((clock, sign * (digits(hours, 2)? * 60 + digits(minutes, 2)?)))
}

fn digits(text: &str, width: usize) -> Option<i64> {
    if text.len() != width || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = if year >= 0 { year } else { year - 399 } / 400;
    let year_of_era = year - era * 400;
    let month_index = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The first millisecond a FHIR date/dateTime/instant covers, as Unix
/// milliseconds (`_since`); `None` when the text is not one.
pub fn start_ms(text: &str) -> Option<i64> {
    let low = range(text)?.low;
    let number = |from: usize, to: usize| low.get(from..to)?.parse::<i64>().ok();
    let days = days_from_civil(number(0, 4)?, number(5, 7)?, number(8, 10)?);
    let ms = number(11, 13)? * 3_600_000
        + number(14, 16)? * 60_000
        + number(17, 19)? * 1000
        + number(20, 23)?;
    Some(days * 86_400_000 + ms)
}

/// Unix milliseconds as a bound text.
pub fn format_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rest = ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(text: &str) -> (String, String) {
        let range = range(text).unwrap();
        (range.low, range.high)
    }

    #[test]
    fn start_ms_is_the_first_millisecond_covered() {
        assert_eq!(start_ms("1970-01-01"), Some(0));
        assert_eq!(start_ms("2026-12-04T10:00:00Z"), Some(1_796_378_400_000));
        assert_eq!(
            start_ms("2026-12-04T11:00:00+01:00"),
            Some(1_796_378_400_000)
        );
        assert_eq!(
            format_ms(start_ms("2001-02-03T04:05:06.789Z").unwrap()),
            "2001-02-03T04:05:06.789"
        );
        assert_eq!(start_ms("yesterday"), None);
    }

    #[test]
    fn partial_dates_cover_their_whole_period() {
        assert_eq!(
            r("1980"),
            (
                "1980-01-01T00:00:00.000".into(),
                "1980-12-31T23:59:59.999".into()
            )
        );
        assert_eq!(
            r("2024-02"),
            (
                "2024-02-01T00:00:00.000".into(),
                "2024-02-29T23:59:59.999".into()
            )
        );
        assert_eq!(
            r("2023-02-28"),
            (
                "2023-02-28T00:00:00.000".into(),
                "2023-02-28T23:59:59.999".into()
            )
        );
    }

    #[test]
    fn times_are_moved_to_utc() {
        assert_eq!(
            r("2026-11-22T10:00:00+01:00"),
            (
                "2026-11-22T09:00:00.000".into(),
                "2026-11-22T09:00:00.999".into()
            )
        );
        assert_eq!(
            r("2026-01-01T00:30:00.25-02:00").0,
            "2026-01-01T02:30:00.250"
        );
        assert_eq!(r("2026-11-22T10:00Z").1, "2026-11-22T10:00:59.999");
    }

    #[test]
    fn what_is_not_a_date_has_no_range() {
        for text in [
            "",
            "19800",
            "1980-13",
            "1980-02-30",
            "1980-01-01T25:00",
            "soon",
            "1980-01-01T10:00:00+1",
        ] {
            assert_eq!(range(text), None, "{text}");
        }
    }

    #[test]
    fn bounds_round_trip_through_days() {
        for days in [-800_000, -1, 0, 1, 19_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000");
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_text_has_a_range_or_none_and_never_panics(text in any::<String>()) {
            if let Some(range) = range(&text) {
                prop_assert!(range.low <= range.high);
            }
        }

        #[test]
        fn a_dates_range_holds_its_own_instant(
            year in 1800i64..2200, month in 1i64..=12, day in 1i64..=28,
            hour in 0i64..24, minute in 0i64..60, second in 0i64..60,
        ) {
            let date = format!("{year:04}-{month:02}-{day:02}");
            let instant = format!("{date}T{hour:02}:{minute:02}:{second:02}Z");
            let day_range = range(&date).unwrap();
            let instant_range = range(&instant).unwrap();
            prop_assert!(day_range.low <= instant_range.low && instant_range.high <= day_range.high);
        }
    }
}
