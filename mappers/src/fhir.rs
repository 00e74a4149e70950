//! FHIR R4 resources as the mappers build them: fhir-sdk's R4B types (R4B's
//! JSON is R4's for the resources we produce), and the one place where they
//! are turned into JSON. All serde serialisation of fhir-sdk types lives
//! here, so its heavy generic code is compiled once; reading them back
//! (the completeness check) lives in the `fhir-check` crate, compiled
//! apart.
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

use serde::Serialize;

pub use fhir_sdk::r4b;

#[derive(Debug, thiserror::Error)]
pub enum FhirJsonError {
    #[error("cannot serialise resource: {0}")]
    Serialise(#[from] serde_json::Error),
    #[error("no value at {pointer} to carry the decimal {text}")]
    MissingDecimal { pointer: String, text: String },
}

pub use fhir_check::{check_resource_json, check_resource_value, FhirCheckError};

pub use exact_json::Decimal;

/// Exact decimal texts by JSON pointer within one resource.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExactDecimals(Vec<(String, String)>);

impl ExactDecimals {
    /// Records that the number at `pointer` (e.g. `/valueQuantity/value`)
    /// must be written as `decimal`'s text.
    pub fn record(&mut self, pointer: impl Into<String>, decimal: &Decimal) {
        self.0.push((pointer.into(), decimal.text().to_string()));
    }

    /// [`ExactDecimals::record`] of a decimal the caller is done with, its
    /// text kept rather than copied.
    pub fn record_owned(&mut self, pointer: impl Into<String>, decimal: Decimal) {
        self.0.push((pointer.into(), decimal.into_text()));
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
    fn a_wrong_pointer_is_an_error_not_a_silent_loss() {
        let value = Decimal::parse("1.50").unwrap();
        let mut decimals = ExactDecimals::default();
        decimals.record("/valueQuantity/nothere", &value);
        assert!(to_json(&observation(&value), &decimals).is_err());
        let nested = decimals.nested_under("/entry/0/resource");
        assert_eq!(nested.0[0].0, "/entry/0/resource/valueQuantity/nothere");
    }
}
