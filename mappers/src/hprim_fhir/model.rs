//! What both HPRIM formats say, read into one neutral shape the Bundle
//! writer maps, and the small readers both use (NIR, decimals, dates).

use crate::fhir::Decimal;
use crate::mapping::{MappingError, MappingErrorKind, SiteTimeZone};

/// Where a value was read, for errors: `line 12 OBX`, field 6.
#[derive(Debug, Clone)]
pub(super) struct Place {
    pub line: usize,
    pub record: &'static str,
}

impl Place {
    pub fn missing(&self, field: usize, what: &str) -> MappingError {
        MappingError::at(
            MappingErrorKind::RequiredFieldMissing,
            &format!("line {} {}", self.line, self.record),
            1,
            field,
            format!("{what} is required"),
        )
    }
}

/// A file read: who sent it and its patients.
#[derive(Debug, Default)]
pub(super) struct Report {
    /// The sending laboratory's code (H.5 / Net line 11), which scopes its
    /// local identifiers.
    pub sender: Option<String>,
    /// The receiver's code (H.10 / Net line 12), which scopes the
    /// requester's identifiers.
    pub receiver: Option<String>,
    pub patients: Vec<PatientData>,
}

#[derive(Debug, Default)]
pub(super) struct PatientData {
    /// The requester's id for the patient (Santé P.3).
    pub requester_id: Option<String>,
    /// The laboratory's id (Santé P.4).
    pub lab_id: Option<String>,
    /// A well-formed NIR.
    pub nir: Option<String>,
    pub family: Option<String>,
    pub given: Vec<String>,
    /// FHIR date.
    pub birth_date: Option<String>,
    pub gender: Option<&'static str>,
    pub address_lines: Vec<String>,
    pub city: Option<String>,
    pub postcode: Option<String>,
    /// Comments on the patient (Santé C after P), put on each order.
    pub notes: Vec<String>,
    pub orders: Vec<OrderData>,
    /// Position in the file (1-based), for derived identities.
    pub index: usize,
}

#[derive(Debug, Default)]
pub(super) struct OrderData {
    /// The requester's order or sample number (Santé OBR.3).
    pub requester_id: Option<String>,
    /// The laboratory's sample or file number (Santé OBR.4, Net line 9).
    pub lab_id: Option<String>,
    /// Whether the file says anything of the sample (HPRIM Net does not).
    pub has_specimen: bool,
    /// The test ordered: (code, display).
    pub code: Option<(String, Option<String>)>,
    /// FHIR dateTime of collection.
    pub collected: Option<String>,
    pub notes: Vec<String>,
    pub results: Vec<ResultData>,
    /// The report as the laboratory wrote it for reading (HPRIM Net's free
    /// text), kept as the DiagnosticReport's `presentedForm`.
    pub report_text: Option<String>,
}

#[derive(Debug, Default)]
pub(super) struct ResultData {
    pub place: Option<Place>,
    pub code: Option<String>,
    pub display: Option<String>,
    /// Whether the sender says the value is numeric (NM, N).
    pub numeric: bool,
    pub primary: MeasureData,
    pub flag: Option<hprim::AbnormalFlag>,
    pub status: Option<String>,
    /// The value in other units (a "soit" line, RES fields 10–13).
    pub others: Vec<MeasureData>,
    pub notes: Vec<String>,
}

#[derive(Debug, Default, Clone)]
pub(super) struct MeasureData {
    /// As written.
    pub value: String,
    pub unit: Option<String>,
    pub low: Option<String>,
    pub high: Option<String>,
    /// A range written as text the bounds could not be read from.
    pub range_text: Option<String>,
}

/// A non-blank trimmed text.
pub(super) fn text(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_string())
}

/// A quantity's value as a FHIR decimal, its comparator apart: `1.50`
/// stays `1.50`, a French decimal comma is a point (`1,5` is `1.5`), `<0,5`
/// is `<` and `0.5`. `None` when the text is not one number.
pub(super) fn quantity_value(raw: &str) -> Option<(Option<&'static str>, Decimal)> {
    let raw = raw.trim();
    let (comparator, rest) = [("<=", "<="), (">=", ">="), ("<", "<"), (">", ">")]
        .iter()
        .find_map(|(prefix, code)| raw.strip_prefix(*prefix).map(|rest| (Some(*code), rest)))
        .unwrap_or((None, raw));
    Some((comparator, decimal(rest)?))
}

/// A plain decimal, with a decimal comma read as a point.
pub(super) fn decimal(raw: &str) -> Option<Decimal> {
    let raw = raw.trim();
    if raw.matches(',').count() > 1 || (raw.contains(',') && raw.contains('.')) {
        return None;
    }
    Decimal::parse(&raw.replace(',', "."))
}

/// A FHIR date or dateTime from `yyyymmdd[hhmm[ss]]`; a time gets the
/// site's offset of that day.
pub(super) fn compact_datetime(raw: &str, zone: &SiteTimeZone) -> Option<String> {
    let raw = raw.trim();
    if !raw.bytes().all(|b| b.is_ascii_digit()) || !matches!(raw.len(), 8 | 12 | 14) {
        return None;
    }
    let part = |range: std::ops::Range<usize>| raw.get(range).and_then(|s| s.parse::<i16>().ok());
    let (year, month, day) = (part(0..4)?, part(4..6)?, part(6..8)?);
    let date = format!("{year:04}-{month:02}-{day:02}");
    if !valid_date(year, month, day) {
        return None;
    }
    if raw.len() == 8 {
        return Some(date);
    }
    let (hour, minute) = (part(8..10)?, part(10..12)?);
    let second = if raw.len() == 14 { part(12..14)? } else { 0 };
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let offset = zone.offset_seconds(
        year,
        i8::try_from(month).ok()?,
        i8::try_from(day).ok()?,
        i8::try_from(hour).ok()?,
        i8::try_from(minute).ok()?,
        i8::try_from(second).ok()?,
    )?;
    let sign = if offset < 0 { '-' } else { '+' };
    let offset = offset.unsigned_abs();
    Some(format!(
        "{date}T{hour:02}:{minute:02}:{second:02}{sign}{:02}:{:02}",
        offset / 3600,
        offset % 3600 / 60
    ))
}

fn valid_date(year: i16, month: i16, day: i16) -> bool {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    year >= 1000 && (1..=days).contains(&day)
}

/// Gender from `M`, `F`, `U`.
pub(super) fn gender(raw: &str) -> Option<&'static str> {
    match raw.trim().to_ascii_uppercase().as_str() {
        "M" => Some("male"),
        "F" => Some("female"),
        "U" => Some("unknown"),
        _ => None,
    }
}

/// Reference range bounds from one field: "min-max" split, otherwise kept
/// as text.
pub(super) fn range_of(field: &str) -> (Option<String>, Option<String>, Option<String>) {
    let field = field.trim();
    if field.is_empty() {
        return (None, None, None);
    }
    match hprim::net::split_range(field) {
        Some((low, high)) => (Some(low), Some(high), None),
        None => (None, None, Some(field.to_string())),
    }
}

pub(super) use crate::nir::well_formed_nir;
