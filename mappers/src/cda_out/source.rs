//! Reading the FHIR transaction Bundle our own mappers write (HL7 v2 ORU,
//! HPRIM): entries by fullUrl, references resolved, strings and exact
//! decimal texts read out of `exact_json` values, FHIR codes and dates
//! turned into their CDA forms. Nothing here writes XML.

use std::collections::HashMap;

use serde_json::Value;

use crate::mapping::{MappingError, MappingErrorKind};

/// A parsed Bundle and its resources by fullUrl and by `Type/id`.
pub(super) struct SourceBundle {
    resources: Vec<Value>,
    by_reference: HashMap<String, usize>,
}

impl SourceBundle {
    /// Parses `text` with numbers kept as written (`1.50` stays `1.50`).
    /// The one Patient of the Bundle, the document's recordTarget (a CDA
    /// document has exactly one).
    pub(super) fn the_patient(&self) -> Result<&Value, MappingError> {
        let patients: Vec<&Value> = self.of_type("Patient").collect();
        match patients.as_slice() {
            [one] => Ok(*one),
            [] => Err(missing("recordTarget", "the Bundle holds no Patient")),
            _ => Err(invalid(
                "recordTarget",
                "the Bundle holds several Patients; a CDA document has exactly one",
            )),
        }
    }

    pub(super) fn parse(text: &str) -> Result<Self, MappingError> {
        let value = exact_json::parse(text).map_err(|error| {
            invalid(
                "Bundle",
                format!("the source is not FHIR JSON ({})", error_kind(&error)),
            )
        })?;
        if value.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return Err(invalid("Bundle", "the source is not a FHIR Bundle"));
        }
        let mut resources = Vec::new();
        let mut by_reference = HashMap::new();
        let entries = value
            .get("entry")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for entry in entries {
            let Some(resource) = entry.get("resource") else {
                continue;
            };
            let index = resources.len();
            if let Some(full_url) = entry.get("fullUrl").and_then(Value::as_str) {
                by_reference.insert(full_url.to_string(), index);
            }
            if let (Some(kind), Some(id)) =
                (string(resource, "resourceType"), string(resource, "id"))
            {
                by_reference.insert(format!("{kind}/{id}"), index);
            }
            resources.push(resource.clone());
        }
        Ok(Self {
            resources,
            by_reference,
        })
    }

    /// Every resource of type `kind`, in Bundle order.
    pub(super) fn of_type<'s>(&'s self, kind: &'s str) -> impl Iterator<Item = &'s Value> + 's {
        self.resources
            .iter()
            .filter(move |resource| string(resource, "resourceType") == Some(kind))
    }

    /// The resource a `Reference` points at, when the Bundle holds it.
    pub(super) fn resolve(&self, reference: &Value) -> Option<&Value> {
        let target = string(reference, "reference")?;
        self.by_reference
            .get(target)
            .and_then(|index| self.resources.get(*index))
    }
}

/// Why exact_json refused the text, without quoting it (patient data).
fn error_kind(error: &exact_json::ParseError) -> &'static str {
    match error {
        exact_json::ParseError::Json(_) => "malformed JSON",
        exact_json::ParseError::ControlCharacter { .. } => "a string holds a control character",
    }
}

pub(super) fn invalid(element: &str, detail: impl Into<String>) -> MappingError {
    MappingError {
        kind: MappingErrorKind::InvalidValue,
        segment: Some(element.to_string()),
        occurrence: 1,
        field: None,
        detail: detail.into(),
    }
}

/// A required CDA element that neither the source nor the settings fill.
pub(super) fn missing(element: &str, detail: impl Into<String>) -> MappingError {
    MappingError {
        kind: MappingErrorKind::RequiredFieldMissing,
        segment: Some(element.to_string()),
        occurrence: 1,
        field: None,
        detail: detail.into(),
    }
}

/// A non-empty string member.
pub(super) fn string<'v>(value: &'v Value, key: &str) -> Option<&'v str> {
    let raw = value.get(key)?;
    if exact_json::number_text(raw).is_some() {
        return None;
    }
    raw.as_str().map(str::trim).filter(|text| !text.is_empty())
}

/// An array member, empty when absent.
pub(super) fn array<'v>(value: &'v Value, key: &str) -> &'v [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// A number's text exactly as the source wrote it.
pub(super) fn decimal_text(value: &Value) -> Option<String> {
    if let Some(text) = exact_json::number_text(value) {
        return Some(text.to_string());
    }
    match value {
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// The OID a FHIR system URI names, when it names one.
pub(super) fn system_oid(system: &str) -> Option<String> {
    let oid = match system {
        "http://loinc.org" => LOINC_OID,
        "http://snomed.info/sct" => "2.16.840.1.113883.6.96",
        "http://unitsofmeasure.org" => "2.16.840.1.113883.6.8",
        "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation" => {
            "2.16.840.1.113883.5.83"
        }
        "http://terminology.hl7.org/CodeSystem/v2-0487" => "2.16.840.1.113883.18.311",
        other => other.strip_prefix("urn:oid:")?,
    };
    is_oid(oid).then(|| oid.to_string())
}

pub(super) const LOINC_OID: &str = "2.16.840.1.113883.6.1";

/// Whether `text` is an OID as the CDA schema's `uid` type takes it.
pub(super) fn is_oid(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text.split('.').all(|arc| {
            !arc.is_empty()
                && arc.bytes().all(|b| b.is_ascii_digit())
                && (arc == "0" || !arc.starts_with('0'))
        })
        && text.contains('.')
}

/// The document's time of writing (`now`, RFC 3339) as a CDA TS.
pub(super) fn writing_time(now: &str) -> Result<String, MappingError> {
    cda_time(now).ok_or_else(|| {
        invalid(
            "effectiveTime",
            "the time of writing is not an RFC 3339 time",
        )
    })
}

/// A FHIR date, dateTime or instant as a CDA `TS` (`YYYYMMDDHHMMSS+ZZZZ`,
/// as precise as the source).
pub(super) fn cda_time(fhir: &str) -> Option<String> {
    let fhir = fhir.trim();
    let (date, time) = match fhir.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (fhir, None),
    };
    let mut out: String = date.chars().filter(|c| *c != '-').collect();
    if !matches!(out.len(), 4 | 6 | 8) || !out.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let Some(time) = time else {
        return Some(out);
    };
    let (clock, zone) = if let Some(clock) = time.strip_suffix('Z') {
        (clock, "+0000".to_string())
    } else if let Some(at) = time.rfind(['+', '-']) {
        let (clock, zone) = time.split_at(at);
        (clock, zone.replace(':', ""))
    } else {
        (time, String::new())
    };
    // Fractions of a second are below what a CDA reader shows; the whole
    // seconds are kept.
    let clock = clock.split('.').next().unwrap_or_default();
    let digits: String = clock.chars().filter(|c| *c != ':').collect();
    if !matches!(digits.len(), 4 | 6) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    out.push_str(&digits);
    if zone.len() == 5 && zone[1..].bytes().all(|b| b.is_ascii_digit()) {
        out.push_str(&zone);
    }
    Some(out)
}

/// A coding of a CodeableConcept: (system URI, code, display).
pub(super) struct CodingRef<'v> {
    pub system: Option<&'v str>,
    pub code: &'v str,
    pub display: Option<&'v str>,
}

pub(super) fn codings(concept: &Value) -> Vec<CodingRef<'_>> {
    array(concept, "coding")
        .iter()
        .filter_map(|coding| {
            Some(CodingRef {
                system: string(coding, "system"),
                code: string(coding, "code")?,
                display: string(coding, "display"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fhir_times_become_cda_times() {
        assert_eq!(
            cda_time("2013-01-01T12:00:00+01:00").as_deref(),
            Some("20130101120000+0100")
        );
        assert_eq!(
            cda_time("2026-11-23T10:00:00.250Z").as_deref(),
            Some("20261123100000+0000")
        );
        assert_eq!(cda_time("1950-01-01").as_deref(), Some("19500101"));
        assert_eq!(cda_time("2013-01").as_deref(), Some("201301"));
        assert_eq!(cda_time("01/01/2013"), None);
    }

    #[test]
    fn oids_are_recognised() {
        assert!(is_oid("1.2.250.1.213.1.4.8"));
        assert!(!is_oid("urn:passerelle:authority:002"));
        assert!(!is_oid("1.02.3"));
        assert_eq!(
            system_oid("urn:oid:1.2.250.1.213.1.4.10").as_deref(),
            Some("1.2.250.1.213.1.4.10")
        );
        assert_eq!(system_oid("http://loinc.org").as_deref(), Some(LOINC_OID));
        assert_eq!(system_oid("urn:passerelle:authority:002"), None);
    }
}
