//! CDA values as FHIR ones: HL7 TS timestamps as dates, dateTimes and
//! instants, code system OIDs as FHIR URIs, instance identifiers as
//! identifiers, the NIR key check, and the attachment's base64 and SHA-1.

use crate::mapping::SiteTimeZone;

pub(super) const LOINC: &str = "http://loinc.org";
pub(super) const INS_NIR: &str = "1.2.250.1.213.1.4.8";
pub(super) const INS_NIR_TEST: &str = "1.2.250.1.213.1.4.10";
pub(super) const INS_NIR_DEMO: &str = "1.2.250.1.213.1.4.11";
pub(super) const INS_NIA: &str = "1.2.250.1.213.1.4.9";
pub(super) const RPPS: &str = "1.2.250.1.71.4.2.1";
pub(super) const FR_CORE_V2_0203: &str =
    "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203";

/// A code system OID (or a URI already) as the FHIR system URI: HL7's
/// published ones by their canonical URL, anything else as `urn:oid:`.
pub(super) fn system_uri(system: &str) -> String {
    let known = match system {
        "2.16.840.1.113883.6.1" => LOINC,
        "2.16.840.1.113883.6.96" => "http://snomed.info/sct",
        "2.16.840.1.113883.6.8" => "http://unitsofmeasure.org",
        "2.16.840.1.113883.5.83" => {
            "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
        }
        "2.16.840.1.113883.5.25" => "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
        "2.16.840.1.113883.5.1" => "http://terminology.hl7.org/CodeSystem/v3-AdministrativeGender",
        "2.16.840.1.113883.5.4" => "http://terminology.hl7.org/CodeSystem/v3-ActCode",
        "2.16.840.1.113883.5.14" => "http://terminology.hl7.org/CodeSystem/v3-ActStatus",
        "2.16.840.1.113883.6.73" => "http://www.whocc.no/atc",
        _ => return id_uri(system),
    };
    known.to_string()
}

/// An OID or UUID root as a URI (`urn:oid:`, `urn:uuid:`); a URI stays.
pub(super) fn id_uri(root: &str) -> String {
    if root.contains(':') {
        return root.to_string();
    }
    let is_oid = root.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if is_oid {
        format!("urn:oid:{root}")
    } else {
        format!("urn:uuid:{}", root.to_ascii_lowercase())
    }
}

/// An instance identifier as (system, value): `root` scopes `extension`;
/// a root alone is the identifier itself (RFC 3986 system).
pub(super) fn identifier_of(id: &cda::InstanceId) -> Option<(String, String)> {
    let root = id.root.as_deref()?;
    match id.extension.as_deref() {
        Some(extension) => Some((id_uri(root), extension.to_string())),
        None => Some(("urn:ietf:rfc:3986".to_string(), id_uri(root))),
    }
}

/// The parts of an HL7 TS: `YYYY[MM[DD[HH[MM[SS[.f]]]]]][+-ZZZZ]`.
struct Timestamp<'t> {
    digits: &'t str,
    fraction: Option<&'t str>,
    /// Offset in minutes east of UTC.
    offset: Option<i32>,
}

fn split_ts(raw: &str) -> Option<Timestamp<'_>> {
    let raw = raw.trim();
    let (body, offset) = match raw.find(['+', '-']) {
        Some(at) => {
            let (body, zone) = raw.split_at(at);
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let zone = zone.get(1..)?;
            if zone.len() != 4 || !zone.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let hours: i32 = zone.get(..2)?.parse().ok()?;
            let minutes: i32 = zone.get(2..)?.parse().ok()?;
            if hours > 14 || minutes > 59 {
                return None;
            }
            (body, Some(sign * (hours * 60 + minutes)))
        }
        None => (raw, None),
    };
    let (digits, fraction) = match body.split_once('.') {
        Some((digits, fraction)) => (digits, Some(fraction)),
        None => (body, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(digits) || !matches!(digits.len(), 4 | 6 | 8 | 10 | 12 | 14) {
        return None;
    }
    if fraction.is_some_and(|f| !all_digits(f) || digits.len() != 14) {
        return None;
    }
    Some(Timestamp {
        digits,
        fraction,
        offset,
    })
}

fn days_in(year: i32, month: i32) -> i32 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => 0,
    }
}

/// A TS as a FHIR dateTime: year, year-month or date as far as given; a
/// time gets seconds (`:00` when not given) and its offset, or the site's
/// offset of that day when it has none. `None` when it is not a valid TS.
pub(super) fn date_time(raw: &str, zone: &SiteTimeZone) -> Option<String> {
    let ts = split_ts(raw)?;
    let number = |range: std::ops::Range<usize>| -> Option<i32> {
        ts.digits.get(range).and_then(|s| s.parse().ok())
    };
    let year = number(0..4)?;
    if year < 1000 {
        return None;
    }
    if ts.digits.len() == 4 {
        return Some(format!("{year:04}"));
    }
    let month = number(4..6)?;
    if !(1..=12).contains(&month) {
        return None;
    }
    if ts.digits.len() == 6 {
        return Some(format!("{year:04}-{month:02}"));
    }
    let day = number(6..8)?;
    if day < 1 || day > days_in(year, month) {
        return None;
    }
    let date = format!("{year:04}-{month:02}-{day:02}");
    if ts.digits.len() == 8 {
        return Some(date);
    }
    let hour = number(8..10)?;
    let minute = if ts.digits.len() >= 12 {
        number(10..12)?
    } else {
        0
    };
    let second = if ts.digits.len() >= 14 {
        number(12..14)?
    } else {
        0
    };
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let offset = match ts.offset {
        Some(minutes) => minutes,
        None => {
            let small = |n: i32| i8::try_from(n).ok();
            let seconds = zone.offset_seconds(
                i16::try_from(year).ok()?,
                small(month)?,
                small(day)?,
                small(hour)?,
                small(minute)?,
                small(second)?,
            )?;
            seconds / 60
        }
    };
    let sign = if offset < 0 { '-' } else { '+' };
    let offset = offset.unsigned_abs();
    let fraction = ts.fraction.map(|f| format!(".{f}")).unwrap_or_default();
    Some(format!(
        "{date}T{hour:02}:{minute:02}:{second:02}{fraction}{sign}{:02}:{:02}",
        offset / 60,
        offset % 60
    ))
}

/// A TS as a FHIR date (its first 8 digits), for birth dates.
pub(super) fn date(raw: &str, zone: &SiteTimeZone) -> Option<String> {
    let full = date_time(raw, zone)?;
    Some(full.get(..10).unwrap_or(&full).to_string())
}

/// A TS as a FHIR instant: only when it gives the time (to the minute at
/// least), since an instant is exact to the second.
pub(super) fn instant(raw: &str, zone: &SiteTimeZone) -> Option<String> {
    let full = date_time(raw, zone)?;
    full.contains('T').then_some(full)
}

/// SHA-1 (FIPS 180-4) of `bytes`: FHIR's `Attachment.hash` is defined as
/// SHA-1, which the workspace's `sha2` does not provide. Used as a
/// checksum of content the Bundle carries, not for security.
pub(super) fn sha1(bytes: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let bit_length = u64::try_from(bytes.len())
        .unwrap_or(u64::MAX)
        .wrapping_mul(8);
    let mut message = bytes.to_vec();
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&bit_length.to_be_bytes());
    for block in message.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, word) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let temp = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*word);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = temp;
        }
        for (state, value) in h.iter_mut().zip([a, b, c, d, e]) {
            *state = state.wrapping_add(value);
        }
    }
    let mut out = [0u8; 20];
    for (chunk, word) in out.chunks_exact_mut(4).zip(h) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

pub(super) use crate::base64::encode as base64;
pub(super) use crate::nir::well_formed_nir;
