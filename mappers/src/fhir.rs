//! FHIR R4 resources as the mappers build them: fhir-sdk's R4B types (R4B's
//! JSON is R4's for the resources we produce), and the one place where they
//! are turned into JSON. All serde use of fhir-sdk types lives here, so its
//! heavy generic code is compiled once.
//!
//! fhir-sdk stores decimals as `f64`, which would turn a lab value `1.50`
//! into `1.5`; FHIR requires the precision to be kept. Mappers therefore
//! record each decimal's exact text ([`ExactDecimals`]) at the JSON pointer
//! where it lands in the resource, and [`to_json`] writes that text verbatim
//! as the JSON number.
//!
//! serde_json's `arbitrary_precision` would look like the tool for this, but
//! with it fhir-sdk silently drops choice-type numbers on parse
//! (`valueQuantity` vanishes): it must stay off in this workspace, and the
//! test `choice_type_numbers_survive_parsing` guards that.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

pub use fhir_sdk::r4b;

#[derive(Debug, thiserror::Error)]
pub enum FhirJsonError {
    #[error("cannot serialise resource: {0}")]
    Serialise(#[from] serde_json::Error),
    #[error("no value at {pointer} to carry the decimal {text}")]
    MissingDecimal { pointer: String, text: String },
}

/// Why a FHIR JSON document is refused by [`check_resource_json`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FhirCheckError {
    #[error("not FHIR R4 JSON: {0}")]
    Invalid(String),
    /// An element the typed model does not know (a misspelt name, an
    /// element of another FHIR version): accepting it would silently drop it.
    #[error("element {0} is not part of FHIR R4")]
    UnknownElement(String),
}

/// Checks that `json` is a FHIR resource (any type, Bundles included) that
/// the R4B models read completely: it must parse, and every element of the
/// input must still be there after the typed round trip. fhir-sdk drops
/// unknown elements silently, so parsing alone would not catch a misspelt
/// element. Numbers compare by value (`1.50` equals `1.5`).
pub fn check_resource_json(json: &str) -> Result<(), FhirCheckError> {
    let original: Value =
        serde_json::from_str(json).map_err(|e| FhirCheckError::Invalid(e.to_string()))?;
    check_resource_value(&original)
}

/// [`check_resource_json`] for an already parsed value.
pub fn check_resource_value(original: &Value) -> Result<(), FhirCheckError> {
    let typed: r4b::resources::Resource = serde_json::from_value(original.clone())
        .map_err(|e| FhirCheckError::Invalid(e.to_string()))?;
    let again = serde_json::to_value(&typed).map_err(|e| FhirCheckError::Invalid(e.to_string()))?;
    let mut pointer = String::new();
    match first_lost(original, &again, &mut pointer) {
        Some(lost) => Err(FhirCheckError::UnknownElement(lost)),
        None => Ok(()),
    }
}

/// The pointer of the first element of `original` missing from `again`.
fn first_lost(original: &Value, again: &Value, pointer: &mut String) -> Option<String> {
    match (original, again) {
        (Value::Object(left), Value::Object(right)) => {
            for (key, value) in left {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(key);
                let found = match right.get(key) {
                    Some(other) => first_lost(value, other, pointer),
                    // fhir-sdk leaves out empty arrays and nulls it read.
                    None if value.is_null() || value.as_array().is_some_and(Vec::is_empty) => None,
                    None => Some(pointer.clone()),
                };
                if found.is_some() {
                    return found;
                }
                pointer.truncate(len);
            }
            None
        }
        (Value::Array(left), Value::Array(right)) => {
            for (index, value) in left.iter().enumerate() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&index.to_string());
                let found = match right.get(index) {
                    Some(other) => first_lost(value, other, pointer),
                    None => Some(pointer.clone()),
                };
                if found.is_some() {
                    return found;
                }
                pointer.truncate(len);
            }
            None
        }
        (Value::Number(left), Value::Number(right)) => {
            (left.as_f64() != right.as_f64()).then(|| pointer.clone())
        }
        // Dates and instants may be normalised (`Z` for `+00:00`); the
        // element is still there.
        (Value::String(_), Value::String(_)) => None,
        (left, right) => (left != right).then(|| pointer.clone()),
    }
}

/// A FHIR decimal as written by the sender, e.g. `1.50` or `-0.0300`.
#[derive(Debug, Clone, PartialEq)]
pub struct Decimal {
    text: String,
    value: f64,
}

impl Decimal {
    /// Accepts the FHIR decimal syntax (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`),
    /// also allowing a leading `+` and leading zeros as HL7 v2 NM values have
    /// them (they are normalised away, the digits after the point are kept).
    pub fn parse(raw: &str) -> Option<Decimal> {
        let raw = raw.trim();
        let (sign, unsigned) = match raw.as_bytes().first()? {
            b'-' => ("-", raw.get(1..)?),
            b'+' => ("", raw.get(1..)?),
            _ => ("", raw),
        };
        let (int, frac) = match unsigned.split_once('.') {
            Some((int, frac)) => (int, Some(frac)),
            None => (unsigned, None),
        };
        let int_ok = int.bytes().all(|b| b.is_ascii_digit());
        let frac_ok = frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()));
        if !int_ok || !frac_ok || (int.is_empty() && frac.is_none()) {
            return None;
        }
        let int = int.trim_start_matches('0');
        let int = if int.is_empty() { "0" } else { int };
        let mut text = String::with_capacity(sign.len() + int.len() + 1 + frac.map_or(0, str::len));
        text.push_str(sign);
        text.push_str(int);
        if let Some(frac) = frac {
            text.push('.');
            text.push_str(frac);
        }
        let value = text.parse::<f64>().ok()?;
        Some(Decimal { text, value })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The value for fhir-sdk's `f64` fields.
    pub fn value(&self) -> f64 {
        self.value
    }
}

/// Exact decimal texts by JSON pointer within one resource.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExactDecimals(Vec<(String, String)>);

impl ExactDecimals {
    /// Records that the number at `pointer` (e.g. `/valueQuantity/value`)
    /// must be written as `decimal`'s text.
    pub fn record(&mut self, pointer: impl Into<String>, decimal: &Decimal) {
        self.0.push((pointer.into(), decimal.text.clone()));
    }

    /// [`ExactDecimals::record`] of a decimal the caller is done with, its
    /// text kept rather than copied.
    pub fn record_owned(&mut self, pointer: impl Into<String>, decimal: Decimal) {
        self.0.push((pointer.into(), decimal.text));
    }

    /// The same records below `prefix` (e.g. `/entry/3/resource`).
    pub fn nested_under(&self, prefix: &str) -> ExactDecimals {
        ExactDecimals(
            self.0
                .iter()
                .map(|(pointer, text)| (format!("{prefix}{pointer}"), text.clone()))
                .collect(),
        )
    }

    pub fn extend(&mut self, other: ExactDecimals) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// No records, the storage kept for the next resource's.
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// Serialises a fhir-sdk value to JSON text with every recorded decimal
/// written as its exact text.
pub fn to_json<T: Serialize>(value: &T, decimals: &ExactDecimals) -> Result<String, FhirJsonError> {
    crate::fhir_stream::to_json_exact(value, &decimals.0)
}

/// [`to_json`] of a resource appending to `out` (UTF-8); the resources of a
/// lab result are written without going through serde, the same bytes.
pub(crate) fn write_resource(
    out: &mut Vec<u8>,
    resource: &r4b::resources::Resource,
    decimals: &ExactDecimals,
) -> Result<(), FhirJsonError> {
    crate::fhir_stream::write_resource_exact(out, resource, &decimals.0)
}

/// A JSON string appending to `out`, escaped as serde_json escapes.
pub(crate) fn write_string(out: &mut Vec<u8>, text: &str) {
    crate::fhir_stream::write_json_str(out, text);
}

/// Writes `value` as compact JSON, each number whose JSON pointer is in
/// `texts` as that text (`1.50` where serde_json would write `1.5`). Texts
/// at pointers that do not hold a number are ignored. The one writer of
/// exact decimals: built-in mappers, script output and Bundle edits.
pub fn json_with_exact_numbers(value: &Value, texts: &[(String, String)]) -> String {
    let exact: HashMap<&str, &str> = texts
        .iter()
        .map(|(pointer, text)| (pointer.as_str(), text.as_str()))
        .collect();
    let mut out = String::with_capacity(1024);
    let mut pointer = String::new();
    write_value(value, &mut pointer, &exact, &mut out);
    out
}

fn write_value(value: &Value, pointer: &mut String, exact: &HashMap<&str, &str>, out: &mut String) {
    match value {
        Value::Number(number) => match exact.get(pointer.as_str()) {
            Some(text) => out.push_str(text),
            None => out.push_str(&number.to_string()),
        },
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&index.to_string());
                write_value(item, pointer, exact, out);
                pointer.truncate(len);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (index, (key, item)) in map.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                let len = pointer.len();
                pointer.push('/');
                // JSON pointer escaping (RFC 6901).
                for c in key.chars() {
                    match c {
                        '~' => pointer.push_str("~0"),
                        '/' => pointer.push_str("~1"),
                        c => pointer.push(c),
                    }
                }
                write_value(item, pointer, exact, out);
                pointer.truncate(len);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::r4b::codes::ObservationStatus;
    use super::r4b::resources::Observation;
    use super::r4b::types::{CodeableConcept, Quantity};
    use super::*;

    fn observation(value: &Decimal) -> Observation {
        Observation::builder()
            .status(ObservationStatus::Final)
            .code(
                CodeableConcept::builder()
                    .text("Glucose".to_string())
                    .build()
                    .unwrap(),
            )
            .value(super::r4b::resources::ObservationValue::Quantity(
                Quantity::builder()
                    .value(value.value())
                    .unit("g/L".to_string())
                    .build()
                    .unwrap(),
            ))
            .build()
            .unwrap()
    }

    #[test]
    fn lab_value_keeps_its_precision() {
        let value = Decimal::parse("1.50").unwrap();
        let resource = observation(&value);
        // Without the exact text fhir-sdk writes 1.5.
        let plain = serde_json::to_string(&resource).unwrap();
        assert!(
            plain.contains("\"value\":1.5,") || plain.contains("\"value\":1.5}"),
            "{plain}"
        );
        let mut decimals = ExactDecimals::default();
        decimals.record("/valueQuantity/value", &value);
        let text = to_json(&resource, &decimals).unwrap();
        assert!(text.contains("\"value\":1.50"), "{text}");
        assert!(
            text.starts_with("{\"resourceType\":\"Observation\""),
            "{text}"
        );
        // And the JSON still reads as FHIR.
        let back: Observation = serde_json::from_str(&text).unwrap();
        assert!(
            matches!(back.value, Some(super::r4b::resources::ObservationValue::Quantity(ref q)) if q.value == Some(1.5))
        );
    }

    #[test]
    fn choice_type_numbers_survive_parsing() {
        let text = r#"{"resourceType":"Observation","status":"final","code":{"text":"g"},"valueQuantity":{"value":1.5,"unit":"g/L"}}"#;
        let parsed: Observation = serde_json::from_str(text).unwrap();
        assert!(
            parsed.value.is_some(),
            "valueQuantity dropped: is serde_json's arbitrary_precision on?"
        );
    }

    #[test]
    fn resource_check_refuses_unknown_elements() {
        check_resource_json(r#"{"resourceType":"Patient","gender":"male","birthDate":"1975-03"}"#)
            .unwrap();
        let error =
            check_resource_json(r#"{"resourceType":"Patient","gendr":"male"}"#).unwrap_err();
        assert_eq!(error, FhirCheckError::UnknownElement("/gendr".into()));
        let bundle = r#"{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.50,"unitt":"g"}},"request":{"method":"POST","url":"Observation"}}]}"#;
        assert_eq!(
            check_resource_json(bundle).unwrap_err(),
            FhirCheckError::UnknownElement("/entry/0/resource/valueQuantity/unitt".into())
        );
        assert!(matches!(
            check_resource_json(r#"{"resourceType":"Patient","gender":"nonsense"}"#),
            Err(FhirCheckError::Invalid(_))
        ));
    }

    #[test]
    fn decimal_syntax() {
        assert_eq!(Decimal::parse("1.50").unwrap().text(), "1.50");
        assert_eq!(Decimal::parse("+007.10").unwrap().text(), "7.10");
        assert_eq!(Decimal::parse("-0.0300").unwrap().text(), "-0.0300");
        assert_eq!(Decimal::parse(".5").unwrap().text(), "0.5");
        for bad in ["", "1.", "abc", "1.2.3", "1,5", "<5", "-"] {
            assert!(Decimal::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_wrong_pointer_is_an_error_not_a_silent_loss() {
        let value = Decimal::parse("1.50").unwrap();
        let mut decimals = ExactDecimals::default();
        decimals.record("/valueQuantity/nothere", &value);
        assert!(to_json(&observation(&value), &decimals).is_err());
        let nested = decimals.nested_under("/entry/0/resource");
        assert_eq!(nested.0[0].0, "/entry/0/resource/valueQuantity/nothere");
    }
}
