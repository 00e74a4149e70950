//! Whether a FHIR JSON document is one fhir-sdk's R4B models read
//! completely: it must parse as a resource, and no element may be lost in
//! the typed round trip (fhir-sdk drops unknown elements silently, so
//! parsing alone would not catch a misspelt element). Script output and
//! Bundle edits go through it.
//!
//! It is a crate of its own for build time: deserialising fhir-sdk's
//! `Resource` monomorphises serde for every R4B type, and that code is
//! compiled here (at opt-level 1, see the workspace `Cargo.toml`), in
//! parallel with the mappers, instead of inside them at opt-level 3. The
//! check is not on any hot path.

// Input must never reach a panic: no unwrap/expect/panic outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use fhir_sdk::r4b;
use serde_json::Value;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
